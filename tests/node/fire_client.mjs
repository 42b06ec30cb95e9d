// A Node.js subscriber of labmesh.scheduler.v1.SchedulerService/Fire, used by tests/test_node_client.py to prove
// that a non-Python client (@grpc/grpc-js + @grpc/proto-loader reading proto/ directly) can consume fires through
// a consumer group and acknowledge them.
//
//   node tests/node/fire_client.mjs --address 127.0.0.1:50051 --group robots --target devices/incubator-7 \
//        [--target ...] [--count 1] [--timeout-ms 20000] [--lab default]
//
// stdout, one JSON object per line:
//   {"type":"subscribed","headers":{...}}                          once the server sent the stream's headers
//   {"type":"event","fire_id":...,"alarm":...,"target":...,"attempt":1,"cursor":"...","outcome":"..."}
//   {"type":"ack","fire_ids":[...],"acknowledged_count":1,"unknown_fire_ids":[]}   after each AcknowledgeFires
// Exits 0 once --count events were received and acknowledged; 1 on any error, on the stream ending early, or
// when --timeout-ms passes first (the reason goes to stderr).

import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

const { values: args } = parseArgs({
  options: {
    address: { type: "string" },
    group: { type: "string", default: "" },
    target: { type: "string", multiple: true, default: [] },
    count: { type: "string", default: "1" },
    "timeout-ms": { type: "string", default: "20000" },
    lab: { type: "string", default: "" },
  },
  strict: true,
});

function fail(message) {
  process.stderr.write(`fire_client: ${message}\n`);
  process.exit(1);
}

if (!args.address) fail("--address is required");
const count = Number.parseInt(args.count, 10);
const timeoutMs = Number.parseInt(args["timeout-ms"], 10);
if (!(count > 0)) fail(`--count must be a positive integer, got ${args.count}`);
if (!(timeoutMs > 0)) fail(`--timeout-ms must be a positive integer, got ${args["timeout-ms"]}`);

const definition = protoLoader.loadSync("labmesh/scheduler/v1/scheduler.proto", {
  includeDirs: [path.join(repo, "proto"), path.join(repo, "third_party", "googleapis")],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const { SchedulerService } = grpc.loadPackageDefinition(definition).labmesh.scheduler.v1;
const client = new SchedulerService(args.address, grpc.credentials.createInsecure());

const metadata = () => {
  const m = new grpc.Metadata();
  if (args.lab) m.set("labmesh-lab", args.lab);
  return m;
};

const emit = (object) => process.stdout.write(`${JSON.stringify(object)}\n`);

let received = 0;
let acknowledged = 0;
let finished = false;
let acks = Promise.resolve(); // acknowledgements run one after another, so output keeps the events' order

const call = client.Fire(
  {
    filter: { targets: args.target },
    consumer_group: args.group,
    subscriber_id: `node-fire-client-${process.pid}`,
  },
  metadata(),
);

const timer = setTimeout(
  () => finish(1, `timed out after ${timeoutMs} ms: ${received} of ${count} events received, ${acknowledged} acknowledged`),
  timeoutMs,
);

function finish(code, message) {
  if (finished) return;
  finished = true;
  clearTimeout(timer);
  if (message) process.stderr.write(`fire_client: ${message}\n`);
  process.exitCode = code;
  call.cancel();
  client.close();
  // Whatever might still hold the event loop open must not keep a finished client alive.
  setTimeout(() => process.exit(code), 2000).unref();
}

function acknowledge(fireIds) {
  return new Promise((resolve, reject) => {
    client.AcknowledgeFires(
      { consumer_group: args.group, fire_ids: fireIds },
      metadata(),
      { deadline: Date.now() + 5000 },
      (error, response) => (error ? reject(error) : resolve(response)),
    );
  });
}

call.on("metadata", (headers) => emit({ type: "subscribed", headers: headers.getMap() }));

call.on("data", (response) => {
  for (const event of response.events) {
    if (finished || received >= count) return;
    received += 1;
    emit({
      type: "event",
      fire_id: event.fire_id,
      alarm: event.alarm ? event.alarm.name : "",
      target: event.alarm ? event.alarm.target : "",
      attempt: event.attempt,
      cursor: event.cursor,
      outcome: event.outcome,
    });
    if (!args.group) {
      // A broadcast subscription has nothing to acknowledge.
      acknowledged += 1;
      if (acknowledged >= count) finish(0);
      continue;
    }
    const fireIds = [event.fire_id];
    acks = acks
      .then(() => acknowledge(fireIds))
      .then((ack) => {
        emit({ type: "ack", fire_ids: fireIds, ...ack });
        acknowledged += 1;
        if (acknowledged >= count) finish(0);
      })
      .catch((error) => finish(1, `AcknowledgeFires failed: ${error.code} ${error.details || error.message}`));
  }
});

call.on("error", (error) => {
  if (!finished) finish(1, `Fire failed: ${grpc.status[error.code] ?? error.code} ${error.details || error.message}`);
});

call.on("end", () => {
  if (!finished && received < count) finish(1, `Fire stream ended after ${received} of ${count} events`);
});
