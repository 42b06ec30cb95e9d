"""The protobuf contracts as generated into gen/: services, streaming kinds, resource shapes, freshness."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest
from google.api import field_behavior_pb2
from google.protobuf import descriptor
from labmesh.device.v1 import device_pb2, device_pb2_grpc
from labmesh.sample.v1 import sample_pb2, sample_pb2_grpc
from labmesh.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent

UNARY, CLIENT_STREAM, SERVER_STREAM, BIDI = "unary", "client-stream", "server-stream", "bidi"

# service full name -> {rpc: (streaming kind, request type, response type)}
CONTRACTS: dict[str, dict[str, tuple[str, str, str]]] = {
    "labmesh.scheduler.v1.SchedulerService": {
        "CreateAlarm": (UNARY, "CreateAlarmRequest", "Alarm"),
        "BatchCreateAlarms": (UNARY, "BatchCreateAlarmsRequest", "BatchCreateAlarmsResponse"),
        "ImportAlarms": (CLIENT_STREAM, "ImportAlarmsRequest", "ImportAlarmsResponse"),
        "GetAlarm": (UNARY, "GetAlarmRequest", "Alarm"),
        "ListAlarms": (UNARY, "ListAlarmsRequest", "ListAlarmsResponse"),
        "UpdateAlarm": (UNARY, "UpdateAlarmRequest", "Alarm"),
        "DeleteAlarm": (UNARY, "DeleteAlarmRequest", "google.protobuf.Empty"),
        "PauseAlarm": (UNARY, "PauseAlarmRequest", "Alarm"),
        "ResumeAlarm": (UNARY, "ResumeAlarmRequest", "Alarm"),
        "SnoozeAlarm": (UNARY, "SnoozeAlarmRequest", "Alarm"),
        "PreviewSchedule": (UNARY, "PreviewScheduleRequest", "PreviewScheduleResponse"),
        "GetSchedulerStats": (UNARY, "GetSchedulerStatsRequest", "SchedulerStats"),
        "Fire": (SERVER_STREAM, "FireRequest", "FireResponse"),
        "AcknowledgeFires": (UNARY, "AcknowledgeFiresRequest", "AcknowledgeFiresResponse"),
        "ListFires": (UNARY, "ListFiresRequest", "ListFiresResponse"),
    },
    "labmesh.device.v1.DeviceService": {
        "RegisterDevice": (UNARY, "RegisterDeviceRequest", "Device"),
        "GetDevice": (UNARY, "GetDeviceRequest", "Device"),
        "ListDevices": (UNARY, "ListDevicesRequest", "ListDevicesResponse"),
        "UpdateDevice": (UNARY, "UpdateDeviceRequest", "Device"),
        "DeleteDevice": (UNARY, "DeleteDeviceRequest", "google.protobuf.Empty"),
        "Heartbeat": (BIDI, "HeartbeatRequest", "HeartbeatResponse"),
        "WatchDevices": (SERVER_STREAM, "WatchDevicesRequest", "WatchDevicesResponse"),
        "ReserveDevices": (UNARY, "ReserveDevicesRequest", "Reservation"),
        "RenewReservation": (UNARY, "RenewReservationRequest", "Reservation"),
        "ReleaseReservation": (UNARY, "ReleaseReservationRequest", "Reservation"),
        "GetReservation": (UNARY, "GetReservationRequest", "Reservation"),
        "ListReservations": (UNARY, "ListReservationsRequest", "ListReservationsResponse"),
        "RecordEvents": (CLIENT_STREAM, "RecordEventsRequest", "RecordEventsResponse"),
        "QueryEvents": (UNARY, "QueryEventsRequest", "QueryEventsResponse"),
        "AggregateEvents": (UNARY, "AggregateEventsRequest", "AggregateEventsResponse"),
    },
    "labmesh.sample.v1.SampleService": {
        "CreateSample": (UNARY, "CreateSampleRequest", "Sample"),
        "BatchCreateSamples": (UNARY, "BatchCreateSamplesRequest", "BatchCreateSamplesResponse"),
        "GetSample": (UNARY, "GetSampleRequest", "Sample"),
        "ListSamples": (UNARY, "ListSamplesRequest", "ListSamplesResponse"),
        "UpdateSample": (UNARY, "UpdateSampleRequest", "Sample"),
        "DeleteSample": (UNARY, "DeleteSampleRequest", "google.protobuf.Empty"),
        "MoveSample": (UNARY, "MoveSampleRequest", "Sample"),
        "CreateWorkflow": (UNARY, "CreateWorkflowRequest", "Workflow"),
        "GetWorkflow": (UNARY, "GetWorkflowRequest", "Workflow"),
        "ListWorkflows": (UNARY, "ListWorkflowsRequest", "ListWorkflowsResponse"),
        "CancelWorkflow": (UNARY, "CancelWorkflowRequest", "Workflow"),
        "WatchWorkflows": (SERVER_STREAM, "WatchWorkflowsRequest", "WatchWorkflowsResponse"),
        "ListTasks": (UNARY, "ListTasksRequest", "ListTasksResponse"),
        "StartTask": (UNARY, "StartTaskRequest", "Task"),
        "CompleteTask": (UNARY, "CompleteTaskRequest", "Task"),
    },
}

MODULES = {
    "labmesh.scheduler.v1.SchedulerService": (scheduler_pb2, scheduler_pb2_grpc),
    "labmesh.device.v1.DeviceService": (device_pb2, device_pb2_grpc),
    "labmesh.sample.v1.SampleService": (sample_pb2, sample_pb2_grpc),
}

F = descriptor.FieldDescriptor
TIMESTAMP, DURATION, STRUCT = "google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.Struct"

# resource message -> {field: type} (scalar kind or message/enum full name; "map" for map fields)
RESOURCES: dict[descriptor.Descriptor, dict[str, object]] = {
    scheduler_pb2.Alarm.DESCRIPTOR: {
        "name": F.TYPE_STRING, "display_name": F.TYPE_STRING, "owner_email": F.TYPE_STRING,
        "target": F.TYPE_STRING, "labels": "map", "payload": STRUCT, "schedule": "labmesh.scheduler.v1.Schedule",
        "start_time": TIMESTAMP, "end_time": TIMESTAMP, "max_fires": F.TYPE_INT64,
        "misfire_policy": "labmesh.scheduler.v1.MisfirePolicy", "dst_policy": "labmesh.scheduler.v1.DstPolicy",
        "jitter": DURATION, "notify_owner": F.TYPE_BOOL, "state": "labmesh.scheduler.v1.Alarm.State",
        "next_fire_time": TIMESTAMP, "last_fire_time": TIMESTAMP, "fire_count": F.TYPE_INT64,
        "create_time": TIMESTAMP, "update_time": TIMESTAMP, "etag": F.TYPE_STRING,
    },
    device_pb2.Device.DESCRIPTOR: {
        "name": F.TYPE_STRING, "display_name": F.TYPE_STRING, "kind": F.TYPE_STRING, "capabilities": F.TYPE_STRING,
        "location": F.TYPE_STRING, "labels": "map", "attributes": STRUCT,
        "status": "labmesh.device.v1.Device.Status", "status_message": F.TYPE_STRING,
        "last_heartbeat_time": TIMESTAMP, "clock_skew": DURATION, "reservation": F.TYPE_STRING,
        "create_time": TIMESTAMP, "update_time": TIMESTAMP, "etag": F.TYPE_STRING,
    },
    device_pb2.Reservation.DESCRIPTOR: {
        "name": F.TYPE_STRING, "holder": F.TYPE_STRING, "devices": F.TYPE_STRING, "fencing_token": F.TYPE_INT64,
        "expire_time": TIMESTAMP, "priority": F.TYPE_INT32, "state": "labmesh.device.v1.Reservation.State",
    },
    sample_pb2.Sample.DESCRIPTOR: {
        "name": F.TYPE_STRING, "display_name": F.TYPE_STRING, "barcode": F.TYPE_STRING, "labels": "map",
        "metadata": STRUCT, "position": "labmesh.sample.v1.SamplePosition",
        "state": "labmesh.sample.v1.Sample.State", "workflow": F.TYPE_STRING,
        "moves": "labmesh.sample.v1.SampleMove", "etag": F.TYPE_STRING,
    },
    sample_pb2.Workflow.DESCRIPTOR: {
        "name": F.TYPE_STRING, "display_name": F.TYPE_STRING, "samples": F.TYPE_STRING, "priority": F.TYPE_INT32,
        "tasks": "labmesh.sample.v1.Task", "state": "labmesh.sample.v1.Workflow.State", "etag": F.TYPE_STRING,
    },
    sample_pb2.Task.DESCRIPTOR: {
        "task_id": F.TYPE_STRING, "kind": F.TYPE_STRING,
        "requirements": "labmesh.device.v1.DeviceRequirement", "parameters": STRUCT,
        "depends_on": F.TYPE_STRING, "delay_after": DURATION, "timeout": DURATION, "max_attempts": F.TYPE_INT32,
        "status": "labmesh.sample.v1.Task.Status", "waiting_reason": "labmesh.sample.v1.Task.WaitingReason",
        "attempts": F.TYPE_INT32, "devices": F.TYPE_STRING, "reservation": F.TYPE_STRING,
        "fencing_token": F.TYPE_INT64, "result": STRUCT, "transitions": "labmesh.sample.v1.TaskTransition",
    },
}

PATTERNS = {
    scheduler_pb2.Alarm.DESCRIPTOR: "alarms/",
    device_pb2.Device.DESCRIPTOR: "devices/",
    device_pb2.Reservation.DESCRIPTOR: "reservations/",
    sample_pb2.Sample.DESCRIPTOR: "samples/",
    sample_pb2.Workflow.DESCRIPTOR: "workflows/",
}
SETTABLE_STATE = {sample_pb2.Sample.DESCRIPTOR: {"state"}, device_pb2.Device.DESCRIPTOR: {"status"}}


def _kind(method: descriptor.MethodDescriptor) -> str:
    return {(False, False): UNARY, (True, False): CLIENT_STREAM, (False, True): SERVER_STREAM,
            (True, True): BIDI}[(method.client_streaming, method.server_streaming)]


def _qualified(package: str, type_name: str) -> str:
    return type_name if "." in type_name else f"{package}.{type_name}"


def _type_of(field: descriptor.FieldDescriptor) -> object:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return "map"
    if field.message_type is not None:
        return field.message_type.full_name
    if field.enum_type is not None:
        return field.enum_type.full_name
    return field.type


def _behaviors(field: descriptor.FieldDescriptor) -> set[int]:
    return set(field.GetOptions().Extensions[field_behavior_pb2.field_behavior])


@pytest.mark.parametrize("service_name", sorted(CONTRACTS))
def test_service_has_exactly_the_listed_rpcs(service_name: str) -> None:
    pb2, pb2_grpc = MODULES[service_name]
    package, _, short = service_name.rpartition(".")
    service = pb2.DESCRIPTOR.services_by_name[short]
    expected = CONTRACTS[service_name]
    assert set(service.methods_by_name) == set(expected)
    for name, (kind, request, response) in expected.items():
        method = service.methods_by_name[name]
        assert _kind(method) == kind, name
        assert method.input_type.full_name == _qualified(package, request), name
        assert method.output_type.full_name == _qualified(package, response), name
    # The generated gRPC module has a stub and a servicer base with every method (channels connect lazily).
    servicer_class = getattr(pb2_grpc, f"{short}Servicer")
    assert all(hasattr(servicer_class, name) for name in expected)
    assert callable(getattr(pb2_grpc, f"add_{short}Servicer_to_server"))
    with grpc.insecure_channel("localhost:1") as channel:
        stub = getattr(pb2_grpc, f"{short}Stub")(channel)
        assert all(callable(getattr(stub, name)) for name in expected)


@pytest.mark.parametrize("message", list(RESOURCES), ids=lambda d: d.full_name)
def test_resource_fields(message: descriptor.Descriptor) -> None:
    fields = message.fields_by_name
    for name, expected in RESOURCES[message].items():
        assert name in fields, f"{message.full_name}.{name} missing"
        assert _type_of(fields[name]) == expected, f"{message.full_name}.{name}"
    # Resource conventions (AIP-122/148/203): IDENTIFIER name, server-set fields OUTPUT_ONLY.
    behaviors = {name: _behaviors(field) for name, field in fields.items()}
    if message in PATTERNS:
        assert field_behavior_pb2.IDENTIFIER in behaviors["name"]
    # Callers may set Sample.state (CONSUMED / DISCARDED) and Device.status (MAINTENANCE); other states are
    # server-owned.
    server_set = {"create_time", "update_time", "fencing_token", "attempts", "status", "state"}
    server_set -= SETTABLE_STATE.get(message, set())
    for name in server_set & set(fields):
        assert field_behavior_pb2.OUTPUT_ONLY in behaviors[name], f"{message.full_name}.{name}"


def test_alarm_schedule_and_policies() -> None:
    schedule = scheduler_pb2.Schedule.DESCRIPTOR
    assert [f.name for f in schedule.oneofs_by_name["kind"].fields] == ["at", "daily", "cron", "interval"]
    daily = scheduler_pb2.DailySchedule.DESCRIPTOR.fields_by_name
    assert daily["time_of_day"].message_type.full_name == "google.type.TimeOfDay"
    assert daily["days_of_week"].enum_type.full_name == "google.type.DayOfWeek"
    assert field_behavior_pb2.REQUIRED in _behaviors(scheduler_pb2.Alarm.DESCRIPTOR.fields_by_name["schedule"])
    enums = {
        "CatchUp": ["CATCH_UP_UNSPECIFIED", "CATCH_UP_SKIP", "CATCH_UP_LATEST", "CATCH_UP_ALL"],
        "GapPolicy": ["GAP_POLICY_UNSPECIFIED", "GAP_POLICY_SHIFT_FORWARD", "GAP_POLICY_SKIP"],
        "ResumePolicy": ["RESUME_POLICY_UNSPECIFIED", "RESUME_POLICY_SKIP_MISSED", "RESUME_POLICY_CATCH_UP"],
        "FireOutcome": ["FIRE_OUTCOME_UNSPECIFIED", "FIRE_OUTCOME_ON_TIME", "FIRE_OUTCOME_LATE",
                        "FIRE_OUTCOME_MISSED", "FIRE_OUTCOME_SKIPPED"],
        "DeliveryState": ["DELIVERY_STATE_UNSPECIFIED", "DELIVERY_STATE_PENDING", "DELIVERY_STATE_DELIVERED",
                          "DELIVERY_STATE_ACKNOWLEDGED", "DELIVERY_STATE_REDELIVERED",
                          "DELIVERY_STATE_DEAD_LETTERED", "DELIVERY_STATE_MISSED"],
    }
    for name, values in enums.items():
        enum = scheduler_pb2.DESCRIPTOR.enum_types_by_name[name]
        assert [v.name for v in enum.values] == values
        assert [v.number for v in enum.values] == list(range(len(values)))
    assert [v.name for v in scheduler_pb2.Alarm.State.DESCRIPTOR.values] == [
        "STATE_UNSPECIFIED", "STATE_ACTIVE", "STATE_PAUSED", "STATE_COMPLETED"]


def test_resource_names_are_documented_patterns() -> None:
    # The name fields are plain strings; the pattern lives in the contract text, checked against the source.
    for message, prefix in PATTERNS.items():
        source = (ROOT / "proto" / message.file.name).read_text()
        assert f'"{prefix}{{' in source, f"{message.full_name}: pattern {prefix}{{...}} not documented"


def test_messages_round_trip() -> None:
    alarm = scheduler_pb2.Alarm(name="alarms/feed-7", labels={"room": "3"})
    alarm.schedule.daily.time_of_day.hours = 7
    alarm.misfire_policy.catch_up = scheduler_pb2.CATCH_UP_ALL
    assert scheduler_pb2.Alarm.FromString(alarm.SerializeToString()) == alarm
    task = sample_pb2.Task(task_id="read", requirements=[device_pb2.DeviceRequirement(kind="plate-reader", count=1)])
    workflow = sample_pb2.Workflow(name="workflows/elisa-42", tasks=[task])
    assert sample_pb2.Workflow.FromString(workflow.SerializeToString()).tasks[0].requirements[0].kind == "plate-reader"
    event = device_pb2.DeviceEvent(device="devices/incubator-7", type="door_open")
    assert not event.HasField("value")  # proto3 optional: "no reading" differs from 0.0


def test_generated_code_is_fresh() -> None:
    result = subprocess.run([str(ROOT / "scripts" / "check_gen")], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _buf() -> str | None:
    return os.environ.get("BUF") or shutil.which("buf")


@pytest.mark.parametrize("args", [["lint"], ["format", "--diff", "--exit-code"]], ids=["lint", "format"])
def test_buf(args: list[str]) -> None:
    # buf lint (STANDARD + COMMENTS: every element documented) and buf format; skipped where buf
    # is not on PATH (or in $BUF).
    buf = _buf()
    if buf is None:
        pytest.skip("buf is not installed")
    result = subprocess.run([buf, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
