"""The floor under E and C: what one small committed transaction costs on this PostgreSQL, from asyncpg.

Sequential single-row INSERT transactions (BEGIN; INSERT; COMMIT), with synchronous_commit on (the server's
setting, the scheduler's case) and off (for comparison only), plus a bare `SELECT 1` round trip.

    python3 bench/pg_commit.py --n 2000
"""

from __future__ import annotations

import argparse
import asyncio
import time

import asyncpg
from common import create_db, drop_db, dsn, emit, pct, pg_version


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    db = await create_db("commit")
    out: dict = {"pg": await pg_version()}
    try:
        conn = await asyncpg.connect(dsn(db))
        await conn.execute("CREATE TABLE t (id bigserial PRIMARY KEY, v bigint NOT NULL, b bytea)")
        settings = {
            k: await conn.fetchval(f"SHOW {k}")
            for k in ("synchronous_commit", "fsync", "wal_sync_method", "shared_buffers")
        }
        out["settings"] = settings
        lat: list[float] = []
        for _ in range(args.n):
            t0 = time.perf_counter()
            await conn.fetchval("SELECT 1")
            lat.append((time.perf_counter() - t0) * 1000)
        out["select1_ms"] = {"p50": round(pct(lat, 0.5), 3), "p99": round(pct(lat, 0.99), 3)}
        for mode in ("on", "off"):
            await conn.execute(f"SET synchronous_commit = {mode}")
            lat = []
            for i in range(args.n):
                t0 = time.perf_counter()
                async with conn.transaction():
                    await conn.execute("INSERT INTO t (v, b) VALUES ($1, $2)", i, b"x" * 200)
                lat.append((time.perf_counter() - t0) * 1000)
            out[f"insert_commit_sync_{mode}_ms"] = {
                "p50": round(pct(lat, 0.5), 3),
                "p90": round(pct(lat, 0.9), 3),
                "p99": round(pct(lat, 0.99), 3),
                "max": round(max(lat), 3),
            }
        await conn.close()
    finally:
        await drop_db(db)
    on, off = out["insert_commit_sync_on_ms"], out["insert_commit_sync_off_ms"]
    emit(
        "pg_commit_floor",
        out,
        f"PostgreSQL floor: SELECT 1 round trip p50 {out['select1_ms']['p50']} ms; BEGIN+INSERT+COMMIT p50 "
        f"{on['p50']} ms p99 {on['p99']} ms (synchronous_commit on), p50 {off['p50']} ms p99 {off['p99']} ms (off)",
    )


if __name__ == "__main__":
    asyncio.run(main())
