"""Settings from the environment (12-factor), validated once at start.

Every service reads one :class:`Settings` with :meth:`Settings.from_env` before it binds a port. A bad value stops
the process with a :class:`ConfigError` that names the variable, the value and what is expected — a typo in a
Helm value should fail the rollout, not the first alarm at 3 a.m.

Each field declares its environment variable, its parser (text -> value) and its check (value -> "expected ..."
or ``None``) next to its default; ``docs/configuration.md`` lists them all. Conventions:

* an unset or empty variable means "use the default" (Kubernetes templates often render empty strings);
* durations are seconds, with an optional unit suffix: ``90``, ``1.5``, ``30s``, ``10m``, ``2h``, ``7d``;
* booleans are ``true/false``, ``1/0``, ``yes/no`` or ``on/off``;
* ``OTEL_*`` variables are read by :mod:`servicekit.telemetry`, not here.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from servicekit.tenancy import LAB_PATTERN

__all__ = ["ConfigError", "Settings", "parse_bool", "parse_duration"]


class ConfigError(ValueError):
    """A configuration variable has a value the services cannot run with."""

    def __init__(self, variable: str, value: object, expected: str) -> None:
        self.variable = variable
        self.value = value
        self.expected = expected
        super().__init__(f"{variable}={value!r} is invalid: expected {expected}")


# --- parsers: text of a variable -> typed value (raise ValueError with what was expected) -------------------------

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds from ``"90"``, ``"1.5"``, ``"30s"``, ``"10m"``, ``"2h"`` or ``"7d"`` (the one duration syntax)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not match:
        raise ValueError("a duration in seconds, optionally with a unit: 90, 30s, 10m, 2h, 7d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_bool(text: str) -> bool:
    """``true/false``, ``1/0``, ``yes/no``, ``on/off`` (any case)."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("a boolean: true or false")


def _parse_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError("an integer") from None


def _parse_str(text: str) -> str:
    return text.strip()


# --- checks: typed value -> None if fine, else what is expected --------------------------------------------------

Check = Callable[[Any], "str | None"]


def _at_least(minimum: float) -> Check:
    return lambda value: None if value >= minimum else f"a number >= {minimum:g}"


def _between(low: int, high: int) -> Check:
    return lambda value: None if low <= value <= high else f"an integer from {low} to {high}"


def _check_database_url(url: str) -> str | None:
    if url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        return None
    hint = " (write postgresql+asyncpg:// for PostgreSQL)" if url.startswith(("postgres://", "postgresql")) else ""
    return f"a SQLAlchemy async URL starting with postgresql+asyncpg:// or sqlite+aiosqlite://{hint}"


def _check_redis_url(url: str | None) -> str | None:
    if url is None or url.startswith(("redis://", "rediss://", "unix://")):
        return None
    return "a URL starting with redis://, rediss:// or unix:// (or unset for no Redis)"


def _check_timezone(name: str) -> str | None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return "an IANA time zone name such as UTC or Europe/Berlin"
    return None


def _check_bind_address(address: str) -> str | None:
    host, sep, port = address.rpartition(":")
    if sep and host and port.isdigit() and int(port) <= 65535:
        return None
    return "HOST:PORT to bind, e.g. 0.0.0.0:50051, [::]:50051 or 127.0.0.1:0"


def _check_target(target: str | None) -> str | None:
    if target is None or (target and not any(c.isspace() for c in target)):
        return None
    return "a gRPC target such as scheduler:50051 or dns:///scheduler.labs.svc:50051 (or unset: same process)"


def _check_lab(lab: str) -> str | None:
    return None if LAB_PATTERN.fullmatch(lab) else "a lab id: 1-63 of [a-z0-9-], not starting with '-'"


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _var(env: str, parse: Callable[[str], Any], check: Check | None = None) -> dict[str, Any]:
    """Field metadata binding a setting to its environment variable."""
    return {"env": env, "parse": parse, "check": check}


_URL_PASSWORD = re.compile(r"(//[^/:@]*:)[^/@]*@")


def _redact(value: object) -> object:
    """Hide the password of a URL (``user:***@host``) so error messages and logs never print it."""
    return _URL_PASSWORD.sub(r"\1***@", value) if isinstance(value, str) else value


_SECRET_VARIABLES = frozenset({"SMTP_PASSWORD"})
_URL_VARIABLES = frozenset({"DATABASE_URL", "REDIS_URL"})


