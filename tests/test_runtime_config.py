"""Settings.from_env: defaults, the alarm seed's variables, and errors that name the variable and the value."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from servicekit.config import ConfigError, Settings, parse_duration

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.database_url == "sqlite+aiosqlite:///./labmesh.db"
    assert (s.min_db_connections, s.max_db_connections, s.redis_url) == (5, 20, None)
    assert (s.timezone, s.batch_size, s.cleanup_interval) == ("UTC", 1000, 600.0)
    assert (s.max_alarms_per_instance, s.worker_threads, s.shard_count) == (100_000, 4, 64)
    assert (s.address, s.metrics_port, s.shutdown_grace, s.lookahead) == ("127.0.0.1:50051", 0, 10.0, 30.0)
    assert (s.fire_retention, s.completed_retention, s.max_payload_bytes) == (7 * 86400, 86400, 65536)
    assert (s.scheduler_address, s.device_address, s.sample_address, s.default_lab) == (None, None, None, "default")
    assert s.smtp_host is None and not s.mail_enabled and s.smtp_port == 587 and s.smtp_starttls
    assert re.fullmatch(r".+-\d+", s.instance_id)


def test_the_alarm_seeds_variables() -> None:
    s = Settings.from_env(
        {
            "DATABASE_URL": "postgresql+asyncpg://admin:password@postgres:5432/alarms_db",
            "MAX_DB_CONNECTIONS": "20",
            "MIN_DB_CONNECTIONS": "5",
            "REDIS_URL": "redis://redis:6379",
            "TIMEZONE": "America/Los_Angeles",
            "MAX_ALARMS_PER_INSTANCE": "100000",
            "WORKER_THREADS": "4",
            "BATCH_SIZE": "100",
            "CLEANUP_INTERVAL": "600",
        }
    )
    assert s.redis_url == "redis://redis:6379" and s.batch_size == 100 and s.cleanup_interval == 600
    assert str(s.tz) == "America/Los_Angeles"
    assert "password" not in repr(s)  # URLs with credentials are kept out of repr


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("1.5", 1.5), ("30s", 30), ("10m", 600), ("2h", 7200), ("7d", 604800)]
)
def test_one_duration_syntax(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert Settings.from_env({"FIRE_RETENTION": text}).fire_retention == seconds


def test_empty_means_default() -> None:
    s = Settings.from_env({"MAX_DB_CONNECTIONS": "", "REDIS_URL": "  ", "TIMEZONE": ""})
    assert (s.max_db_connections, s.redis_url, s.timezone) == (20, None, "UTC")


def _error(environ: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(environ)
    return caught.value


def test_max_connections_below_min_names_both() -> None:
    err = _error({"MIN_DB_CONNECTIONS": "10", "MAX_DB_CONNECTIONS": "3"})
    assert err.variable == "MAX_DB_CONNECTIONS"
    assert str(err) == "MAX_DB_CONNECTIONS=3 is invalid: expected an integer >= MIN_DB_CONNECTIONS (10)"


def test_non_integer_names_the_variable_and_value() -> None:
    assert str(_error({"MAX_DB_CONNECTIONS": "twenty"})) == (
        "MAX_DB_CONNECTIONS='twenty' is invalid: expected an integer"
    )
    assert "BATCH_SIZE=0" in str(_error({"BATCH_SIZE": "0"}))


def test_bad_timezone() -> None:
    message = str(_error({"TIMEZONE": "Mars/Olympus_Mons"}))
    assert message.startswith("TIMEZONE='Mars/Olympus_Mons' is invalid: expected an IANA time zone")
    assert "TIMEZONE='../etc/passwd'" in str(_error({"TIMEZONE": "../etc/passwd"}))


def test_bad_database_url_is_named_and_its_password_hidden() -> None:
    message = str(_error({"DATABASE_URL": "mysql://root:s3cret@db/labmesh"}))
    assert message.startswith("DATABASE_URL='mysql://root:***@db/labmesh' is invalid")
    assert "postgresql+asyncpg://" in message and "sqlite+aiosqlite://" in message
    assert "s3cret" not in message
    assert "write postgresql+asyncpg://" in str(_error({"DATABASE_URL": "postgresql://db/labmesh"}))


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REDIS_URL", "memcached://cache"),
        ("LABMESH_ADDRESS", "50051"),
        ("METRICS_PORT", "70000"),
        ("SHUTDOWN_GRACE", "soon"),
        ("LOOKAHEAD", "-5"),
        ("SMTP_STARTTLS", "perhaps"),
        ("DEFAULT_LAB", "Lab One"),
        ("SHARD_COUNT", "0"),
        ("SCHEDULER_ADDRESS", "sched uler:1"),
    ],
)
def test_every_bad_value_names_its_variable(variable: str, value: str) -> None:
    err = _error({variable: value})
    assert err.variable == variable and str(err).startswith(f"{variable}=")


def test_secrets_never_appear() -> None:
    err = _error({"SMTP_HOST": "mail", "SMTP_USERNAME": "lab"})
    assert err.variable == "SMTP_PASSWORD"
    s = Settings.from_env({"SMTP_HOST": "mail", "SMTP_USERNAME": "lab", "SMTP_PASSWORD": "hunter2"})
    assert s.mail_enabled and "hunter2" not in repr(s)


def test_with_overrides_validates_again_and_settings_are_frozen() -> None:
    s = Settings.from_env({})
    assert s.with_overrides(batch_size=10).batch_size == 10
    with pytest.raises(ConfigError, match="MAX_DB_CONNECTIONS=2"):
        s.with_overrides(max_db_connections=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.batch_size = 1  # type: ignore[misc]


def test_every_variable_is_documented() -> None:
    docs = DOCS.read_text()
    missing = [v for v in Settings.variables() if f"`{v}`" not in docs]
    assert not missing, f"add to docs/configuration.md: {missing}"
