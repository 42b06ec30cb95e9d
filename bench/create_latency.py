"""E. CreateAlarm latency: sequential unary calls from one client, then N concurrent clients.

Target: p99 <= 10 ms (2,000 sequential calls after warm-up), and with 8 concurrent clients.
Alarms are one-shots an hour ahead (outside the lookahead window, so the engine only checks and ignores them).

    python3 bench/create_latency.py --calls 2000 --clients 8
"""

from __future__ import annotations

import argparse
import asyncio
import time

import asyncpg
import grpc
from common import Server, create_db, drop_db, dsn, emit, now_us, pct, pg_version
from labmesh.scheduler.v1 import scheduler_pb2 as pb
from labmesh.scheduler.v1 import scheduler_pb2_grpc

XACTS = "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1"


def request(i: int, prefix: str) -> pb.CreateAlarmRequest:
    return pb.CreateAlarmRequest(
        alarm_id=f"{prefix}-{i}",
        alarm=pb.Alarm(
            display_name=f"bench {i}",
            target=f"devices/d-{i % 100}",
            labels={"bench": "e"},
            schedule=pb.Schedule(at=_ts(now_us() + 3_600_000_000 + i)),
        ),
    )


def _ts(us: int):  # type: ignore[no-untyped-def]
    from common import ts_us

    return ts_us(us)


async def run_client(address: str, prefix: str, calls: int) -> list[float]:
    lat: list[float] = []
    async with grpc.aio.insecure_channel(address) as ch:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(ch)
        reqs = [request(i, prefix) for i in range(calls)]
        for r in reqs:
            t0 = time.perf_counter()
            await stub.CreateAlarm(r, timeout=10)
            lat.append((time.perf_counter() - t0) * 1000)
    return lat


def summary(lat: list[float]) -> dict[str, float | None]:
    return {
        "n": len(lat),
        "p50_ms": round(pct(lat, 0.5), 2),
        "p90_ms": round(pct(lat, 0.9), 2),
        "p99_ms": round(pct(lat, 0.99), 2),
        "max_ms": round(max(lat), 2),
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=2000, help="sequential calls measured (one client)")
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--calls-per-client", type=int, default=500)
    ap.add_argument("--keep-db", action="store_true")
    args = ap.parse_args()

    db = await create_db("create")
    server = Server(db)
    try:
        startup = await server.start()
        await run_client(server.address, "warm", args.warmup)
        conn = await asyncpg.connect(dsn(db))
        x0 = await conn.fetchrow(XACTS, db)
        cpu0 = server.cpu_times()
        seq = await run_client(server.address, "seq", args.calls)
        cpu_per_call_ms = (server.cpu_times() - cpu0) / args.calls * 1000
        x1 = await conn.fetchrow(XACTS, db)
        await conn.close()
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(run_client(server.address, f"c{k}", args.calls_per_client) for k in range(args.clients))
        )
        wall = time.perf_counter() - t0
        conc = [x for r in results for x in r]
        rss = server.rss()
    finally:
        server.stop()
        if not args.keep_db:
            await drop_db(db)
    s, c = summary(seq), summary(conc)
    result = {
        "pg": await pg_version(),
        "startup_s": round(startup, 3),
        "sequential": s,
        "concurrent": {**c, "clients": args.clients, "calls_per_s": round(len(conc) / wall, 1)},
        "server_rss_mb": round(rss / 2**20, 1),
        "server_cpu_ms_per_sequential_call": round(cpu_per_call_ms, 2),
        "pg_commits_per_call": round((x1["xact_commit"] - x0["xact_commit"]) / args.calls, 2),
        "pg_rollbacks_per_call": round((x1["xact_rollback"] - x0["xact_rollback"]) / args.calls, 2),
        "target_p99_ms": 10,
        "meets_sequential": s["p99_ms"] <= 10,
        "meets_concurrent": c["p99_ms"] <= 10,
    }
    emit(
        "E_create_latency",
        result,
        f"E CreateAlarm: sequential p50 {s['p50_ms']} ms p99 {s['p99_ms']} ms max {s['max_ms']} ms "
        f"({s['n']} calls, {1000 / (sum(seq) / len(seq)):.0f} calls/s, server CPU "
        f"{result['server_cpu_ms_per_sequential_call']} ms/call); {args.clients} clients p50 {c['p50_ms']} "
        f"ms p99 {c['p99_ms']} ms ({result['concurrent']['calls_per_s']} calls/s). target p99 <= 10 ms: "
        f"{'met' if result['meets_sequential'] else 'NOT met'} sequential, "
        f"{'met' if result['meets_concurrent'] else 'NOT met'} concurrent",
    )


if __name__ == "__main__":
    asyncio.run(main())
