"""``labmesh up``, ``labmesh serve COMPONENT`` and ``labmesh migrate``: the server side of the command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
import sys
from typing import Any

from servicekit.config import Settings

__all__ = ["add_parsers"]

log = logging.getLogger("labmesh")

_UP_EPILOG = """\
Runs the scheduler, device and sample services in one process on one port (with gRPC health and reflection),
on the embedded database: the SQLite file ./labmesh.db unless DATABASE_URL (or --database-url) says otherwise.
Migrations are applied first. The services call each other through gRPC on that same address, exactly as they
do when deployed separately. Ctrl-C (or SIGTERM) drains streams and stops cleanly. All other settings come
from the environment (docs/configuration.md).

examples:
  labmesh up
  labmesh up --address 0.0.0.0:50051
  labmesh up --address 127.0.0.1:0          # any free port; the chosen one is printed
  DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1/labmesh labmesh up
"""

_SERVE_EPILOG = """\
Runs one component on its own port, configured by the environment (docs/configuration.md); this is what the
Helm chart runs in each pod. The scheduler applies the database migrations before it starts serving: running
several replicas at once is safe, because migrations take an advisory lock (PostgreSQL) or an exclusive write
transaction (SQLite), so exactly one applies them and the others wait and find nothing to do. The gateway
reaches the others at SCHEDULER_ADDRESS, DEVICE_ADDRESS and SAMPLE_ADDRESS.

examples:
  DATABASE_URL=postgresql+asyncpg://labmesh@db/labmesh labmesh serve scheduler --address 0.0.0.0:50051
  SCHEDULER_ADDRESS=dns:///scheduler:50051 DEVICE_ADDRESS=dns:///device:50051 \\
      SAMPLE_ADDRESS=dns:///sample:50051 labmesh serve gateway --address 0.0.0.0:8443
"""

_MIGRATE_EPILOG = """\
Upgrades the database to the newest schema (Alembic "upgrade head"). Idempotent and safe to run concurrently
with other migrations or with running services.

examples:
  labmesh migrate                                  # ./labmesh.db, or $DATABASE_URL
  labmesh migrate --database-url postgresql+asyncpg://postgres@127.0.0.1/labmesh
"""

COMPONENTS = ("scheduler", "device", "sample", "gateway")


def add_parsers(subparsers: Any) -> None:
    up = subparsers.add_parser(
        "up", help="run the whole mesh in one process (embedded database)", epilog=_UP_EPILOG,
        description="Run scheduler, device and sample services in one process.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    up.add_argument("--address", metavar="HOST:PORT", help="where to listen (default: $LABMESH_ADDRESS or "
                    "127.0.0.1:50051; port 0 picks a free port)")
    up.add_argument("--database-url", metavar="URL", help="default: $DATABASE_URL or sqlite+aiosqlite:///./labmesh.db")
    up.set_defaults(func=run_up)

    serve = subparsers.add_parser(
        "serve", help="run one component (scheduler, device, sample or gateway)", epilog=_SERVE_EPILOG,
        description="Run one labmesh component on its own port.", formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("component", choices=COMPONENTS)
    serve.add_argument("--address", metavar="HOST:PORT", help="where to listen (default: $LABMESH_ADDRESS or "
                       "127.0.0.1:50051)")
    serve.add_argument("--database-url", metavar="URL", help="default: $DATABASE_URL or sqlite+aiosqlite:///./labmesh.db")
    serve.add_argument("--skip-migrations", action="store_true",
                       help="scheduler: do not apply migrations at start (e.g. when a job runs `labmesh migrate`)")
    serve.set_defaults(func=run_serve)

    migrate = subparsers.add_parser(
        "migrate", help="apply database migrations", epilog=_MIGRATE_EPILOG,
        description="Upgrade the database schema.", formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    migrate.add_argument("--database-url", metavar="URL", help="default: $DATABASE_URL or "
                         "sqlite+aiosqlite:///./labmesh.db")
    migrate.add_argument("--revision", default="head", help="target revision (default: %(default)s)")
    migrate.set_defaults(func=run_migrate)


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    settings = Settings.from_env()
    if getattr(args, "database_url", None):
        overrides["database_url"] = _async_url(args.database_url)
    if getattr(args, "address", None):
        overrides["address"] = args.address
    return settings.with_overrides(**overrides) if overrides else settings


def _async_url(url: str) -> str:
    """Accept ``postgresql://`` and ``sqlite:///`` too: the async driver is the only one labmesh uses."""
    from servicekit.db import normalize_url

    try:
        return normalize_url(url).render_as_string(hide_password=False)
    except Exception:
        return url  # Settings names the problem


def _shown_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # one line per plugin at every start


# ----------------------------------------------------------------------------------------------------- up


