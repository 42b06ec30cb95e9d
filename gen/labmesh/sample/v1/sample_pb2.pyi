import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from labmesh.device.v1 import device_pb2 as _device_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChangeType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_TYPE_UNSPECIFIED: _ClassVar[ChangeType]
    CHANGE_TYPE_EXISTING: _ClassVar[ChangeType]
    CHANGE_TYPE_CREATED: _ClassVar[ChangeType]
    CHANGE_TYPE_UPDATED: _ClassVar[ChangeType]
CHANGE_TYPE_UNSPECIFIED: ChangeType
CHANGE_TYPE_EXISTING: ChangeType
CHANGE_TYPE_CREATED: ChangeType
CHANGE_TYPE_UPDATED: ChangeType

class Sample(_message.Message):
    __slots__ = ("name", "display_name", "barcode", "labels", "metadata", "position", "state", "workflow", "moves", "create_time", "update_time", "etag")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Sample.State]
        STATE_AVAILABLE: _ClassVar[Sample.State]
        STATE_IN_WORKFLOW: _ClassVar[Sample.State]
        STATE_CONSUMED: _ClassVar[Sample.State]
        STATE_DISCARDED: _ClassVar[Sample.State]
    STATE_UNSPECIFIED: Sample.State
    STATE_AVAILABLE: Sample.State
    STATE_IN_WORKFLOW: Sample.State
    STATE_CONSUMED: Sample.State
    STATE_DISCARDED: Sample.State
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    BARCODE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    MOVES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    barcode: str
    labels: _containers.ScalarMap[str, str]
    metadata: _struct_pb2.Struct
    position: SamplePosition
    state: Sample.State
    workflow: str
    moves: _containers.RepeatedCompositeFieldContainer[SampleMove]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., barcode: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., position: _Optional[_Union[SamplePosition, _Mapping]] = ..., state: _Optional[_Union[Sample.State, str]] = ..., workflow: _Optional[str] = ..., moves: _Optional[_Iterable[_Union[SampleMove, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class SamplePosition(_message.Message):
    __slots__ = ("device", "slot")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    device: str
    slot: str
    def __init__(self, device: _Optional[str] = ..., slot: _Optional[str] = ...) -> None: ...

class SampleMove(_message.Message):
    __slots__ = ("source", "destination", "move_time", "reason", "task")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    MOVE_TIME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    source: SamplePosition
    destination: SamplePosition
    move_time: _timestamp_pb2.Timestamp
    reason: str
    task: str
    def __init__(self, source: _Optional[_Union[SamplePosition, _Mapping]] = ..., destination: _Optional[_Union[SamplePosition, _Mapping]] = ..., move_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., task: _Optional[str] = ...) -> None: ...

class Workflow(_message.Message):
    __slots__ = ("name", "display_name", "samples", "priority", "tasks", "labels", "state", "state_message", "create_time", "update_time", "end_time", "etag")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Workflow.State]
        STATE_RUNNING: _ClassVar[Workflow.State]
        STATE_SUCCEEDED: _ClassVar[Workflow.State]
        STATE_FAILED: _ClassVar[Workflow.State]
        STATE_CANCELLED: _ClassVar[Workflow.State]
    STATE_UNSPECIFIED: Workflow.State
    STATE_RUNNING: Workflow.State
    STATE_SUCCEEDED: Workflow.State
    STATE_FAILED: Workflow.State
    STATE_CANCELLED: Workflow.State
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    samples: _containers.RepeatedScalarFieldContainer[str]
    priority: int
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    labels: _containers.ScalarMap[str, str]
    state: Workflow.State
    state_message: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    etag: str
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., samples: _Optional[_Iterable[str]] = ..., priority: _Optional[int] = ..., tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., labels: _Optional[_Mapping[str, str]] = ..., state: _Optional[_Union[Workflow.State, str]] = ..., state_message: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("name", "task_id", "kind", "requirements", "parameters", "depends_on", "delay_after", "timeout", "max_attempts", "status", "waiting_reason", "status_message", "eligible_time", "attempts", "devices", "reservation", "fencing_token", "executor", "result", "error", "transitions")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[Task.Status]
        STATUS_PENDING: _ClassVar[Task.Status]
        STATUS_WAITING: _ClassVar[Task.Status]
        STATUS_RESERVING: _ClassVar[Task.Status]
        STATUS_DISPATCHED: _ClassVar[Task.Status]
        STATUS_RUNNING: _ClassVar[Task.Status]
        STATUS_SUCCEEDED: _ClassVar[Task.Status]
        STATUS_FAILED: _ClassVar[Task.Status]
        STATUS_CANCELLED: _ClassVar[Task.Status]
    STATUS_UNSPECIFIED: Task.Status
    STATUS_PENDING: Task.Status
    STATUS_WAITING: Task.Status
    STATUS_RESERVING: Task.Status
    STATUS_DISPATCHED: Task.Status
    STATUS_RUNNING: Task.Status
    STATUS_SUCCEEDED: Task.Status
    STATUS_FAILED: Task.Status
    STATUS_CANCELLED: Task.Status
    class WaitingReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        WAITING_REASON_UNSPECIFIED: _ClassVar[Task.WaitingReason]
        WAITING_REASON_DELAY: _ClassVar[Task.WaitingReason]
        WAITING_REASON_RETRY_BACKOFF: _ClassVar[Task.WaitingReason]
        WAITING_REASON_NO_DEVICE: _ClassVar[Task.WaitingReason]
    WAITING_REASON_UNSPECIFIED: Task.WaitingReason
    WAITING_REASON_DELAY: Task.WaitingReason
    WAITING_REASON_RETRY_BACKOFF: Task.WaitingReason
    WAITING_REASON_NO_DEVICE: Task.WaitingReason
    NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REQUIREMENTS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    DELAY_AFTER_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    WAITING_REASON_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_TIME_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    task_id: str
    kind: str
    requirements: _containers.RepeatedCompositeFieldContainer[_device_pb2.DeviceRequirement]
    parameters: _struct_pb2.Struct
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    delay_after: _duration_pb2.Duration
    timeout: _duration_pb2.Duration
    max_attempts: int
    status: Task.Status
    waiting_reason: Task.WaitingReason
    status_message: str
    eligible_time: _timestamp_pb2.Timestamp
    attempts: int
    devices: _containers.RepeatedScalarFieldContainer[str]
    reservation: str
    fencing_token: int
    executor: str
    result: _struct_pb2.Struct
    error: _status_pb2.Status
    transitions: _containers.RepeatedCompositeFieldContainer[TaskTransition]
    def __init__(self, name: _Optional[str] = ..., task_id: _Optional[str] = ..., kind: _Optional[str] = ..., requirements: _Optional[_Iterable[_Union[_device_pb2.DeviceRequirement, _Mapping]]] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., depends_on: _Optional[_Iterable[str]] = ..., delay_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_attempts: _Optional[int] = ..., status: _Optional[_Union[Task.Status, str]] = ..., waiting_reason: _Optional[_Union[Task.WaitingReason, str]] = ..., status_message: _Optional[str] = ..., eligible_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempts: _Optional[int] = ..., devices: _Optional[_Iterable[str]] = ..., reservation: _Optional[str] = ..., fencing_token: _Optional[int] = ..., executor: _Optional[str] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., transitions: _Optional[_Iterable[_Union[TaskTransition, _Mapping]]] = ...) -> None: ...

class TaskTransition(_message.Message):
    __slots__ = ("status", "time", "attempt", "message")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    status: Task.Status
    time: _timestamp_pb2.Timestamp
    attempt: int
    message: str
    def __init__(self, status: _Optional[_Union[Task.Status, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempt: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class CreateSampleRequest(_message.Message):
    __slots__ = ("sample", "sample_id", "request_id")
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    sample: Sample
    sample_id: str
    request_id: str
    def __init__(self, sample: _Optional[_Union[Sample, _Mapping]] = ..., sample_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class BatchCreateSamplesRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[CreateSampleRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[CreateSampleRequest, _Mapping]]] = ...) -> None: ...

class BatchCreateSamplesResponse(_message.Message):
    __slots__ = ("samples",)
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    samples: _containers.RepeatedCompositeFieldContainer[Sample]
    def __init__(self, samples: _Optional[_Iterable[_Union[Sample, _Mapping]]] = ...) -> None: ...

class GetSampleRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListSamplesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "filter", "order_by")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    filter: str
    order_by: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListSamplesResponse(_message.Message):
    __slots__ = ("samples", "next_page_token", "total_size")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    samples: _containers.RepeatedCompositeFieldContainer[Sample]
    next_page_token: str
    total_size: int
    def __init__(self, samples: _Optional[_Iterable[_Union[Sample, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class UpdateSampleRequest(_message.Message):
    __slots__ = ("sample", "update_mask")
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    sample: Sample
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, sample: _Optional[_Union[Sample, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteSampleRequest(_message.Message):
    __slots__ = ("name", "etag", "allow_missing")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    ALLOW_MISSING_FIELD_NUMBER: _ClassVar[int]
    name: str
    etag: str
    allow_missing: bool
    def __init__(self, name: _Optional[str] = ..., etag: _Optional[str] = ..., allow_missing: _Optional[bool] = ...) -> None: ...

class MoveSampleRequest(_message.Message):
    __slots__ = ("name", "destination", "reason", "task", "fencing_token", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    destination: SamplePosition
    reason: str
    task: str
    fencing_token: int
    etag: str
    def __init__(self, name: _Optional[str] = ..., destination: _Optional[_Union[SamplePosition, _Mapping]] = ..., reason: _Optional[str] = ..., task: _Optional[str] = ..., fencing_token: _Optional[int] = ..., etag: _Optional[str] = ...) -> None: ...

class CreateWorkflowRequest(_message.Message):
    __slots__ = ("workflow", "workflow_id", "request_id", "validate_only")
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    workflow: Workflow
    workflow_id: str
    request_id: str
    validate_only: bool
    def __init__(self, workflow: _Optional[_Union[Workflow, _Mapping]] = ..., workflow_id: _Optional[str] = ..., request_id: _Optional[str] = ..., validate_only: _Optional[bool] = ...) -> None: ...

class GetWorkflowRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListWorkflowsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "filter", "order_by")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    filter: str
    order_by: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListWorkflowsResponse(_message.Message):
    __slots__ = ("workflows", "next_page_token", "total_size")
    WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    workflows: _containers.RepeatedCompositeFieldContainer[Workflow]
    next_page_token: str
    total_size: int
    def __init__(self, workflows: _Optional[_Iterable[_Union[Workflow, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class CancelWorkflowRequest(_message.Message):
    __slots__ = ("name", "reason", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    etag: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class WatchWorkflowsRequest(_message.Message):
    __slots__ = ("filter", "cursor")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    filter: str
    cursor: str
    def __init__(self, filter: _Optional[str] = ..., cursor: _Optional[str] = ...) -> None: ...

class WatchWorkflowsResponse(_message.Message):
    __slots__ = ("changes",)
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[WorkflowChange]
    def __init__(self, changes: _Optional[_Iterable[_Union[WorkflowChange, _Mapping]]] = ...) -> None: ...

class WorkflowChange(_message.Message):
    __slots__ = ("type", "workflow", "changed_tasks", "change_time", "cursor")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    CHANGED_TASKS_FIELD_NUMBER: _ClassVar[int]
    CHANGE_TIME_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    type: ChangeType
    workflow: Workflow
    changed_tasks: _containers.RepeatedScalarFieldContainer[str]
    change_time: _timestamp_pb2.Timestamp
    cursor: str
    def __init__(self, type: _Optional[_Union[ChangeType, str]] = ..., workflow: _Optional[_Union[Workflow, _Mapping]] = ..., changed_tasks: _Optional[_Iterable[str]] = ..., change_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cursor: _Optional[str] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token", "filter", "order_by")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    filter: str
    order_by: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks", "next_page_token")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    next_page_token: str
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StartTaskRequest(_message.Message):
    __slots__ = ("name", "fencing_token", "executor")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    name: str
    fencing_token: int
    executor: str
    def __init__(self, name: _Optional[str] = ..., fencing_token: _Optional[int] = ..., executor: _Optional[str] = ...) -> None: ...

class CompleteTaskRequest(_message.Message):
    __slots__ = ("name", "fencing_token", "result", "error", "permanent")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PERMANENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    fencing_token: int
    result: _struct_pb2.Struct
    error: _status_pb2.Status
    permanent: bool
    def __init__(self, name: _Optional[str] = ..., fencing_token: _Optional[int] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., permanent: _Optional[bool] = ...) -> None: ...
