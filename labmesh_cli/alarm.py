"""``labmesh alarm ...``: create, list, get, pause, resume, delete, preview and import alarms on a running server."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from google.protobuf import json_format
from labmesh.scheduler.v1 import scheduler_pb2 as pb

from labmesh_cli.common import UsageError, connect, format_span, format_time, print_table
from labmesh_cli.spec import alarm_from_spec, describe_schedule

__all__ = ["add_parser"]

_STATES = {pb.Alarm.STATE_ACTIVE: "ACTIVE", pb.Alarm.STATE_PAUSED: "PAUSED", pb.Alarm.STATE_COMPLETED: "COMPLETED"}

_CREATE_EPILOG = """\
schedules (exactly one):
  --at 2025-03-01T07:00:00Z          once, at an RFC 3339 instant (without offset: read in --tz)
  --in 1m                            once, this long from now
  --daily 07:30 [--days mon-fri]     every day (or the given days) at a local time, in --tz
  --cron '*/15 8-18 * * MON-FRI'     a 5-field (or 6 with seconds) cron expression, in --tz
  --every 5m                         a fixed interval (90, 30s, 5m, 2h, 1d), independent of time zones

examples:
  labmesh alarm create --name feed-7 --display-name 'Feed incubator 7' --target devices/incubator-7 \\
      --daily 07:30 --days mon-fri --tz Europe/Berlin --label room=3 --payload '{"volume_ul": 250}'
  labmesh alarm create --cron '*/5 * * * *' --target devices/plate-reader-2
  labmesh alarm create --in 1m --target devices/incubator-7 --display-name 'in a minute'
  labmesh alarm create --every 90s --target devices/shaker-1 --json
"""

_LIST_EPILOG = """\
The filter is an AIP-160 subset: "=" comparisons joined by AND on owner_email, target, state and labels.KEY.

examples:
  labmesh alarm list
  labmesh alarm list --filter 'target="devices/incubator-7" AND state=ACTIVE' --order-by next_fire_time
  labmesh alarm list --filter 'labels.room="3"' --json | jq '.alarms[].name'
"""

_IMPORT_EPILOG = """\
FILE is CSV with a header row, or JSON lines (one object per line; chosen by the extension .csv / .jsonl /
.ndjson, else by the content; '-' reads standard input). Columns / keys, all optional except one schedule:

  name          alarm id (feed-7) or name (alarms/feed-7); empty = generated
  display_name  owner_email  target
  at | daily (+ days) | cron | every (+ anchor)    the schedule, as for `alarm create`
  time_zone     IANA zone of daily/cron          labels   k=v;k=v (JSON: an object)
  payload       a JSON object                    max_fires  jitter  notify_owner

A JSON line with a "schedule" key is read as a whole Alarm in protobuf JSON (as `alarm list --json` prints).
The import is one transaction: if any alarm is rejected, nothing is imported.

examples:
  labmesh alarm import alarms.csv
  printf 'name,target,cron,time_zone,labels\\nfeed-7,devices/incubator-7,0 7 * * *,Europe/Berlin,room=3\\n' \\
      | labmesh alarm import - --format csv
  labmesh alarm list --json | jq -c '.alarms[]' | labmesh alarm import - --lab other-lab