def reserve_address(address: str) -> str:
    """``address`` with port 0 replaced by a port that is free now (the services must know their own address
    before the server binds it). grpc binds without SO_REUSEPORT, so in the unlikely case that another process
    takes the port in between, start fails loudly instead of sharing it."""
    host, _, port = address.rpartition(":")
    if port != "0":
        return address
    bare = host.strip("[]") or "0.0.0.0"
    infos = socket.getaddrinfo(bare, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.bind(sockaddr)
        free = sock.getsockname()[1]
    return f"{host}:{free}"


def dial_target(address: str) -> str:
    """Where a local client reaches a server bound to ``address`` (wildcard hosts become loopback)."""
    host, _, port = address.rpartition(":")
    if host in ("", "0.0.0.0", "*"):
        return f"127.0.0.1:{port}"
    if host in ("[::]", "::"):
        return f"[::1]:{port}"
    return address


async def _wait_serving(target: str, service: str = "", limit: float = 30.0) -> None:
    """Poll grpc.health.v1 Check on ``target`` until ``service`` is SERVING."""
    import grpc
    import grpc.aio
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2, wait_for_ready=True)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if loop.time() > deadline:
                raise TimeoutError(f"{target} did not report SERVING within {limit:g}s")
            await asyncio.sleep(0.05)


async def _serve(host: Any, announce: Any = None) -> None:
    """``host.serve_until_signal()``, calling ``announce()`` once the host answers health checks SERVING."""
    serving = asyncio.ensure_future(host.serve_until_signal())
    if announce is not None:
        announcing = asyncio.ensure_future(announce())
        await asyncio.wait((serving, announcing), return_when=asyncio.FIRST_COMPLETED)
        if not announcing.done():
            announcing.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await announcing
    await serving


def _banner(target: str, database_url: str) -> str:
    create = ('{"alarm_id": "hello", "alarm": {"display_name": "Hello labmesh", "target": "devices/incubator-7", '
              '"schedule": {"interval": {"every": "60s"}}}}')
    return "\n".join([
        f"labmesh is up on {target}: scheduler, device and sample services, health and reflection",
        f"database: {_shown_url(database_url)}",
        "try:",
        f"  grpcurl -plaintext {target} list",
        f"  grpcurl -plaintext -d '{create}' {target} labmesh.scheduler.v1.SchedulerService/CreateAlarm",
        f"  labmesh alarm list --address {target}",
        f"  labmesh subscribe --address {target} --target devices/incubator-7",
        "Ctrl-C stops.",
    ])


async def run_up(args: argparse.Namespace) -> int:
    from device_svc.service import DeviceService
    from sample_svc.service import SampleService
    from scheduler_svc.service import SchedulerService
    from servicekit.db import migrate_async
    from servicekit.server import ServiceHost
    from servicekit.telemetry import setup_telemetry

    _setup_logging()
    settings = _settings(args)
    bind = reserve_address(settings.address)
    target = dial_target(bind)
    # In one process the services still reach each other through gRPC, on this very address.
    settings = settings.with_overrides(address=bind, scheduler_address=target, device_address=target,
                                       sample_address=target)
    setup_telemetry("labmesh")
    log.info("applying migrations to %s", _shown_url(settings.database_url))
    await migrate_async(settings.database_url)
    draining = asyncio.Event()
    services = [SchedulerService(settings, draining), DeviceService(settings, draining),
                SampleService(settings, draining)]
    host = ServiceHost(services, address=bind, settings=settings, draining=draining)

    async def announce() -> None:
        await _wait_serving(target)
        print(_banner(target, settings.database_url), flush=True)

    await _serve(host, announce)
    return 0


# ----------------------------------------------------------------------------------------------------- serve


async def run_serve(args: argparse.Namespace) -> int:
    from servicekit.server import ServiceHost
    from servicekit.telemetry import setup_telemetry

    _setup_logging()
    settings = _settings(args)
    setup_telemetry(f"labmesh-{args.component}")
    if args.component == "gateway":
        from gateway.service import build_gateway_host

        # Proxies every backend service; reflection and health list and report them.
        await build_gateway_host(settings).serve_until_signal()
        return 0
    draining = asyncio.Event()
    if args.component == "scheduler":
        from scheduler_svc.service import SchedulerService
        from servicekit.db import migrate_async

        if not args.skip_migrations:
            log.info("applying migrations to %s", _shown_url(settings.database_url))
            await migrate_async(settings.database_url)
        service: Any = SchedulerService(settings, draining)
    elif args.component == "device":
        from device_svc.service import DeviceService

        service = DeviceService(settings, draining)
    else:
        from sample_svc.service import SampleService

        service = SampleService(settings, draining)
    host = ServiceHost([service], address=settings.address, settings=settings, draining=draining)
    await host.serve_until_signal()
    return 0


# ----------------------------------------------------------------------------------------------------- migrate


def run_migrate(args: argparse.Namespace) -> int:
    from servicekit.db import migrate

    settings = _settings(args)
    migrate(settings.database_url, args.revision)
    print(f"migrated {_shown_url(settings.database_url)} to {args.revision}")
    return 0
