"""The scheduler process is killed (SIGKILL, no shutdown) while alarms fall due; after a restart every missed
occurrence follows its alarm's misfire policy, and the fire log says what happened to each."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import grpc
from labmesh.scheduler.v1 import scheduler_pb2 as pb
from labmesh.scheduler.v1 import scheduler_pb2_grpc

from tests.scheduler_support import dur, ts, wait_for

ROOT = Path(__file__).resolve().parent.parent


async def start_scheduler(database_url: str, tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "DATABASE_URL": database_url, "LEASE_TTL": "2s", "LOOKAHEAD": "5s",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen")])}
    process = subprocess.Popen(  # noqa: ASYNC220 (its output is read through the executor below)
        [sys.executable, "-m", "labmesh_cli.main", "serve", "scheduler", "--address", "127.0.0.1:0"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert process.stdout is not None
    loop = asyncio.get_running_loop()
    while True:
        line = await asyncio.wait_for(loop.run_in_executor(None, process.stdout.readline), 60)
        if not line:
            raise AssertionError(f"scheduler exited early with {process.wait()}")
        match = re.search(r"listening on (\S+:\d+)", line)
        if match:
            return process, match.group(1)


async def fires_of(stub, name: str) -> dict[int, list[pb.FireRecord]]:
    page = await stub.ListFires(pb.ListFiresRequest(filter=f'alarm = "{name}"', page_size=1000))
    by_outcome: dict[int, list[pb.FireRecord]] = {}
    for record in page.fires:
        by_outcome.setdefault(record.outcome, []).append(record)
    return by_outcome


async def test_killed_scheduler_applies_each_misfire_policy_on_restart(migrated_database_url: str, tmp_path) -> None:
    process, address = await start_scheduler(migrated_database_url, tmp_path)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)

            def every_second(catch_up: int) -> pb.Alarm:
                return pb.Alarm(
                    target="devices/restart", schedule=pb.Schedule(interval=pb.IntervalSchedule(
                        every=dur(1.0), anchor_time=ts(0.5))),
                    misfire_policy=pb.MisfirePolicy(grace=dur(0.2), catch_up=catch_up),
                )

            def once(catch_up: int) -> pb.Alarm:
                return pb.Alarm(target="devices/restart", schedule=pb.Schedule(at=ts(2.0)),
                                misfire_policy=pb.MisfirePolicy(grace=dur(0.2), catch_up=catch_up))

            created = {}
            for key, alarm in {"skip": every_second(pb.CATCH_UP_SKIP), "latest": every_second(pb.CATCH_UP_LATEST),
                               "all": every_second(pb.CATCH_UP_ALL), "once-skip": once(pb.CATCH_UP_SKIP),
                               "once-latest": once(pb.CATCH_UP_LATEST)}.items():
                created[key] = (await stub.CreateAlarm(pb.CreateAlarmRequest(alarm=alarm, alarm_id=key))).name

            async def fired_once() -> bool:
                return bool((await fires_of(stub, created["all"])).get(pb.FIRE_OUTCOME_ON_TIME))

            await wait_for(fired_once, timeout=20)
        process.send_signal(signal.SIGKILL)  # no shutdown, no lease release
        process.wait(10)
        await asyncio.sleep(4.0)  # about four occurrences of each interval alarm fall due, and both one-shots

        process, address = await start_scheduler(migrated_database_url, tmp_path)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)

            async def caught_up() -> bool:
                once_done = await stub.GetAlarm(pb.GetAlarmRequest(name=created["once-latest"]))
                return once_done.state == pb.Alarm.STATE_COMPLETED

            await wait_for(caught_up, timeout=30)
            await asyncio.sleep(0.5)
            for key in ("skip", "latest", "all"):
                await stub.PauseAlarm(pb.PauseAlarmRequest(name=created[key]))

            skip = await fires_of(stub, created["skip"])
            missed = skip.get(pb.FIRE_OUTCOME_MISSED, [])
            assert len(missed) >= 3, skip
            assert all("catch-up policy skip" in r.reason for r in missed)
            assert not [r for r in skip.get(pb.FIRE_OUTCOME_LATE, []) if "catch-up" in r.reason]

            latest = await fires_of(stub, created["latest"])
            caught = [r for r in latest.get(pb.FIRE_OUTCOME_LATE, []) if "catch-up" in r.reason]
            assert len(caught) == 1  # only the most recent missed occurrence fires
            assert len(latest.get(pb.FIRE_OUTCOME_MISSED, [])) >= 2
            assert all(m.nominal_time.ToMicroseconds() < caught[0].nominal_time.ToMicroseconds()
                       for m in latest[pb.FIRE_OUTCOME_MISSED])

            every = await fires_of(stub, created["all"])
            assert len([r for r in every.get(pb.FIRE_OUTCOME_LATE, []) if "catch-up" in r.reason]) >= 3
            assert not every.get(pb.FIRE_OUTCOME_MISSED)

            # Nothing lost: each interval alarm's log covers every occurrence, one record each.
            for key in ("skip", "latest", "all"):
                records = [r for rs in (await fires_of(stub, created[key])).values() for r in rs]
                nominals = sorted(r.nominal_time.ToMicroseconds() for r in records)
                assert len(nominals) == len(set(nominals))
                gaps = {b - a for a, b in itertools.pairwise(nominals)}
                assert gaps <= {1_000_000}, f"{key}: an occurrence is missing from the fire log"

            once_skip = await fires_of(stub, created["once-skip"])
            assert [r.outcome for rs in once_skip.values() for r in rs] == [pb.FIRE_OUTCOME_MISSED]
            once_latest = await fires_of(stub, created["once-latest"])
            assert [r.outcome for rs in once_latest.values() for r in rs] == [pb.FIRE_OUTCOME_LATE]
            skipped_alarm = await stub.GetAlarm(pb.GetAlarmRequest(name=created["once-skip"]))
            assert skipped_alarm.state == pb.Alarm.STATE_COMPLETED and skipped_alarm.fire_count == 0
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


async def test_sigterm_drains_an_open_fire_stream_and_exits_cleanly(migrated_database_url: str, tmp_path) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from servicekit.errors import status_details

    process, address = await start_scheduler(migrated_database_url, tmp_path)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            service = "labmesh.scheduler.v1.SchedulerService"
            watch = health.Watch(health_pb2.HealthCheckRequest(service=service))
            first = await watch.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            stream = stub.Fire(pb.FireRequest(filter=pb.FireFilter(targets=["devices/x"])))
            await stream.wait_for_connection()

            loop = asyncio.get_running_loop()
            started = loop.time()
            process.send_signal(signal.SIGTERM)
            statuses = []
            with contextlib.suppress(grpc.aio.AioRpcError):
                while not statuses or statuses[-1] != health_pb2.HealthCheckResponse.NOT_SERVING:
                    update = await watch.read()
                    if update is grpc.aio.EOF:
                        break
                    statuses.append(update.status)
            assert health_pb2.HealthCheckResponse.NOT_SERVING in statuses
            try:
                await stream.read()
                raise AssertionError("the stream should have ended")
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.UNAVAILABLE
                info, _ = status_details(err)
                assert info is not None and info.reason == "SHUTTING_DOWN"
        code = await loop.run_in_executor(None, process.wait, 30)
        assert code == 0
        assert loop.time() - started < 10.0 + 5.0  # SHUTDOWN_GRACE (10 s) plus process teardown
    finally:
        if process.poll() is None:
            process.kill()
