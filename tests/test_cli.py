"""The ``labmesh`` command, end to end: ``labmesh up`` as a real process, probed with grpcurl and driven by the
alarm, import and subscribe commands as separate processes."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from labmesh_cli.main import main
from tests.tools import run_grpcurl as grpcurl

ROOT = Path(__file__).resolve().parent.parent
SERVICES = (
    "labmesh.scheduler.v1.SchedulerService",
    "labmesh.device.v1.DeviceService",
    "labmesh.sample.v1.SampleService",
)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LABMESH_ADDRESS", "LABMESH_LAB")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "gen"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["SHUTDOWN_GRACE"] = "2s"
    env["OTEL_SDK_DISABLED"] = "true"
    return env


@dataclass
class Mesh:
    process: subprocess.Popen[str]
    address: str
    cwd: Path
    banner: list[str]


def _start_up(cwd: Path) -> Mesh:
    """``labmesh up --address 127.0.0.1:0`` in ``cwd``; returns once it printed its banner (it is SERVING)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "labmesh_cli.main", "up", "--address", "127.0.0.1:0"],
        cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=(cwd / "up.log").open("w"), text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    address, banner = None, []
    deadline = time.monotonic() + 60
    while True:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            process.kill()
            raise AssertionError("labmesh up did not become ready within 60 s") from None
        if line is None:
            raise AssertionError(f"labmesh up exited with {process.wait()}:\n{(cwd / 'up.log').read_text()[-3000:]}")
        banner.append(line)
        if address is None and (match := re.search(r"listening on (\S+:\d+)", line)):
            address = match.group(1)
        if "Ctrl-C stops" in line:
            assert address is not None, banner
            return Mesh(process, address, cwd, banner)


def _stop(mesh: Mesh, sig: int = signal.SIGINT) -> int:
    if mesh.process.poll() is None:
        mesh.process.send_signal(sig)
    try:
        return mesh.process.wait(20)
    except subprocess.TimeoutExpired:
        mesh.process.kill()
        raise


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    running = _start_up(tmp_path_factory.mktemp("up"))
    try:
        yield running
    finally:
        _stop(running)


def labmesh(*args: str, address: str | None = None, stdin: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "labmesh_cli.main", *args]
    if address is not None:
        command += ["--address", address]
    return subprocess.run(command, env=_env(), capture_output=True, text=True, input=stdin, timeout=timeout,
                          check=False)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


# --------------------------------------------------------------------------------------------------------- help


def test_help_lists_every_command_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    top = ok(labmesh("--help"))
    for command in ("up", "serve", "migrate", "alarm", "subscribe"):
        assert re.search(rf"^\s+{command}\s", top, re.M), f"{command} missing from labmesh --help:\n{top}"
    assert "examples:" in top
    helps = {
        ("alarm",): ("create", "list", "get", "pause", "resume", "delete", "import", "preview"),
        ("serve",): ("scheduler", "device", "sample", "gateway"),
    }
    for argv in [("up",), ("serve",), ("migrate",), ("subscribe",), ("alarm",),
                 *[("alarm", c) for c in helps[("alarm",)]]]:
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert "examples:" in text, f"no examples in labmesh {' '.join(argv)} --help"
        for word in helps.get(argv, ()):
            assert word in text, f"{word} missing from labmesh {' '.join(argv)} --help"
    serve_help = ok(labmesh("serve", "--help"))
    assert "migrations" in serve_help and "advisory lock" in serve_help


# ----------------------------------------------------------------------------------------------------- labmesh up


def test_up_serves_every_service_with_health_and_reflection(mesh: Mesh) -> None:
    assert (mesh.cwd / "labmesh.db").exists(), "the embedded database belongs in the working directory"
    banner = "".join(mesh.banner)
    assert f"grpcurl -plaintext {mesh.address} list" in banner
    assert "SchedulerService/CreateAlarm" in banner

    listed = grpcurl("-plaintext", mesh.address, "list")
    assert listed.returncode == 0, listed.stderr
    names = set(listed.stdout.split())
    assert {*SERVICES, "grpc.health.v1.Health"} <= names
    assert any(n.startswith("grpc.reflection.") for n in names), names

    for service in ("", *SERVICES):
        check = grpcurl("-plaintext", "-d", json.dumps({"service": service}), mesh.address,
                        "grpc.health.v1.Health/Check")
        assert check.returncode == 0, check.stderr
        assert json.loads(check.stdout)["status"] == "SERVING", (service, check.stdout)

    # The banner's example works as printed.
    create = re.search(r"grpcurl -plaintext -d '([^']+)' (\S+) (\S+)", banner)
    assert create is not None, banner
    made = grpcurl("-plaintext", "-d", create.group(1), create.group(2), create.group(3))
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["name"] == "alarms/hello"


