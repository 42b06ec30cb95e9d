"""B and F. N one-shot alarms due at the same instant.

B: when are all N recorded as fired (rows committed in `fires`)? A separate connection polls
   `SELECT count(*) FROM fires` every ~10 ms; we report when it reaches N, relative to the nominal time, and the
   fire_us - due_us distribution from the table. Target: all 100,000 within 1 s.
F (--subscribe): one Fire subscriber filtering on the alarms' common target; we report when the last event is
   received (client clock) relative to the nominal time. Target: 100,000 within 2 s.

The alarms are loaded with ImportAlarms before the instant (which lies `--lead` seconds ahead, inside LOOKAHEAD),
and GetSchedulerStats is read 1 s before it to check that they all sit in the engine's window.

    python3 bench/burst.py --alarms 100000                 # B
    python3 bench/burst.py --alarms 100000 --subscribe     # F (and B's figures under a subscriber's load)
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import asyncpg
from common import (
    Server,
    at_alarm,
    channel,
    create_db,
    drop_db,
    dsn,
    emit,
    import_alarms,
    import_requests,
    now_us,
    pg_version,
)
from labmesh.scheduler.v1 import scheduler_pb2 as pb
from labmesh.scheduler.v1 import scheduler_pb2_grpc

TARGET = "devices/burst"


async def subscriber(
    address: str, per_message: int, expected: int, deadline: float, out: dict[str, Any], ready: asyncio.Event
) -> None:
    """Receive every event for TARGET; records the receive time of each message and event count."""
    stamps: list[tuple[int, int]] = []  # (receive us, events in message)
    lateness: list[int] = []  # receive us - scheduled us, per event
    received = 0
    try:
        async with channel(address) as ch:
            stub = scheduler_pb2_grpc.SchedulerServiceStub(ch)
            call = stub.Fire(pb.FireRequest(filter=pb.FireFilter(targets=[TARGET]), max_events_per_message=per_message))
            await call.initial_metadata()
            ready.set()
            while received < expected and time.time() < deadline:
                try:
                    resp = await asyncio.wait_for(call.read(), max(0.1, deadline - time.time()))
                except TimeoutError:
                    break
                if resp is None or not hasattr(resp, "events"):
                    break
                t = now_us()
                n = len(resp.events)
                received += n
                stamps.append((t, n))
                for e in resp.events:
                    lateness.append(t - e.scheduled_time.ToMicroseconds())
            call.cancel()
    except Exception as err:
        details = err.details() if hasattr(err, "details") else str(err)
        out["error"] = f"{type(err).__name__}: {details}"
        ready.set()
    out["received"] = received
    out["stamps"] = stamps
    out["lateness"] = lateness


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alarms", type=int, default=100_000)
    ap.add_argument("--lead", type=float, default=20.0, help="seconds from the import's start to the instant")
    ap.add_argument("--subscribe", action="store_true", help="F: one Fire subscriber on the alarms' target")
    ap.add_argument("--events-per-message", type=int, default=0, help="Fire max_events_per_message (0 = 100)")
    ap.add_argument("--batch-size", type=int, default=None, help="BATCH_SIZE of the scheduler (default: its own)")
    ap.add_argument("--timeout", type=float, default=120.0, help="give up this long after the instant")
    ap.add_argument(
        "--analyze",
        action="store_true",
        help="run ANALYZE alarms after the import (the scheduler now does this itself after large imports)",
    )
    ap.add_argument("--keep-db", action="store_true")
    args = ap.parse_args()
    n = args.alarms

    name = "burst_sub" if args.subscribe else "burst"
    db = await create_db(name)
    env = {"MAX_ALARMS_PER_INSTANCE": str(max(100_000, n))}
    if args.batch_size:
        env["BATCH_SIZE"] = str(args.batch_size)
    server = Server(db, env)
    sub_out: dict[str, Any] = {}
    try:
        await server.start()
        t_import = now_us()
        nominal = t_import + int(args.lead * 1e6)
        target = TARGET if args.subscribe else None
        reqs = import_requests(at_alarm(i, nominal, prefix="b", target=target) for i in range(n))
        count, import_s, _ = await import_alarms(server.address, reqs)
        assert count == n, count
        if args.analyze:
            conn = await asyncpg.connect(dsn(db))
            await conn.execute("ANALYZE alarms")
            await conn.close()
        if now_us() > nominal - 3_000_000:
            raise SystemExit(f"import took {import_s:.1f}s: increase --lead")
        sub_task = None
        if args.subscribe:
            ready = asyncio.Event()
            sub_task = asyncio.create_task(
                subscriber(server.address, args.events_per_message, n, nominal / 1e6 + args.timeout, sub_out, ready)
            )
            await ready.wait()
        # One second before the instant: is everything in the window?
        await asyncio.sleep(max(0.0, (nominal - now_us()) / 1e6 - 1.0))
        async with channel(server.address) as ch:
            stats = await scheduler_pb2_grpc.SchedulerServiceStub(ch).GetSchedulerStats(pb.GetSchedulerStatsRequest())
        cpu0 = server.cpu_times()
        conn = await asyncpg.connect(dsn(db))
        first_us = all_us = None
        polls = 0
        progress: list[tuple[float, int]] = []
        while now_us() < nominal + int(args.timeout * 1e6):
            c = await conn.fetchval("SELECT count(*) FROM fires")
            t = now_us()
            polls += 1
            if c and first_us is None:
                first_us = t
            if c and (not progress or progress[-1][1] != c):
                progress.append(((t - nominal) / 1e6, c))
            if c >= n:
                all_us = t
                break
            await asyncio.sleep(0.01)
        cpu_burst = server.cpu_times() - cpu0
        dist = await conn.fetchrow(
            """SELECT count(*) AS n,
                      percentile_cont(0.5) WITHIN GROUP (ORDER BY fire_us - due_us) AS p50,
                      percentile_cont(0.9) WITHIN GROUP (ORDER BY fire_us - due_us) AS p90,
                      percentile_cont(0.99) WITHIN GROUP (ORDER BY fire_us - due_us) AS p99,
                      min(fire_us - due_us) AS min, max(fire_us - due_us) AS max,
                      count(DISTINCT fire_us) AS batches,
                      count(*) FILTER (WHERE outcome = 1) AS on_time
               FROM fires"""
        )
        await conn.close()
        if sub_task is not None:
            await sub_task
        async with channel(server.address) as ch:
            after = await scheduler_pb2_grpc.SchedulerServiceStub(ch).GetSchedulerStats(pb.GetSchedulerStatsRequest())
        rss = server.rss()
    finally:
        server.stop()
        if not args.keep_db:
            await drop_db(db)

    rel = lambda us: None if us is None else round((us - nominal) / 1e6, 3)  # noqa: E731
    ms = lambda v: None if v is None else round(float(v) / 1000, 1)  # noqa: E731
    result: dict[str, Any] = {
        "pg": await pg_version(),
        "alarms": n,
        "import_s": round(import_s, 2),
        "batch_size": args.batch_size or 1000,
        "analyze_after_import": args.analyze,
        "window_size_1s_before": stats.window_size,
        "window_capacity": stats.window_capacity,
        "first_fire_seen_s": rel(first_us),
        "all_recorded_s": rel(all_us),
        "polls": polls,
        "progress_sample": progress[:: max(1, len(progress) // 12)] + progress[-1:],
        "fire_minus_due_ms": {
            "n": dist["n"],
            "p50": ms(dist["p50"]),
            "p90": ms(dist["p90"]),
            "p99": ms(dist["p99"]),
            "min": ms(dist["min"]),
            "max": ms(dist["max"]),
        },
        "commit_batches": dist["batches"],
        "on_time": dist["on_time"],
        "server_batch_processing_ms": {
            "p50": after.batch_processing_p50.ToMicroseconds() / 1000,
            "p99": after.batch_processing_p99.ToMicroseconds() / 1000,
        },
        "server_cpu_s_during_burst": round(cpu_burst, 2),
        "server_rss_mb": round(rss / 2**20, 1),
        "target_B_s": 1.0,
        "meets_B": all_us is not None and (all_us - nominal) <= 1_000_000,
    }
    line = (
        f"B {n} alarms due at one instant: first row committed at +{rel(first_us)} s, all {n} at "
        f"+{rel(all_us)} s (target <= 1 s: {'met' if result['meets_B'] else 'NOT met'}); fire_us - due_us "
        f"p50 {ms(dist['p50'])} ms p99 {ms(dist['p99'])} ms max {ms(dist['max'])} ms; "
        f"{dist['batches']} commits; server CPU {cpu_burst:.1f} s"
    )
    if args.subscribe:
        stamps = sub_out.get("stamps", [])
        last = stamps[-1][0] if stamps else None
        lat = sorted(sub_out.get("lateness", []))
        result.update(
            {
                "subscriber_received": sub_out.get("received"),
                "subscriber_error": sub_out.get("error"),
                "events_per_message": args.events_per_message or 100,
                "first_received_s": rel(stamps[0][0]) if stamps else None,
                "last_received_s": rel(last),
                "receive_minus_scheduled_ms": {
                    "p50": ms(lat[len(lat) // 2]) if lat else None,
                    "p99": ms(lat[int(len(lat) * 0.99)]) if lat else None,
                },
                "target_F_s": 2.0,
                "meets_F": sub_out.get("received") == n and last is not None and last - nominal <= 2_000_000,
            }
        )
        error = f"; error {sub_out['error']}" if sub_out.get("error") else ""
        line += (
            f"\nF one subscriber: received {sub_out.get('received')}/{n}, first at "
            f"+{result['first_received_s']} s, last at +{rel(last)} s (target <= 2 s: "
            f"{'met' if result['meets_F'] else 'NOT met'}){error}"
        )
    emit("F_burst_delivery" if args.subscribe else "B_burst_record", result, line)


if __name__ == "__main__":
    asyncio.run(main())
