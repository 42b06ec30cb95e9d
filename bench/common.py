"""Shared helpers of the labmesh benchmarks (bench/*.py): databases, the scheduler process, alarms, results.

Every benchmark creates its own database (labmesh_bench_<name>) on the local PostgreSQL and drops it after; the
scheduler runs as its own process (`python3 -m labmesh_cli.main serve scheduler`) exactly as deployed, and the
benchmark is the client. Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for p in (str(ROOT), str(ROOT / "gen")):
    if p not in sys.path:
        sys.path.insert(0, p)

import asyncpg  # noqa: E402
import grpc  # noqa: E402
import psutil  # noqa: E402
from google.protobuf import timestamp_pb2  # noqa: E402
from labmesh.scheduler.v1 import scheduler_pb2 as pb  # noqa: E402

PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_ADMIN_DSN = f"postgresql://postgres@{PG_HOST}:5432/postgres"
SERVICE = "/labmesh.scheduler.v1.SchedulerService/"
LOG_DIR = Path(os.environ.get("BENCH_LOG_DIR", "/tmp/labmesh-bench"))


def dsn(db: str) -> str:
    return f"postgresql://postgres@{PG_HOST}:5432/{db}"


def sa_url(db: str) -> str:
    return f"postgresql+asyncpg://postgres@{PG_HOST}:5432/{db}"


# ---------------------------------------------------------------------------------------------- databases


async def create_db(name: str) -> str:
    """(Re)create labmesh_bench_<name>; returns the database name."""
    db = f"labmesh_bench_{name}"
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{db}"')
    finally:
        await conn.close()
    return db


async def drop_db(db: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    finally:
        await conn.close()


async def migrate(db: str) -> None:
    from servicekit.db import migrate_async

    await migrate_async(sa_url(db))


# ---------------------------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The scheduler as a separate process, on its own database."""

    def __init__(self, db: str, env: dict[str, str] | None = None, name: str = "server") -> None:
        self.db = db
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.extra_env = env or {}
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{db}-{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.serving_after: float | None = None

    def spawn(self) -> None:
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": sa_url(self.db),
                "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}",
                "OTEL_SDK_DISABLED": "true",
            }
        )
        env.update(self.extra_env)
        self._log = open(self.log_path, "wb")
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "labmesh_cli.main", "serve", "scheduler", "--address", self.address],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def wait_serving(self, limit: float = 120.0) -> float:
        """Poll grpc.health.v1 Check every 10 ms from process start; returns seconds from spawn to SERVING."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = time.perf_counter() + limit
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"scheduler exited with {self.proc.returncode}; see {self.log_path}")
                with contextlib.suppress(grpc.aio.AioRpcError):
                    reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=0.5)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        self.serving_after = time.perf_counter() - self.started_at
                        return self.serving_after
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"not SERVING after {limit}s; see {self.log_path}")
                await asyncio.sleep(0.01)

    async def start(self) -> float:
        self.spawn()
        return await self.wait_serving()

    def rss(self) -> int:
        assert self.proc is not None
        return psutil.Process(self.proc.pid).memory_info().rss

    def cpu_times(self) -> float:
        assert self.proc is not None
        t = psutil.Process(self.proc.pid).cpu_times()
        return t.user + t.system

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


def channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        address,
        options=[
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ],
    )


# ---------------------------------------------------------------------------------------------- alarms


def ts_us(us: int) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromMicroseconds(us)
    return t


def now_us() -> int:
    return time.time_ns() // 1000


def at_alarm(i: int, at_us: int, *, prefix: str = "a", target: str | None = None) -> pb.Alarm:
    """The benchmark's typical alarm: a one-shot with a name, a display name, a target and one label."""
    return pb.Alarm(
        name=f"alarms/{prefix}-{i}",
        display_name=f"bench alarm {i}",
        target=target or f"devices/d-{i % 1000}",
        labels={"bench": prefix},
        schedule=pb.Schedule(at=ts_us(at_us)),
    )


def import_requests(alarms: Iterable[pb.Alarm], chunk: int = 1000) -> list[bytes]:
    """Serialised ImportAlarmsRequest messages of `chunk` alarms each, built before any timing starts."""
    out: list[bytes] = []
    buf: list[pb.Alarm] = []
    for a in alarms:
        buf.append(a)
        if len(buf) == chunk:
            out.append(pb.ImportAlarmsRequest(alarms=buf).SerializeToString())
            buf = []
    if buf:
        out.append(pb.ImportAlarmsRequest(alarms=buf).SerializeToString())
    return out


async def import_alarms(address: str, requests: Sequence[bytes], deadline_s: float = 600.0) -> tuple[int, float, float]:
    """Stream pre-serialised requests through ImportAlarms; returns (count, client seconds, server-reported s)."""
    async with channel(address) as ch:
        call = ch.stream_unary(
            SERVICE + "ImportAlarms", request_serializer=None, response_deserializer=pb.ImportAlarmsResponse.FromString
        )

        async def gen():  # type: ignore[no-untyped-def]
            for r in requests:
                yield r

        t0 = time.perf_counter()
        resp = await call(gen(), timeout=deadline_s)
        elapsed = time.perf_counter() - t0
    return resp.imported_count, elapsed, resp.elapsed.ToMicroseconds() / 1e6


# ---------------------------------------------------------------------------------------------- results


def pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def dist_ms(values_us: Sequence[float]) -> dict[str, float | None]:
    """p50/p90/p99/max of microsecond values, in milliseconds."""
    s = sorted(values_us)
    f = lambda q: None if not s else round(pct(s, q) / 1000, 3)  # noqa: E731
    return {"n": len(s), "p50_ms": f(0.5), "p90_ms": f(0.9), "p99_ms": f(0.99), "max_ms": f(1.0), "min_ms": f(0.0)}


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": model,
        "python": platform.python_version(),
        "load1": round(os.getloadavg()[0], 2),
    }


async def pg_version() -> str:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def emit(bench: str, result: dict[str, Any], summary: str) -> None:
    """One JSON line (machine-readable) then the human summary."""
    result = {
        "bench": bench,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **result,
    }
    print(json.dumps(result, default=str), flush=True)
    print(summary, flush=True)