def test_sigint_stops_up_cleanly(tmp_path: Path) -> None:
    own = _start_up(tmp_path)
    assert grpcurl("-plaintext", own.address, "list").returncode == 0
    assert _stop(own, signal.SIGINT) == 0
    assert "stopped" in (tmp_path / "up.log").read_text()


# ---------------------------------------------------------------------------------------------------- alarms


def test_alarm_commands_manage_an_alarm(mesh: Mesh) -> None:
    created = json.loads(ok(labmesh(
        "alarm", "create", "--name", "plate-reader", "--cron", "15 7 * * MON-FRI", "--tz", "Europe/Berlin",
        "--target", "devices/plate-reader-2", "--display-name", "Read plate", "--label", "room=3",
        "--label", "protocol=elisa", "--payload", '{"wells": 96}', "--json", address=mesh.address,
    )))
    assert created["name"] == "alarms/plate-reader"
    assert created["schedule"]["cron"] == {"expression": "15 7 * * MON-FRI", "timeZone": "Europe/Berlin"}
    assert created["labels"] == {"room": "3", "protocol": "elisa"}
    assert created["state"] == "STATE_ACTIVE" and created["nextFireTime"]

    table = ok(labmesh("alarm", "list", "--filter", 'labels.protocol="elisa"', address=mesh.address))
    header, *rows = table.splitlines()
    assert header.split()[:3] == ["NAME", "STATE", "SCHEDULE"]
    assert len(rows) == 1 and rows[0].startswith("alarms/plate-reader ") and "ACTIVE" in rows[0]
    assert "devices/plate-reader-2" in rows[0] and "Read plate" in rows[0]

    shown = ok(labmesh("alarm", "get", "plate-reader", address=mesh.address))
    assert "cron '15 7 * * MON-FRI' Europe/Berlin" in shown and '{"wells": 96}' in shown and "room=3" in shown

    assert "PAUSED" in ok(labmesh("alarm", "pause", "plate-reader", address=mesh.address))
    got = json.loads(ok(labmesh("alarm", "get", "alarms/plate-reader", "--json", address=mesh.address)))
    assert got["state"] == "STATE_PAUSED"
    assert "ACTIVE" in ok(labmesh("alarm", "resume", "plate-reader", address=mesh.address))

    assert "deleted alarms/plate-reader" in ok(labmesh("alarm", "delete", "plate-reader", address=mesh.address))
    missing = labmesh("alarm", "get", "plate-reader", address=mesh.address)
    assert missing.returncode == 1
    assert "NOT_FOUND" in missing.stderr


def test_alarm_errors_name_the_field_and_exit_nonzero(mesh: Mesh) -> None:
    bad = labmesh("alarm", "create", "--cron", "61 * * * *", "--target", "devices/x", address=mesh.address)
    assert bad.returncode == 1, bad
    assert "INVALID_ARGUMENT" in bad.stderr
    assert re.search(r"^\s+alarm\.schedule\.cron\.expression: ", bad.stderr, re.M), bad.stderr
    assert bad.stdout == ""

    usage = labmesh("alarm", "create", "--daily", "25:00", address=mesh.address)
    assert usage.returncode == 2 and "daily" in usage.stderr
    no_schedule = labmesh("alarm", "create", "--target", "devices/x", address=mesh.address)
    assert no_schedule.returncode == 2

    unreachable = labmesh("alarm", "list", "--timeout", "2", address="127.0.0.1:1")
    assert unreachable.returncode == 1 and "UNAVAILABLE" in unreachable.stderr


def _count(mesh: Mesh, lab: str) -> tuple[int, int]:
    """(alarms listed across all pages, total_size) in ``lab``."""
    listed = json.loads(ok(labmesh("alarm", "list", "--json", "--page-size", "1000", "--lab", lab,
                                   address=mesh.address)))
    return len(listed.get("alarms", [])), int(listed.get("totalSize", 0))


