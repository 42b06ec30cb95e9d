"""Prometheus metrics shared by every service; service-specific metrics live in the services.

``ServiceHost`` starts the endpoint when ``METRICS_PORT`` is set (0 = off); several hosts in one process
(``labmesh up``) share it. Scrape ``http://HOST:METRICS_PORT/metrics``.

Shared series:

* ``database_connection_pool_usage{service}`` — share of the database pool in use (checked-out connections /
  ``MAX_DB_CONNECTIONS``, 0..1); alert above 0.8. ``servicekit.db`` updates it with :func:`record_pool_usage`.
* ``labmesh_process_memory_bytes{kind="rss"|"vms"}`` — this process's memory, read by psutil at scrape time
  (works on every platform, unlike the client's Linux-only ``process_*`` collector).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

import prometheus_client
import psutil
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

__all__ = ["DB_POOL_USAGE", "record_pool_usage", "start_metrics_server"]

DB_POOL_USAGE = prometheus_client.Gauge(
    "database_connection_pool_usage",
    "Share of the database connection pool in use (checked out / MAX_DB_CONNECTIONS), 0..1.",
    ["service"],
)


def record_pool_usage(service: str, checked_out: int, capacity: int) -> None:
    """Set ``database_connection_pool_usage{service}`` from a pool's checked-out count and its maximum size."""
    DB_POOL_USAGE.labels(service=service).set(checked_out / capacity if capacity > 0 else 0.0)


class _ProcessMemoryCollector(Collector):
    """Reports this process's resident and virtual memory when scraped."""

    def __init__(self) -> None:
        self._process = psutil.Process()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        memory = self._process.memory_info()
        family = GaugeMetricFamily(
            "labmesh_process_memory_bytes", "Memory of this labmesh process, by kind.", labels=["kind"]
        )
        family.add_metric(["rss"], memory.rss)
        family.add_metric(["vms"], memory.vms)
        yield family


REGISTRY.register(_ProcessMemoryCollector())

_lock = threading.Lock()
_servers: dict[int, WSGIServer] = {}


def start_metrics_server(port: int, addr: str = "0.0.0.0") -> WSGIServer | None:
    """Serve ``/metrics`` on ``port`` in a daemon thread; ``port`` 0 means disabled (returns ``None``).

    Idempotent per port, so every ``ServiceHost`` of a process may call it.
    """
    if port == 0:
        return None
    with _lock:
        if port not in _servers:
            server, _thread = prometheus_client.start_http_server(port, addr=addr)
            _servers[port] = server
        return _servers[port]
