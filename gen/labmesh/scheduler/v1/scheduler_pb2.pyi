import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.type import dayofweek_pb2 as _dayofweek_pb2
from google.type import timeofday_pb2 as _timeofday_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CatchUp(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CATCH_UP_UNSPECIFIED: _ClassVar[CatchUp]
    CATCH_UP_SKIP: _ClassVar[CatchUp]
    CATCH_UP_LATEST: _ClassVar[CatchUp]
    CATCH_UP_ALL: _ClassVar[CatchUp]

class GapPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GAP_POLICY_UNSPECIFIED: _ClassVar[GapPolicy]
    GAP_POLICY_SHIFT_FORWARD: _ClassVar[GapPolicy]
    GAP_POLICY_SKIP: _ClassVar[GapPolicy]

class ResumePolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESUME_POLICY_UNSPECIFIED: _ClassVar[ResumePolicy]
    RESUME_POLICY_SKIP_MISSED: _ClassVar[ResumePolicy]
    RESUME_POLICY_CATCH_UP: _ClassVar[ResumePolicy]

class FireOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FIRE_OUTCOME_UNSPECIFIED: _ClassVar[FireOutcome]
    FIRE_OUTCOME_ON_TIME: _ClassVar[FireOutcome]
    FIRE_OUTCOME_LATE: _ClassVar[FireOutcome]
    FIRE_OUTCOME_MISSED: _ClassVar[FireOutcome]
    FIRE_OUTCOME_SKIPPED: _ClassVar[FireOutcome]

class DeliveryState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DELIVERY_STATE_UNSPECIFIED: _ClassVar[DeliveryState]
    DELIVERY_STATE_PENDING: _ClassVar[DeliveryState]
    DELIVERY_STATE_DELIVERED: _ClassVar[DeliveryState]
    DELIVERY_STATE_ACKNOWLEDGED: _ClassVar[DeliveryState]
    DELIVERY_STATE_REDELIVERED: _ClassVar[DeliveryState]
    DELIVERY_STATE_DEAD_LETTERED: _ClassVar[DeliveryState]
    DELIVERY_STATE_MISSED: _ClassVar[DeliveryState]
CATCH_UP_UNSPECIFIED: CatchUp
CATCH_UP_SKIP: CatchUp
CATCH_UP_LATEST: CatchUp
CATCH_UP_ALL: CatchUp
GAP_POLICY_UNSPECIFIED: GapPolicy
GAP_POLICY_SHIFT_FORWARD: GapPolicy
GAP_POLICY_SKIP: GapPolicy
RESUME_POLICY_UNSPECIFIED: ResumePolicy
RESUME_POLICY_SKIP_MISSED: ResumePolicy
RESUME_POLICY_CATCH_UP: ResumePolicy
FIRE_OUTCOME_UNSPECIFIED: FireOutcome
FIRE_OUTCOME_ON_TIME: FireOutcome
FIRE_OUTCOME_LATE: FireOutcome
FIRE_OUTCOME_MISSED: FireOutcome
FIRE_OUTCOME_SKIPPED: FireOutcome
DELIVERY_STATE_UNSPECIFIED: DeliveryState
DELIVERY_STATE_PENDING: DeliveryState
DELIVERY_STATE_DELIVERED: DeliveryState
DELIVERY_STATE_ACKNOWLEDGED: DeliveryState
DELIVERY_STATE_REDELIVERED: DeliveryState
DELIVERY_STATE_DEAD_LETTERED: DeliveryState
DELIVERY_STATE_MISSED: DeliveryState

class Alarm(_message.Message):
    __slots__ = ("name", "display_name", "owner_email", "target", "labels", "payload", "schedule", "start_time", "end_time", "max_fires", "misfire_policy", "dst_policy", "jitter", "notify_owner", "state", "next_fire_time", "last_fire_time", "fire_count", "create_time", "update_time", "etag")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Alarm.State]
        STATE_ACTIVE: _ClassVar[Alarm.State]
        STATE_PAUSED: _ClassVar[Alarm.State]
        STATE_COMPLETED: _ClassVar[Alarm.State]
    STATE_UNSPECIFIED: Alarm.State
    STATE_ACTIVE: Alarm.State
    STATE_PAUSED: Alarm.State
    STATE_COMPLETED: Alarm.State
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_EMAIL_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    MAX_FIRES_FIELD_NUMBER: _ClassVar[int]
    MISFIRE_POLICY_FIELD_NUMBER: _ClassVar[int]
    DST_POLICY_FIELD_NUMBER: _ClassVar[int]
    JITTER_FIELD_NUMBER: _ClassVar[int]
    NOTIFY_OWNER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_FIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    FIRE_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    owner_email: str
    target: str
    labels: _containers.ScalarMap[str, str]
    payload: _struct_pb2.Struct
    schedule: Schedule
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    max_fires: int
    misfire_policy: MisfirePolicy
    dst_policy: DstPolicy
    jitter: _duration_pb2.Duration
    notify_owner: bool
    state: Alarm.State
    next_fire_time: _timestamp_pb2.Timestamp
    last_fire_time: _timestamp_pb2.Timestamp
    fire_count: int
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., owner_email: _Optional[str] = ..., target: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., schedule: _Optional[_Union[Schedule, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., max_fires: _Optional[int] = ..., misfire_policy: _Optional[_Union[MisfirePolicy, _Mapping]] = ..., dst_policy: _Optional[_Union[DstPolicy, _Mapping]] = ..., jitter: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., notify_owner: _Optional[bool] = ..., state: _Optional[_Union[Alarm.State, str]] = ..., next_fire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_fire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fire_count: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("at", "daily", "cron", "interval")
    AT_FIELD_NUMBER: _ClassVar[int]
    DAILY_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    daily: DailySchedule
    cron: CronSchedule
    interval: IntervalSchedule
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., daily: _Optional[_Union[DailySchedule, _Mapping]] = ..., cron: _Optional[_Union[CronSchedule, _Mapping]] = ..., interval: _Optional[_Union[IntervalSchedule, _Mapping]] = ...) -> None: ...

class DailySchedule(_message.Message):
    __slots__ = ("time_of_day", "days_of_week", "time_zone")
    TIME_OF_DAY_FIELD_NUMBER: _ClassVar[int]
    DAYS_OF_WEEK_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    time_of_day: _timeofday_pb2.TimeOfDay
    days_of_week: _containers.RepeatedScalarFieldContainer[_dayofweek_pb2.DayOfWeek]
    time_zone: str
    def __init__(self, time_of_day: _Optional[_Union[_timeofday_pb2.TimeOfDay, _Mapping]] = ..., days_of_week: _Optional[_Iterable[_Union[_dayofweek_pb2.DayOfWeek, str]]] = ..., time_zone: _Optional[str] = ...) -> None: ...

class CronSchedule(_message.Message):
    __slots__ = ("expression", "time_zone")
    EXPRESSION_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    expression: str
    time_zone: str
    def __init__(self, expression: _Optional[str] = ..., time_zone: _Optional[str] = ...) -> None: ...

class IntervalSchedule(_message.Message):
    __slots__ = ("every", "anchor_time")
    EVERY_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_TIME_FIELD_NUMBER: _ClassVar[int]
    every: _duration_pb2.Duration
    anchor_time: _timestamp_pb2.Timestamp
    def __init__(self, every: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., anchor_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class MisfirePolicy(_message.Message):
    __slots__ = ("grace", "catch_up", "catch_up_limit")
    GRACE_FIELD_NUMBER: _ClassVar[int]
    CATCH_UP_FIELD_NUMBER: _ClassVar[int]
    CATCH_UP_LIMIT_FIELD_NUMBER: _ClassVar[int]
    grace: _duration_pb2.Duration
    catch_up: CatchUp
    catch_up_limit: int
    def __init__(self, grace: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., catch_up: _Optional[_Union[CatchUp, str]] = ..., catch_up_limit: _Optional[int] = ...) -> None: ...

class DstPolicy(_message.Message):
    __slots__ = ("gap_policy",)
    GAP_POLICY_FIELD_NUMBER: _ClassVar[int]
    gap_policy: GapPolicy
    def __init__(self, gap_policy: _Optional[_Union[GapPolicy, str]] = ...) -> None: ...

class CreateAlarmRequest(_message.Message):
    __slots__ = ("alarm", "alarm_id", "request_id")
    ALARM_FIELD_NUMBER: _ClassVar[int]
    ALARM_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    alarm: Alarm
    alarm_id: str
    request_id: str
    def __init__(self, alarm: _Optional[_Union[Alarm, _Mapping]] = ..., alarm_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class BatchCreateAlarmsRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[CreateAlarmRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[CreateAlarmRequest, _Mapping]]] = ...) -> None: ...

class BatchCreateAlarmsResponse(_message.Message):
    __slots__ = ("alarms",)
    ALARMS_FIELD_NUMBER: _ClassVar[int]
    alarms: _containers.RepeatedCompositeFieldContainer[Alarm]
    def __init__(self, alarms: _Optional[_Iterable[_Union[Alarm, _Mapping]]] = ...) -> None: ...

class ImportAlarmsRequest(_message.Message):
    __slots__ = ("alarms",)
    ALARMS_FIELD_NUMBER: _ClassVar[int]
    alarms: _containers.RepeatedCompositeFieldContainer[Alarm]
    def __init__(self, alarms: _Optional[_Iterable[_Union[Alarm, _Mapping]]] = ...) -> None: ...

class ImportAlarmsResponse(_message.Message):
    __slots__ = ("imported_count", "elapsed")
    IMPORTED_COUNT_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_FIELD_NUMBER: _ClassVar[int]
    imported_count: int
    elapsed: _duration_pb2.Duration
    def __init__(self, imported_count: _Optional[int] = ..., elapsed: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetAlarmRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListAlarmsRequest(_message.Message):
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

class ListAlarmsResponse(_message.Message):
    __slots__ = ("alarms", "next_page_token", "total_size")
    ALARMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    alarms: _containers.RepeatedCompositeFieldContainer[Alarm]
    next_page_token: str
    total_size: int
    def __init__(self, alarms: _Optional[_Iterable[_Union[Alarm, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class UpdateAlarmRequest(_message.Message):
    __slots__ = ("alarm", "update_mask")
    ALARM_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    alarm: Alarm
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, alarm: _Optional[_Union[Alarm, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteAlarmRequest(_message.Message):
    __slots__ = ("name", "etag", "allow_missing")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    ALLOW_MISSING_FIELD_NUMBER: _ClassVar[int]
    name: str
    etag: str
    allow_missing: bool
    def __init__(self, name: _Optional[str] = ..., etag: _Optional[str] = ..., allow_missing: _Optional[bool] = ...) -> None: ...

class PauseAlarmRequest(_message.Message):
    __slots__ = ("name", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    etag: str
    def __init__(self, name: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class ResumeAlarmRequest(_message.Message):
    __slots__ = ("name", "etag", "policy")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    name: str
    etag: str
    policy: ResumePolicy
    def __init__(self, name: _Optional[str] = ..., etag: _Optional[str] = ..., policy: _Optional[_Union[ResumePolicy, str]] = ...) -> None: ...

class SnoozeAlarmRequest(_message.Message):
    __slots__ = ("name", "duration", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    duration: _duration_pb2.Duration
    etag: str
    def __init__(self, name: _Optional[str] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class PreviewScheduleRequest(_message.Message):
    __slots__ = ("alarm", "after", "count")
    ALARM_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    alarm: Alarm
    after: _timestamp_pb2.Timestamp
    count: int
    def __init__(self, alarm: _Optional[_Union[Alarm, _Mapping]] = ..., after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., count: _Optional[int] = ...) -> None: ...

class PreviewScheduleResponse(_message.Message):
    __slots__ = ("occurrences",)
    OCCURRENCES_FIELD_NUMBER: _ClassVar[int]
    occurrences: _containers.RepeatedCompositeFieldContainer[Occurrence]
    def __init__(self, occurrences: _Optional[_Iterable[_Union[Occurrence, _Mapping]]] = ...) -> None: ...

class Occurrence(_message.Message):
    __slots__ = ("nominal_time", "scheduled_time")
    NOMINAL_TIME_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_TIME_FIELD_NUMBER: _ClassVar[int]
    nominal_time: _timestamp_pb2.Timestamp
    scheduled_time: _timestamp_pb2.Timestamp
    def __init__(self, nominal_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scheduled_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetSchedulerStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SchedulerStats(_message.Message):
    __slots__ = ("instance_id", "total_alarms", "active_alarms", "paused_alarms", "completed_alarms", "shard_count", "owned_shards", "window_size", "window_capacity", "window_horizon", "fires_per_second_1m", "fires_on_time", "fires_late", "fires_missed", "fires_skipped", "lateness_p50", "lateness_p90", "lateness_p99", "lateness_max", "batch_processing_p50", "batch_processing_p99", "db_pool_size", "db_pool_in_use", "db_pool_max", "memory_rss_bytes", "subscribers", "consumer_groups", "start_time", "subscriber_stats")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ALARMS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_ALARMS_FIELD_NUMBER: _ClassVar[int]
    PAUSED_ALARMS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_ALARMS_FIELD_NUMBER: _ClassVar[int]
    SHARD_COUNT_FIELD_NUMBER: _ClassVar[int]
    OWNED_SHARDS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SIZE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    WINDOW_HORIZON_FIELD_NUMBER: _ClassVar[int]
    FIRES_PER_SECOND_1M_FIELD_NUMBER: _ClassVar[int]
    FIRES_ON_TIME_FIELD_NUMBER: _ClassVar[int]
    FIRES_LATE_FIELD_NUMBER: _ClassVar[int]
    FIRES_MISSED_FIELD_NUMBER: _ClassVar[int]
    FIRES_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    LATENESS_P50_FIELD_NUMBER: _ClassVar[int]
    LATENESS_P90_FIELD_NUMBER: _ClassVar[int]
    LATENESS_P99_FIELD_NUMBER: _ClassVar[int]
    LATENESS_MAX_FIELD_NUMBER: _ClassVar[int]
    BATCH_PROCESSING_P50_FIELD_NUMBER: _ClassVar[int]
    BATCH_PROCESSING_P99_FIELD_NUMBER: _ClassVar[int]
    DB_POOL_SIZE_FIELD_NUMBER: _ClassVar[int]
    DB_POOL_IN_USE_FIELD_NUMBER: _ClassVar[int]
    DB_POOL_MAX_FIELD_NUMBER: _ClassVar[int]
    MEMORY_RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBERS_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_GROUPS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_STATS_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    total_alarms: int
    active_alarms: int
    paused_alarms: int
    completed_alarms: int
    shard_count: int
    owned_shards: _containers.RepeatedScalarFieldContainer[int]
    window_size: int
    window_capacity: int
    window_horizon: _duration_pb2.Duration
    fires_per_second_1m: float
    fires_on_time: int
    fires_late: int
    fires_missed: int
    fires_skipped: int
    lateness_p50: _duration_pb2.Duration
    lateness_p90: _duration_pb2.Duration
    lateness_p99: _duration_pb2.Duration
    lateness_max: _duration_pb2.Duration
    batch_processing_p50: _duration_pb2.Duration
    batch_processing_p99: _duration_pb2.Duration
    db_pool_size: int
    db_pool_in_use: int
    db_pool_max: int
    memory_rss_bytes: int
    subscribers: int
    consumer_groups: int
    start_time: _timestamp_pb2.Timestamp
    subscriber_stats: _containers.RepeatedCompositeFieldContainer[SubscriberStats]
    def __init__(self, instance_id: _Optional[str] = ..., total_alarms: _Optional[int] = ..., active_alarms: _Optional[int] = ..., paused_alarms: _Optional[int] = ..., completed_alarms: _Optional[int] = ..., shard_count: _Optional[int] = ..., owned_shards: _Optional[_Iterable[int]] = ..., window_size: _Optional[int] = ..., window_capacity: _Optional[int] = ..., window_horizon: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., fires_per_second_1m: _Optional[float] = ..., fires_on_time: _Optional[int] = ..., fires_late: _Optional[int] = ..., fires_missed: _Optional[int] = ..., fires_skipped: _Optional[int] = ..., lateness_p50: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., lateness_p90: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., lateness_p99: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., lateness_max: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., batch_processing_p50: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., batch_processing_p99: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., db_pool_size: _Optional[int] = ..., db_pool_in_use: _Optional[int] = ..., db_pool_max: _Optional[int] = ..., memory_rss_bytes: _Optional[int] = ..., subscribers: _Optional[int] = ..., consumer_groups: _Optional[int] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., subscriber_stats: _Optional[_Iterable[_Union[SubscriberStats, _Mapping]]] = ...) -> None: ...

class SubscriberStats(_message.Message):
    __slots__ = ("subscriber_id", "consumer_group", "connect_time", "events_sent", "buffered", "lateness_p50", "lateness_p99")
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_GROUP_FIELD_NUMBER: _ClassVar[int]
    CONNECT_TIME_FIELD_NUMBER: _ClassVar[int]
    EVENTS_SENT_FIELD_NUMBER: _ClassVar[int]
    BUFFERED_FIELD_NUMBER: _ClassVar[int]
    LATENESS_P50_FIELD_NUMBER: _ClassVar[int]
    LATENESS_P99_FIELD_NUMBER: _ClassVar[int]
    subscriber_id: str
    consumer_group: str
    connect_time: _timestamp_pb2.Timestamp
    events_sent: int
    buffered: int
    lateness_p50: _duration_pb2.Duration
    lateness_p99: _duration_pb2.Duration
    def __init__(self, subscriber_id: _Optional[str] = ..., consumer_group: _Optional[str] = ..., connect_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., events_sent: _Optional[int] = ..., buffered: _Optional[int] = ..., lateness_p50: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., lateness_p99: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class FireRequest(_message.Message):
    __slots__ = ("filter", "consumer_group", "cursor", "max_events_per_message", "ack_deadline", "max_attempts", "subscriber_id")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_GROUP_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    MAX_EVENTS_PER_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ACK_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBER_ID_FIELD_NUMBER: _ClassVar[int]
    filter: FireFilter
    consumer_group: str
    cursor: str
    max_events_per_message: int
    ack_deadline: _duration_pb2.Duration
    max_attempts: int
    subscriber_id: str
    def __init__(self, filter: _Optional[_Union[FireFilter, _Mapping]] = ..., consumer_group: _Optional[str] = ..., cursor: _Optional[str] = ..., max_events_per_message: _Optional[int] = ..., ack_deadline: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_attempts: _Optional[int] = ..., subscriber_id: _Optional[str] = ...) -> None: ...

class FireFilter(_message.Message):
    __slots__ = ("targets", "labels", "owner_email", "alarms")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    OWNER_EMAIL_FIELD_NUMBER: _ClassVar[int]
    ALARMS_FIELD_NUMBER: _ClassVar[int]
    targets: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.ScalarMap[str, str]
    owner_email: str
    alarms: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, targets: _Optional[_Iterable[str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., owner_email: _Optional[str] = ..., alarms: _Optional[_Iterable[str]] = ...) -> None: ...

class FireResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[FireEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[FireEvent, _Mapping]]] = ...) -> None: ...

class FireEvent(_message.Message):
    __slots__ = ("fire_id", "alarm", "nominal_time", "scheduled_time", "fire_time", "attempt", "cursor", "outcome")
    FIRE_ID_FIELD_NUMBER: _ClassVar[int]
    ALARM_FIELD_NUMBER: _ClassVar[int]
    NOMINAL_TIME_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_TIME_FIELD_NUMBER: _ClassVar[int]
    FIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    fire_id: str
    alarm: AlarmSnapshot
    nominal_time: _timestamp_pb2.Timestamp
    scheduled_time: _timestamp_pb2.Timestamp
    fire_time: _timestamp_pb2.Timestamp
    attempt: int
    cursor: str
    outcome: FireOutcome
    def __init__(self, fire_id: _Optional[str] = ..., alarm: _Optional[_Union[AlarmSnapshot, _Mapping]] = ..., nominal_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scheduled_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempt: _Optional[int] = ..., cursor: _Optional[str] = ..., outcome: _Optional[_Union[FireOutcome, str]] = ...) -> None: ...

class AlarmSnapshot(_message.Message):
    __slots__ = ("name", "display_name", "owner_email", "target", "labels", "payload")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_EMAIL_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    owner_email: str
    target: str
    labels: _containers.ScalarMap[str, str]
    payload: _struct_pb2.Struct
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., owner_email: _Optional[str] = ..., target: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class AcknowledgeFiresRequest(_message.Message):
    __slots__ = ("consumer_group", "fire_ids")
    CONSUMER_GROUP_FIELD_NUMBER: _ClassVar[int]
    FIRE_IDS_FIELD_NUMBER: _ClassVar[int]
    consumer_group: str
    fire_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, consumer_group: _Optional[str] = ..., fire_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AcknowledgeFiresResponse(_message.Message):
    __slots__ = ("acknowledged_count", "unknown_fire_ids")
    ACKNOWLEDGED_COUNT_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FIRE_IDS_FIELD_NUMBER: _ClassVar[int]
    acknowledged_count: int
    unknown_fire_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, acknowledged_count: _Optional[int] = ..., unknown_fire_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListFiresRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "filter")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    filter: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class ListFiresResponse(_message.Message):
    __slots__ = ("fires", "next_page_token")
    FIRES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    fires: _containers.RepeatedCompositeFieldContainer[FireRecord]
    next_page_token: str
    def __init__(self, fires: _Optional[_Iterable[_Union[FireRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class FireRecord(_message.Message):
    __slots__ = ("fire_id", "alarm", "target", "nominal_time", "scheduled_time", "fire_time", "outcome", "reason", "consumer_group", "state", "attempts", "sent_time", "delivered_time", "acknowledged_time", "cursor")
    FIRE_ID_FIELD_NUMBER: _ClassVar[int]
    ALARM_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    NOMINAL_TIME_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_TIME_FIELD_NUMBER: _ClassVar[int]
    FIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_GROUP_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    SENT_TIME_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_TIME_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_TIME_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    fire_id: str
    alarm: str
    target: str
    nominal_time: _timestamp_pb2.Timestamp
    scheduled_time: _timestamp_pb2.Timestamp
    fire_time: _timestamp_pb2.Timestamp
    outcome: FireOutcome
    reason: str
    consumer_group: str
    state: DeliveryState
    attempts: int
    sent_time: _timestamp_pb2.Timestamp
    delivered_time: _timestamp_pb2.Timestamp
    acknowledged_time: _timestamp_pb2.Timestamp
    cursor: str
    def __init__(self, fire_id: _Optional[str] = ..., alarm: _Optional[str] = ..., target: _Optional[str] = ..., nominal_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scheduled_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., outcome: _Optional[_Union[FireOutcome, str]] = ..., reason: _Optional[str] = ..., consumer_group: _Optional[str] = ..., state: _Optional[_Union[DeliveryState, str]] = ..., attempts: _Optional[int] = ..., sent_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., delivered_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., acknowledged_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cursor: _Optional[str] = ...) -> None: ...
