"""Start real ``ServiceHost``s on port 0 inside a test, and free ports for things that need a fixed one."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from servicekit.config import Settings
from servicekit.server import ServiceHost
from tests.runtime_helpers.echo import EchoService


def make_settings(**overrides: Any) -> Settings:
    """Settings from an empty environment (nothing leaks in from the shell), plus ``overrides``."""
    return Settings.from_env({}).with_overrides(address="127.0.0.1:0", shutdown_grace=2.0, **overrides)


@asynccontextmanager
async def running_host(
    *services: EchoService, settings: Settings | None = None, **kw: Any
) -> AsyncIterator[ServiceHost]:
    """A started host serving ``services`` (they share its draining event); stopped on exit.

    ``host.port`` is the bound port; the target is ``f"127.0.0.1:{host.port}"``.
    """
    settings = settings or make_settings()
    draining = asyncio.Event()
    for service in services:
        service.draining = draining
    host = ServiceHost(services, address=settings.address, settings=settings, draining=draining, **kw)
    await host.start()
    try:
        yield host
    finally:
        await host.stop(grace=0)


def target(host: ServiceHost) -> str:
    return f"127.0.0.1:{host.port}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
