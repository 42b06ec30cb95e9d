"""The scheduler's own measurements: Prometheus metrics (the alarm seed's names plus lateness and outcomes) and the
recent-sample reservoirs that GetSchedulerStats turns into percentiles."""

from __future__ import annotations

import gc
import logging
import sys
import time
from collections import deque
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge, Histogram

log = logging.getLogger(__name__)

TOTAL_ALARMS = Gauge("alarm_scheduler_total_alarms", "Alarms stored, by state (refreshed every stats poll)", ["state"])
PROCESSING_TIME = Histogram(
    "alarm_scheduler_processing_time",
    "Seconds to decide and durably record one batch of fires",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
MEMORY_USAGE = Gauge("alarm_scheduler_memory_usage", "Resident memory of the scheduler process, bytes")
LATENESS = Histogram(
    "alarm_scheduler_fire_lateness_seconds",
    "Recorded fire time minus due time (nominal + jitter)",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60, 300),
)
FIRES = Counter("alarm_scheduler_fires", "Occurrences recorded, by outcome", ["outcome"])
WINDOW_SIZE = Gauge("alarm_scheduler_window_size", "Alarms held in the in-memory lookahead window")
OWNED_SHARDS = Gauge("alarm_scheduler_owned_shards", "Shards whose lease this instance holds")

GC_PAUSE = Histogram(
    "python_gc_pause_seconds", "Pauses of Python's cyclic garbage collector, by generation", ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)

OUTCOME_NAMES = {1: "on_time", 2: "late", 3: "missed", 4: "skipped"}


_gc_started: list[float] = []
_running_engines = 0  # a long pause is only worth a warning while an engine fires in this process


def _on_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_started.append(time.perf_counter())
        return
    if not _gc_started:
        return
    pause = time.perf_counter() - _gc_started.pop()
    GC_PAUSE.labels(str(info.get("generation", -1))).observe(pause)
    if pause > 0.05 and _running_engines and not sys.is_finalizing():
        log.warning("garbage collection (generation %s) paused the process for %.0f ms",
                    info.get("generation"), pause * 1000)


def engine_started() -> None:
    """Record every collection's pause from now on (once per process): a full collection over a large window
    stalls the fire loop."""
    global _running_engines
    _running_engines += 1
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)


def engine_stopped() -> None:
    global _running_engines
    _running_engines = max(0, _running_engines - 1)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


@dataclass
class EngineStats:
    """Counters since start and the most recent samples (bounded, so a long run does not grow memory)."""

    start_time: float = field(default_factory=time.time)
    outcomes: dict[int, int] = field(default_factory=lambda: {1: 0, 2: 0, 3: 0, 4: 0})
    lateness_us: deque[int] = field(default_factory=lambda: deque(maxlen=20000))
    batch_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=2000))
    fire_times: deque[float] = field(default_factory=lambda: deque(maxlen=200000))

    def record(self, outcome: int, lateness_us: int | None, when: float) -> None:
        self.outcomes[outcome] += 1
        FIRES.labels(OUTCOME_NAMES[outcome]).inc()
        if lateness_us is not None:
            self.lateness_us.append(lateness_us)
            LATENESS.observe(lateness_us / 1e6)
            self.fire_times.append(when)

    def record_batch(self, seconds: float) -> None:
        self.batch_seconds.append(seconds)
        PROCESSING_TIME.observe(seconds)

    def fires_per_second(self, window_s: float = 60.0) -> float:
        now = time.time()
        recent = sum(1 for t in reversed(self.fire_times) if now - t <= window_s)
        return recent / window_s

    def lateness_percentiles(self) -> dict[str, float]:
        values = sorted(self.lateness_us)
        return {
            "p50": percentile(values, 0.50), "p90": percentile(values, 0.90),
            "p99": percentile(values, 0.99), "max": float(values[-1]) if values else 0.0,
        }

    def batch_percentiles(self) -> dict[str, float]:
        values = sorted(self.batch_seconds)
        return {"p50": percentile(values, 0.50), "p99": percentile(values, 0.99)}
