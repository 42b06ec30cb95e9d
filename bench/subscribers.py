"""G and H. Many concurrent Fire subscribers, each filtering on its own target.

H: server RSS delta after opening --streams idle streams (all answered with headers, then --settle s), per stream.
G: then --streams interval alarms (every 1 s, one per target, phases spread evenly over the second, so the
   scheduler fires --streams per second) run for --duration s; each event's lateness is the client receive time
   minus its scheduled_time. Target: p99 <= 20 ms at 1,000 fires/s over 1,000 streams.

The subscribers live in --procs client processes (spawned, --channels channels spread over them), so the
client is less of a bottleneck; they still share this machine's cores with the server and PostgreSQL.

    python3 bench/subscribers.py --streams 1000 --channels 10 --duration 30
    python3 bench/subscribers.py --streams 1000 --idle-only           # H only
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import time
from typing import Any

import asyncpg
import psutil
from common import (
    Server,
    channel,
    create_db,
    dist_ms,
    drop_db,
    dsn,
    emit,
    import_alarms,
    import_requests,
    now_us,
    pg_version,
    ts_us,
)
from google.protobuf import duration_pb2
from labmesh.scheduler.v1 import scheduler_pb2 as pb
from labmesh.scheduler.v1 import scheduler_pb2_grpc


def client_main(address: str, targets: list[int], channels: int, ready_q: Any, go: Any, result_q: Any) -> None:
    asyncio.run(client_async(address, targets, channels, ready_q, go, result_q))


async def client_async(address: str, targets: list[int], channels: int, ready_q: Any, go: Any, result_q: Any) -> None:
    chans = [channel(address) for _ in range(channels)]
    stubs = [scheduler_pb2_grpc.SchedulerServiceStub(c) for c in chans]
    lateness: list[int] = []
    errors: list[str] = []
    calls = [
        stubs[i % channels].Fire(pb.FireRequest(filter=pb.FireFilter(targets=[f"devices/g-{t}"])))
        for i, t in enumerate(targets)
    ]
    await asyncio.gather(*(c.initial_metadata() for c in calls))
    ready_q.put(len(calls))
    loop = asyncio.get_running_loop()
    deadline = await loop.run_in_executor(None, go.get)  # the parent says until when to read (epoch seconds)

    async def read(call: Any) -> None:
        try:
            while True:
                resp = await call.read()
                if not hasattr(resp, "events"):
                    return
                t = now_us()
                for e in resp.events:
                    lateness.append(t - e.scheduled_time.ToMicroseconds())
        except asyncio.CancelledError:
            raise
        except Exception as err:
            errors.append(f"{type(err).__name__}: {err}"[:200])

    tasks = [asyncio.create_task(read(c)) for c in calls]
    if deadline > 0:
        await asyncio.sleep(max(0.0, deadline - time.time()))
    for t in tasks:
        t.cancel()
    for c in calls:
        c.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for c in chans:
        await c.close()
    result_q.put((lateness, errors[:5], len(errors)))


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--channels", type=int, default=10)
    ap.add_argument("--procs", type=int, default=2, help="client processes")
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--lead", type=float, default=5.0)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--idle-only", action="store_true")
    ap.add_argument(
        "--analyze",
        action="store_true",
        help="run ANALYZE alarms after the import (the scheduler now does this itself after large imports)",
    )
    ap.add_argument("--keep-db", action="store_true")
    args = ap.parse_args()
    s = args.streams

    db = await create_db("subscribers")
    server = Server(db)
    ctx = mp.get_context("spawn")
    procs: list[Any] = []
    try:
        await server.start()
        async with channel(server.address) as ch:  # warm the server's paths once before the baseline
            stub = scheduler_pb2_grpc.SchedulerServiceStub(ch)
            await stub.GetSchedulerStats(pb.GetSchedulerStatsRequest())
            warm = stub.Fire(pb.FireRequest(filter=pb.FireFilter(targets=["devices/warm"])))
            await warm.initial_metadata()
            warm.cancel()
        await asyncio.sleep(args.settle)
        rss0 = server.rss()
        ready_q, go_q, result_q = ctx.Queue(), ctx.Queue(), ctx.Queue()
        per = [list(range(s))[k :: args.procs] for k in range(args.procs)]
        chans = [max(1, args.channels // args.procs)] * args.procs
        t_open = time.perf_counter()
        for k in range(args.procs):
            p = ctx.Process(target=client_main, args=(server.address, per[k], chans[k], ready_q, go_q, result_q))
            p.start()
            procs.append(p)
        opened = sum(
            await asyncio.get_running_loop().run_in_executor(None, lambda: [ready_q.get(timeout=120) for _ in procs])
        )
        open_s = time.perf_counter() - t_open
        await asyncio.sleep(args.settle)
        async with channel(server.address) as ch:
            st = await scheduler_pb2_grpc.SchedulerServiceStub(ch).GetSchedulerStats(pb.GetSchedulerStatsRequest())
        rss1 = server.rss()
        h = {
            "streams": opened,
            "server_subscribers": st.subscribers,
            "open_s": round(open_s, 2),
            "rss_before_mb": round(rss0 / 2**20, 1),
            "rss_after_mb": round(rss1 / 2**20, 1),
            "kib_per_stream": round((rss1 - rss0) / max(1, opened) / 1024, 1),
        }
        result: dict[str, Any] = {"pg": await pg_version(), "H_idle": h}
        lines = [
            f"H {opened} idle Fire streams: server RSS {h['rss_before_mb']} -> {h['rss_after_mb']} MB, "
            f"{h['kib_per_stream']} KiB per stream (opened in {open_s:.1f} s)"
        ]
        if args.idle_only:
            for _ in procs:
                go_q.put(0)
        else:
            t0 = now_us() + int(args.lead * 1e6)
            step = 1_000_000 // s
            end = t0 + int(args.duration * 1e6)
            every = duration_pb2.Duration(seconds=1)
            alarms = (
                pb.Alarm(
                    name=f"alarms/g-{k}",
                    target=f"devices/g-{k}",
                    schedule=pb.Schedule(interval=pb.IntervalSchedule(every=every, anchor_time=ts_us(t0 + k * step))),
                    end_time=ts_us(end - 1),
                )
                for k in range(s)
            )
            await import_alarms(server.address, import_requests(alarms))
            if args.analyze:
                conn = await asyncpg.connect(dsn(db))
                await conn.execute("ANALYZE alarms")
                await conn.close()
            deadline = end / 1e6 + 3.0
            for _ in procs:
                go_q.put(deadline)
            cpu0 = server.cpu_times()
            kids = [psutil.Process(p.pid) for p in procs]
            kid0 = sum(sum(k.cpu_times()[:2]) for k in kids)
            psutil.cpu_percent(None)
            rss_max = 0
            while time.time() < deadline:
                rss_max = max(rss_max, server.rss())
                await asyncio.sleep(1.0)
            cpu = server.cpu_times() - cpu0
            kid_cpu = sum(sum(k.cpu_times()[:2]) for k in kids) - kid0
            machine_busy = psutil.cpu_percent(None)
        results = await asyncio.get_running_loop().run_in_executor(
            None, lambda: [result_q.get(timeout=120) for _ in procs]
        )
        if not args.idle_only:
            lat = [x for r in results for x in r[0]]
            errors = [e for r in results for e in r[1]]
            conn = await asyncpg.connect(dsn(db))
            rec = await conn.fetchrow(
                """SELECT count(*) AS n, percentile_cont(0.5) WITHIN GROUP (ORDER BY fire_us - due_us) AS p50,
                          percentile_cont(0.99) WITHIN GROUP (ORDER BY fire_us - due_us) AS p99,
                          max(fire_us - due_us) AS max, count(DISTINCT fire_us) AS commits
                   FROM fires WHERE outcome IN (1, 2)"""
            )
            await conn.close()
            d = dist_ms(lat)
            g = {
                "analyze_after_import": args.analyze,
                "streams": s,
                "channels": args.channels,
                "client_procs": args.procs,
                "fires_per_s": s,
                "duration_s": args.duration,
                "events_received": len(lat),
                "fires_recorded": rec["n"],
                "receive_minus_scheduled": d,
                "recorded_fire_minus_due_ms": {
                    "p50": round(float(rec["p50"] or 0) / 1000, 2),
                    "p99": round(float(rec["p99"] or 0) / 1000, 2),
                    "max": round(float(rec["max"] or 0) / 1000, 2),
                },
                "commits": rec["commits"],
                "stream_errors": sum(r[2] for r in results),
                "error_sample": errors[:3],
                "server_cpu_pct": round(100 * cpu / (args.duration + args.lead), 1),
                "client_procs_cpu_pct": round(100 * kid_cpu / (args.duration + args.lead), 1),
                "machine_cpu_busy_pct": machine_busy,
                "server_rss_max_mb": round(rss_max / 2**20, 1),
                "target_p99_ms": 20,
                "meets": d["p99_ms"] is not None and d["p99_ms"] <= 20 and len(lat) >= 0.99 * rec["n"],
            }
            result["G_fanout"] = g
            lines.append(
                f"G {s} subscribers ({args.channels} channels, {args.procs} client processes), {s} fires/s for "
                f"{args.duration:g} s: {len(lat)} events received of {rec['n']} recorded; receive - scheduled p50 "
                f"{d['p50_ms']} ms p99 {d['p99_ms']} ms max {d['max_ms']} ms (target p99 <= 20 ms: "
                f"{'met' if g['meets'] else 'NOT met'}); recorded fire - due p50 "
                f"{g['recorded_fire_minus_due_ms']['p50']} ms p99 {g['recorded_fire_minus_due_ms']['p99']} ms; "
                f"server CPU {g['server_cpu_pct']}%, client processes {g['client_procs_cpu_pct']}%, "
                f"machine {g['machine_cpu_busy_pct']}% busy"
            )
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.terminate()
        server.stop()
        if not args.keep_db:
            await drop_db(db)
    emit("G_H_subscribers", result, "\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