def test_import_csv_and_json_lines(mesh: Mesh, tmp_path: Path) -> None:
    rows = ["name,display_name,owner_email,target,at,daily,days,cron,every,time_zone,labels,payload"]
    for i in range(2000):
        schedule = [
            ",07:30,mon-fri,,,Europe/Berlin",
            ",,,*/15 8-18 * * MON-FRI,,America/New_York",
            ",,,,90s,",
            "2099-01-01T07:00:00Z,,,,,",
        ][i % 4]
        rows.append(f'csv-{i},Alarm {i},ana@lab.org,devices/d{i % 7},{schedule},room={i % 3};batch=csv,'
                    f'"{{""n"": {i}}}"')
    csv_file = tmp_path / "alarms.csv"
    csv_file.write_text("\n".join(rows) + "\n")

    imported = ok(labmesh("alarm", "import", str(csv_file), "--lab", "import-csv", address=mesh.address))
    assert re.search(r"imported 2000 alarms in [\d.]+s \([\d,]+ alarms/s", imported), imported
    assert _count(mesh, "import-csv") == (2000, 2000)
    one = json.loads(ok(labmesh("alarm", "get", "csv-5", "--json", "--lab", "import-csv", address=mesh.address)))
    assert one["labels"] == {"room": "2", "batch": "csv"} and one["payload"] == {"n": 5}
    assert one["schedule"]["cron"]["timeZone"] == "America/New_York"

    lines = [json.dumps({"name": f"jl-{i}", "target": "devices/j", "every": "1h", "labels": {"src": "jsonl"},
                         "payload": {"i": i}}) for i in range(1500)]
    lines.append(json.dumps({"name": "jl-full", "schedule": {"cron": {"expression": "0 7 * * *"}}}))
    jsonl_file = tmp_path / "alarms.jsonl"
    jsonl_file.write_text("\n".join(lines) + "\n")
    ok(labmesh("alarm", "import", str(jsonl_file), "--lab", "import-jsonl", address=mesh.address))
    assert _count(mesh, "import-jsonl") == (1501, 1501)

    # The import is one transaction: a duplicate anywhere rejects the whole file.
    again = labmesh("alarm", "import", str(jsonl_file), "--lab", "import-jsonl", address=mesh.address)
    assert again.returncode == 1 and "ALREADY_EXISTS" in again.stderr
    assert _count(mesh, "import-jsonl") == (1501, 1501)

    # A malformed row stops the import client-side, naming the line, and nothing is committed.
    broken = labmesh("alarm", "import", "-", "--format", "csv", "--lab", "import-broken", address=mesh.address,
                     stdin="name,cron\nok-1,0 7 * * *\nbad-2,\n")
    assert broken.returncode == 2 and "-:3:" in broken.stderr
    assert _count(mesh, "import-broken") == (0, 0)


# ------------------------------------------------------------------------------------------------- subscribe


def test_subscribe_prints_fires_and_acknowledges_in_a_group(mesh: Mesh) -> None:
    ok(labmesh("alarm", "create", "--name", "tick", "--every", "1s", "--target", "devices/ticker",
               "--display-name", "Tick", "--lab", "subscribe", address=mesh.address))
    plain = labmesh("subscribe", "--target", "devices/ticker", "--count", "2", "--lab", "subscribe",
                    address=mesh.address, timeout=30)
    lines = ok(plain).splitlines()
    assert len(lines) == 2, plain
    for line in lines:
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  alarms/tick/fires/\d+  devices/ticker  \"Tick\"  late ",
                        line), line
    cursor = re.search(r"resume with --cursor (\d+)", plain.stderr)
    assert cursor is not None, plain.stderr

    # Resuming from that cursor replays what fired since, starting right after the last line printed.
    resumed = ok(labmesh("subscribe", "--target", "devices/ticker", "--count", "1", "--json", "--cursor",
                         cursor.group(1), "--lab", "subscribe", address=mesh.address, timeout=30))
    event = json.loads(resumed)
    assert int(event["cursor"]) > int(cursor.group(1))
    assert event["fireId"] > lines[-1].split()[1]

    grouped = ok(labmesh("subscribe", "--target", "devices/ticker", "--group", "bridges", "--ack", "--count", "2",
                         "--json", "--lab", "subscribe", address=mesh.address, timeout=30))
    acked_ids = [json.loads(line)["fireId"] for line in grouped.splitlines()]
    records = grpcurl("-plaintext", "-H", "labmesh-lab: subscribe", "-d",
                      json.dumps({"filter": 'consumer_group="bridges" AND state=ACKNOWLEDGED', "page_size": 100}),
                      mesh.address, "labmesh.scheduler.v1.SchedulerService/ListFires")
    assert records.returncode == 0, records.stderr
    acknowledged = {f["fire_id"] for f in json.loads(records.stdout).get("fires", [])}
    assert set(acked_ids) <= acknowledged
