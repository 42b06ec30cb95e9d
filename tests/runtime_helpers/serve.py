"""Run an ``EchoService`` in a ``ServiceHost`` until SIGTERM: ``python -m tests.runtime_helpers.serve``.

Configured like a real service (``LABMESH_ADDRESS``, ``SHUTDOWN_GRACE``, ...); prints ``listening on HOST:PORT``.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from servicekit.config import Settings
from servicekit.server import ServiceHost
from servicekit.telemetry import setup_telemetry
from tests.runtime_helpers.echo import EchoService


async def main() -> None:
    settings = Settings.from_env()
    draining = asyncio.Event()
    host = ServiceHost([EchoService(draining=draining)], address=settings.address, settings=settings, draining=draining)
    await host.serve_until_signal()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    setup_telemetry("labmesh-test-echo")
    asyncio.run(main())