"""


def add_parser(subparsers: Any, client: argparse.ArgumentParser) -> None:
    alarm = subparsers.add_parser(
        "alarm", help="create, list, inspect, pause, resume, delete and import alarms",
        description="Manage the alarms of a running labmesh (labmesh up, or a gateway).",
        epilog="examples:\n  labmesh alarm create --cron '*/5 * * * *' --target devices/plate-reader-2\n"
               "  labmesh alarm list\n  labmesh alarm pause alarms/feed-7\n  labmesh alarm import alarms.csv\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = alarm.add_subparsers(dest="alarm_command", metavar="COMMAND", required=True)

    def command(name: str, help: str, epilog: str = "") -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", epilog=epilog,
                                     parents=[client], formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--json", action="store_true", help="print protobuf JSON instead of text")
        return parser

    create = command("create", "create an alarm", _CREATE_EPILOG)
    schedule = create.add_argument_group("schedule (exactly one)")
    kinds = schedule.add_mutually_exclusive_group(required=True)
    kinds.add_argument("--at", metavar="RFC3339", help="fire once at this instant")
    kinds.add_argument("--in", dest="in_", metavar="DURATION", help="fire once, this long from now (90s, 5m, 2h)")
    kinds.add_argument("--daily", metavar="HH:MM[:SS]", help="fire at this local time of day")
    kinds.add_argument("--cron", metavar="EXPR", help="fire by this cron expression")
    kinds.add_argument("--every", metavar="DURATION", help="fire at this interval (90, 30s, 5m, 2h, 1d)")
    schedule.add_argument("--days", help="with --daily: mon,tue | mon-fri | weekdays | weekends (default: every day)")
    schedule.add_argument("--tz", help="IANA time zone of --daily/--cron/--at (default: the server's TIMEZONE)")
    _alarm_fields(create)
    create.add_argument("--request-id", help="idempotency key: retrying with it returns the alarm created first")
    create.set_defaults(func=_create)

    listing = command("list", "list alarms (all pages)", _LIST_EPILOG)
    listing.add_argument("--filter", default="", help='e.g. target="devices/incubator-7" AND state=ACTIVE')
    listing.add_argument("--order-by", default="", choices=["", "name", "next_fire_time"], help="default: name")
    listing.add_argument("--page-size", type=int, default=500, help="alarms per request (default: %(default)s)")
    listing.add_argument("--limit", type=int, default=0, help="stop after this many alarms (default: all)")
    listing.set_defaults(func=_list)

    get = command("get", "show one alarm",
                  "examples:\n  labmesh alarm get feed-7\n  labmesh alarm get alarms/feed-7 --json\n")
    get.add_argument("name", help="alarm id or name (feed-7 or alarms/feed-7)")
    get.set_defaults(func=_get)

    pause = command("pause", "pause alarms: they do not fire until resumed",
                    "examples:\n  labmesh alarm pause feed-7 feed-8\n")
    pause.add_argument("names", nargs="+", metavar="NAME", help="alarm ids or names")
    pause.set_defaults(func=_pause)

    resume = command("resume", "resume paused alarms",
                     "examples:\n  labmesh alarm resume feed-7\n  labmesh alarm resume feed-7 --policy catch-up\n")
    resume.add_argument("names", nargs="+", metavar="NAME", help="alarm ids or names")
    resume.add_argument("--policy", choices=["skip", "catch-up"], default="skip",
                        help="occurrences missed while paused: skip them (default) or apply the misfire policy")
    resume.set_defaults(func=_resume)

    delete = command("delete", "delete alarms (their fires stay in the fire log)",
                     "examples:\n  labmesh alarm delete feed-7\n  labmesh alarm delete feed-7 --allow-missing\n")
    delete.add_argument("names", nargs="+", metavar="NAME", help="alarm ids or names")
    delete.add_argument("--allow-missing", action="store_true", help="succeed if an alarm does not exist")
    delete.set_defaults(func=_delete)

    preview = command(
        "preview", "show the next occurrences of a schedule without creating anything",
        "examples:\n  labmesh alarm preview --daily 02:30 --tz Europe/Berlin --after 2025-03-28T00:00:00Z --count 4\n"
        "  labmesh alarm preview --cron '0 */6 * * *' --count 8\n",
    )
    kinds = preview.add_mutually_exclusive_group(required=True)
    kinds.add_argument("--at", metavar="RFC3339")
    kinds.add_argument("--daily", metavar="HH:MM[:SS]")
    kinds.add_argument("--cron", metavar="EXPR")
    kinds.add_argument("--every", metavar="DURATION")
    preview.add_argument("--days", help="with --daily: mon,tue | mon-fri | weekdays | weekends")
    preview.add_argument("--tz", help="IANA time zone of --daily/--cron")
    preview.add_argument("--after", metavar="RFC3339", help="occurrences strictly after this instant (default: now)")
    preview.add_argument("--count", type=int, default=10, help="how many (default: %(default)s, at most 1000)")
    preview.set_defaults(func=_preview, in_=None)

    importing = command("import", "bulk-load alarms from a CSV or JSON-lines file", _IMPORT_EPILOG)
    importing.add_argument("file", metavar="FILE", help="CSV or JSON lines; '-' = standard input")
    importing.add_argument("--format", choices=["auto", "csv", "jsonl"], default="auto", help="default: auto")
    importing.add_argument("--chunk-size", type=int, default=1000, help="alarms per message (default: %(default)s)")
    importing.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    importing.set_defaults(func=_import)


def _alarm_fields(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("alarm")
    group.add_argument("--name", help="alarm id (feed-7 -> alarms/feed-7); default: generated by the server")
    group.add_argument("--display-name", help="human-readable name, e.g. 'Feed incubator 7'")
    group.add_argument("--target", help="what the fire is for, e.g. devices/incubator-7")
    group.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="a label (repeatable)")
    group.add_argument("--payload", metavar="JSON", help='JSON object delivered with every fire, e.g. \'{"ml": 5}\'')
    group.add_argument("--owner-email", help="person responsible; filterable, mailed with --notify-owner")
    group.add_argument("--notify-owner", action="store_true", help="mail the owner on every fire")
    group.add_argument("--max-fires", type=int, help="stop after this many fires")
    group.add_argument("--jitter", metavar="DURATION", help="spread each fire by up to this much (e.g. 30s)")


def _spec(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "name": getattr(args, "name", None), "display_name": getattr(args, "display_name", None),
        "owner_email": getattr(args, "owner_email", None), "target": getattr(args, "target", None),
        "at": args.at, "in": args.in_, "daily": args.daily, "cron": args.cron, "every": args.every,
        "days": args.days, "time_zone": args.tz, "labels": getattr(args, "label", None),
        "payload": getattr(args, "payload", None), "max_fires": getattr(args, "max_fires", None),
        "jitter": getattr(args, "jitter", None), "notify_owner": getattr(args, "notify_owner", None) or None,
    }


def alarm_name(text: str) -> str:
    text = text.strip()
    return text if text.startswith("alarms/") else f"alarms/{text}"


# ------------------------------------------------------------------------------------------------- commands


async def _create(args: argparse.Namespace) -> int:
    alarm = alarm_from_spec(_spec(args))
    alarm_id = alarm.name.removeprefix("alarms/")
    alarm.ClearField("name")
    request = pb.CreateAlarmRequest(alarm=alarm, alarm_id=alarm_id, request_id=args.request_id or "")
    async with connect(args) as client:
        created = await client.scheduler.CreateAlarm(request, timeout=args.timeout)
    if args.json:
        print(json_format.MessageToJson(created))
    else:
        print(f"created {_summary(created)}")
    return 0


async def _list(args: argparse.Namespace) -> int:
    if not 1 <= args.page_size <= 1000:
        raise UsageError("--page-size must be 1 to 1000")
    alarms: list[pb.Alarm] = []
    total = 0
    token = ""
    async with connect(args) as client:
        while True:
            page = await client.scheduler.ListAlarms(
                pb.ListAlarmsRequest(page_size=args.page_size, page_token=token, filter=args.filter,
                                     order_by=args.order_by),
                timeout=args.timeout,
            )
            alarms.extend(page.alarms)
            total = max(total, page.total_size)
            token = page.next_page_token
            if not token or (args.limit and len(alarms) >= args.limit):
                break
    if args.limit:
        alarms = alarms[: args.limit]
    if args.json:
        print(json_format.MessageToJson(pb.ListAlarmsResponse(alarms=alarms, total_size=total)))
        return 0
    rows = [
        (a.name, _STATES.get(a.state, "?"), describe_schedule(a.schedule), format_time(a.next_fire_time),
         a.target or "-", a.display_name)
        for a in alarms
    ]
    print_table(("NAME", "STATE", "SCHEDULE", "NEXT FIRE (UTC)", "TARGET", "DISPLAY NAME"), rows)
    shown = f"{len(alarms)} of {total}" if total > len(alarms) else str(len(alarms))
    print(f"{shown} alarm{'s' if total != 1 else ''}", file=sys.stderr)
    return 0


async def _get(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        alarm = await client.scheduler.GetAlarm(pb.GetAlarmRequest(name=alarm_name(args.name)), timeout=args.timeout)
    if args.json:
        print(json_format.MessageToJson(alarm))
        return 0
    labels = ", ".join(f"{k}={v}" for k, v in sorted(alarm.labels.items()))
    payload = json.dumps(_ints(json_format.MessageToDict(alarm.payload))) if alarm.payload.fields else "-"
    fields = [
        ("name", alarm.name), ("display name", alarm.display_name or "-"), ("state", _STATES.get(alarm.state, "?")),
        ("schedule", describe_schedule(alarm.schedule)),
        ("next fire", format_time(alarm.next_fire_time if alarm.HasField("next_fire_time") else None, relative=True)),
        ("last fire", format_time(alarm.last_fire_time if alarm.HasField("last_fire_time") else None, relative=True)),
        ("fire count", str(alarm.fire_count)), ("target", alarm.target or "-"), ("labels", labels or "-"),
        ("payload", payload), ("owner email", alarm.owner_email or "-"),
        ("created", format_time(alarm.create_time)), ("updated", format_time(alarm.update_time)),
        ("etag", alarm.etag or "-"),
    ]
    for key, value in fields:
        print(f"{key + ':':<13} {value}")
    return 0


async def _pause(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        for name in args.names:
            alarm = await client.scheduler.PauseAlarm(pb.PauseAlarmRequest(name=alarm_name(name)), timeout=args.timeout)
            print(json_format.MessageToJson(alarm) if args.json else f"paused {_summary(alarm)}")
    return 0


async def _resume(args: argparse.Namespace) -> int:
    policy = pb.RESUME_POLICY_CATCH_UP if args.policy == "catch-up" else pb.RESUME_POLICY_SKIP_MISSED
    async with connect(args) as client:
        for name in args.names:
            alarm = await client.scheduler.ResumeAlarm(
                pb.ResumeAlarmRequest(name=alarm_name(name), policy=policy), timeout=args.timeout
            )
            print(json_format.MessageToJson(alarm) if args.json else f"resumed {_summary(alarm)}")
    return 0


async def _delete(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        for name in args.names:
            full = alarm_name(name)
            await client.scheduler.DeleteAlarm(
                pb.DeleteAlarmRequest(name=full, allow_missing=args.allow_missing), timeout=args.timeout
            )
            print(json.dumps({"name": full, "deleted": True}) if args.json else f"deleted {full}")
    return 0


async def _preview(args: argparse.Namespace) -> int:
    from labmesh_cli.common import parse_time

    alarm = alarm_from_spec(_spec(args))
    request = pb.PreviewScheduleRequest(alarm=alarm, count=args.count)
    if args.after:
        request.after.CopyFrom(parse_time(args.after, args.tz, field="--after"))
    async with connect(args) as client:
        response = await client.scheduler.PreviewSchedule(request, timeout=args.timeout)
    if args.json:
        print(json_format.MessageToJson(response))
        return 0
    rows = []
    for occurrence in response.occurrences:
        nominal = occurrence.nominal_time
        jitter = (occurrence.scheduled_time.ToNanoseconds() - nominal.ToNanoseconds()) / 1e9
        local = _local(nominal, args.tz)
        rows.append((format_time(nominal), local, format_span(jitter) if jitter else "-"))
    print_table(("NOMINAL (UTC)", f"LOCAL ({args.tz})" if args.tz else "LOCAL", "JITTER"), rows)
    return 0


async def _import(args: argparse.Namespace) -> int:
    from labmesh_cli.importing import run_import

    return await run_import(args)


# ------------------------------------------------------------------------------------------------- helpers


def _summary(alarm: pb.Alarm) -> str:
    next_fire = format_time(alarm.next_fire_time, relative=True) if alarm.HasField("next_fire_time") else "none"
    return f"{alarm.name} [{_STATES.get(alarm.state, '?')}] {describe_schedule(alarm.schedule)}; next fire {next_fire}"


def _local(stamp: Any, tz: str | None) -> str:
    import datetime as dt
    from zoneinfo import ZoneInfo

    when = dt.datetime.fromtimestamp(stamp.seconds, dt.UTC)
    if tz:
        try:
            when = when.astimezone(ZoneInfo(tz))
        except (KeyError, ValueError, OSError):
            return "-"
    return when.isoformat()


def _ints(value: Any) -> Any:
    """Struct numbers are doubles: show 96.0 as 96."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value