@dataclass(frozen=True)
class Settings:
    """Everything a labmesh process is configured with. Durations are float seconds."""

    # Database (SQLAlchemy async URL and pool bounds).
    database_url: str = field(
        default="sqlite+aiosqlite:///./labmesh.db",
        repr=False,  # may hold a password
        metadata=_var("DATABASE_URL", _parse_str, _check_database_url),
    )
    min_db_connections: int = field(default=5, metadata=_var("MIN_DB_CONNECTIONS", _parse_int, _at_least(1)))
    max_db_connections: int = field(default=20, metadata=_var("MAX_DB_CONNECTIONS", _parse_int, _at_least(1)))
    redis_url: str | None = field(default=None, repr=False, metadata=_var("REDIS_URL", _parse_str, _check_redis_url))

    # Scheduler.
    timezone: str = field(default="UTC", metadata=_var("TIMEZONE", _parse_str, _check_timezone))
    batch_size: int = field(default=1000, metadata=_var("BATCH_SIZE", _parse_int, _at_least(1)))
    cleanup_interval: float = field(default=600.0, metadata=_var("CLEANUP_INTERVAL", parse_duration, _at_least(1)))
    max_alarms_per_instance: int = field(
        default=100_000, metadata=_var("MAX_ALARMS_PER_INSTANCE", _parse_int, _at_least(1))
    )
    lookahead: float = field(default=30.0, metadata=_var("LOOKAHEAD", parse_duration, _at_least(1)))
    fire_retention: float = field(default=7 * 86400.0, metadata=_var("FIRE_RETENTION", parse_duration, _at_least(1)))
    completed_retention: float = field(
        default=86400.0, metadata=_var("COMPLETED_RETENTION", parse_duration, _at_least(1))
    )
    max_payload_bytes: int = field(default=65536, metadata=_var("MAX_PAYLOAD_BYTES", _parse_int, _at_least(0)))
    fire_stream_buffer: int = field(
        default=10_000, metadata=_var("FIRE_STREAM_BUFFER", _parse_int, _at_least(1))
    )
    lease_ttl: float = field(default=15.0, metadata=_var("LEASE_TTL", parse_duration, _at_least(1)))
    shard_count: int = field(default=64, metadata=_var("SHARD_COUNT", _parse_int, _between(1, 4096)))
    instance_id: str = field(default_factory=_default_instance_id, metadata=_var("INSTANCE_ID", _parse_str))

    # Process and server.
    worker_threads: int = field(default=4, metadata=_var("WORKER_THREADS", _parse_int, _at_least(1)))
    address: str = field(default="127.0.0.1:50051", metadata=_var("LABMESH_ADDRESS", _parse_str, _check_bind_address))
    metrics_port: int = field(default=0, metadata=_var("METRICS_PORT", _parse_int, _between(0, 65535)))
    shutdown_grace: float = field(default=10.0, metadata=_var("SHUTDOWN_GRACE", parse_duration, _at_least(0)))

    # Mesh: where the other services are (unset = in this process), and the lab of calls that name none.
    scheduler_address: str | None = field(default=None, metadata=_var("SCHEDULER_ADDRESS", _parse_str, _check_target))
    device_address: str | None = field(default=None, metadata=_var("DEVICE_ADDRESS", _parse_str, _check_target))
    sample_address: str | None = field(default=None, metadata=_var("SAMPLE_ADDRESS", _parse_str, _check_target))
    default_lab: str = field(default="default", metadata=_var("DEFAULT_LAB", _parse_str, _check_lab))

    # Mail (SMTP_HOST unset = mail disabled).
    smtp_host: str | None = field(default=None, metadata=_var("SMTP_HOST", _parse_str))
    smtp_port: int = field(default=587, metadata=_var("SMTP_PORT", _parse_int, _between(1, 65535)))
    smtp_username: str | None = field(default=None, metadata=_var("SMTP_USERNAME", _parse_str))
    smtp_password: str | None = field(default=None, repr=False, metadata=_var("SMTP_PASSWORD", _parse_str))
    smtp_from: str = field(default="labmesh@localhost", metadata=_var("SMTP_FROM", _parse_str))
    smtp_starttls: bool = field(default=True, metadata=_var("SMTP_STARTTLS", parse_bool))
    smtp_retry_interval: float = field(
        default=30.0, metadata=_var("SMTP_RETRY_INTERVAL", parse_duration, _at_least(0.1))
    )
    smtp_max_attempts: int = field(default=10, metadata=_var("SMTP_MAX_ATTEMPTS", _parse_int, _at_least(1)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Read and validate every setting; raise :class:`ConfigError` naming the first bad variable."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            variable = f.metadata["env"]
            text = environ.get(variable, "")
            if not text.strip():
                continue  # unset or empty: the default
            try:
                values[f.name] = f.metadata["parse"](text)
            except ValueError as exc:
                raise ConfigError(variable, _shown(variable, text), str(exc)) from None
        return cls(**values)

    def __post_init__(self) -> None:
        """Validate every field, then the rules that relate fields (runs for ``from_env`` and ``with_overrides``)."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            check = f.metadata["check"]
            expected = check(value) if check is not None and value is not None else None
            if expected:
                raise ConfigError(f.metadata["env"], _shown(f.metadata["env"], value), expected)
        if self.max_db_connections < self.min_db_connections:
            raise ConfigError(
                "MAX_DB_CONNECTIONS",
                self.max_db_connections,
                f"an integer >= MIN_DB_CONNECTIONS ({self.min_db_connections})",
            )
        if self.smtp_username is not None and self.smtp_password is None:
            raise ConfigError("SMTP_PASSWORD", None, "a password, because SMTP_USERNAME is set")

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with some fields replaced (by field name), validated again. Meant for tests and the CLI."""
        return dataclasses.replace(self, **overrides)

    @property
    def tz(self) -> ZoneInfo:
        """``timezone`` as a ``ZoneInfo``: the zone schedules without an explicit zone are evaluated in."""
        return ZoneInfo(self.timezone)

    @property
    def mail_enabled(self) -> bool:
        """Whether the mailer may send: only with an SMTP host."""
        return self.smtp_host is not None

    @staticmethod
    def variables() -> dict[str, str]:
        """Environment variable -> field name, for documentation and error messages."""
        return {f.metadata["env"]: f.name for f in dataclasses.fields(Settings)}


def _shown(variable: str, value: object) -> object:
    """The value as an error message may show it: secrets hidden, URL passwords masked."""
    if variable in _SECRET_VARIABLES:
        return "***"
    return _redact(value) if variable in _URL_VARIABLES else value
