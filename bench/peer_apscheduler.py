"""Peer: APScheduler 3 (`pip install 'apscheduler<4'`) on the same machine, for B and D side by side.

burst:  --jobs date-trigger jobs due at the same instant (BackgroundScheduler, default ThreadPoolExecutor of 10
        workers, misfire_grace_time=None so none is dropped); when did the last one run (relative to the instant)?
        --store memory (MemoryJobStore, the default) or sqlalchemy (SQLAlchemyJobStore on PostgreSQL, needs a sync
        driver: psycopg2). Nothing is durable in the memory store; the SQL store commits each job's removal.
memory: --jobs jobs in a MemoryJobStore (scheduler started paused, jobs a day ahead, added in time order, the
        store's cheap case): time to add and the process RSS delta.

    python3 bench/peer_apscheduler.py burst --jobs 100000 --store memory
    python3 bench/peer_apscheduler.py burst --jobs 10000 --store sqlalchemy
    python3 bench/peer_apscheduler.py memory --jobs 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import threading
import time

import apscheduler
import psutil
from common import create_db, drop_db, emit, pct

UTC = dt.UTC
done_times: list[float] = []
lock = threading.Lock()


def job() -> None:
    t = time.time()
    with lock:
        done_times.append(t)


def burst(args: argparse.Namespace) -> dict:
    from apscheduler.schedulers.background import BackgroundScheduler

    db = None
    jobstores = {}
    if args.store == "sqlalchemy":
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

        db = asyncio.run(create_db("apscheduler"))
        jobstores = {"default": SQLAlchemyJobStore(url=f"postgresql+psycopg2://postgres@127.0.0.1:5432/{db}")}
    sched = BackgroundScheduler(
        jobstores=jobstores, timezone=UTC, job_defaults={"misfire_grace_time": None, "coalesce": False}
    )
    sched.start(paused=True)
    try:
        n = args.jobs
        t_add = time.perf_counter()
        instant = None
        # The instant is set after we know how long adding takes: add with a placeholder far ahead, then
        # no; simpler: estimate generously and check.
        instant = time.time() + args.lead
        run_date = dt.datetime.fromtimestamp(instant, UTC)
        for i in range(n):
            sched.add_job(job, "date", run_date=run_date, id=f"j{i}")
        add_s = time.perf_counter() - t_add
        if time.time() > instant - 1:
            raise SystemExit(f"adding took {add_s:.1f}s: raise --lead")
        sched.resume()
        deadline = instant + args.timeout
        while len(done_times) < n and time.time() < deadline:
            time.sleep(0.01)
        rss = psutil.Process().memory_info().rss
    finally:
        sched.shutdown(wait=False)
        if db:
            asyncio.run(drop_db(db))
    rel = sorted(t - instant for t in done_times)
    return {
        "store": args.store,
        "jobs": n,
        "ran": len(rel),
        "add_s": round(add_s, 2),
        "first_run_s": round(rel[0], 3) if rel else None,
        "last_run_s": round(rel[-1], 3) if rel else None,
        "p50_s": round(pct(rel, 0.5), 3) if rel else None,
        "rss_mb": round(rss / 2**20, 1),
    }


def memory(args: argparse.Namespace) -> dict:
    from apscheduler.schedulers.background import BackgroundScheduler

    proc = psutil.Process()
    sched = BackgroundScheduler(timezone=UTC)
    sched.start(paused=True)
    rss0 = proc.memory_info().rss
    base = dt.datetime.now(UTC) + dt.timedelta(days=1)
    t0 = time.perf_counter()
    for i in range(args.jobs):
        sched.add_job(job, "date", run_date=base + dt.timedelta(microseconds=i * 86_400), id=f"j{i}")
    add_s = time.perf_counter() - t0
    rss1 = proc.memory_info().rss
    sched.shutdown(wait=False)
    return {
        "jobs": args.jobs,
        "add_s": round(add_s, 2),
        "adds_per_s": round(args.jobs / add_s),
        "rss_before_mb": round(rss0 / 2**20, 1),
        "rss_after_mb": round(rss1 / 2**20, 1),
        "bytes_per_job": round((rss1 - rss0) / args.jobs),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("burst", "memory"))
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--store", choices=("memory", "sqlalchemy"), default="memory")
    ap.add_argument("--lead", type=float, default=30.0, help="burst: seconds from the first add to the instant")
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()
    if args.mode == "burst":
        r = burst(args)
        emit(
            "peer_apscheduler_burst",
            {"apscheduler": apscheduler.__version__, **r},
            f"APScheduler {apscheduler.__version__} {r['store']} store: {r['ran']}/{r['jobs']} jobs due at one "
            f"instant ran; first +{r['first_run_s']} s, half by +{r['p50_s']} s, last +{r['last_run_s']} s "
            f"(adding them took {r['add_s']} s)",
        )
    else:
        r = memory(args)
        emit(
            "peer_apscheduler_memory",
            {"apscheduler": apscheduler.__version__, **r},
            f"APScheduler {apscheduler.__version__} MemoryJobStore: {r['jobs']} jobs added in {r['add_s']} s "
            f"({r['adds_per_s']}/s); RSS {r['rss_before_mb']} -> {r['rss_after_mb']} MB "
            f"({r['bytes_per_job']} bytes/job)",
        )


if __name__ == "__main__":
    main()
