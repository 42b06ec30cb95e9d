"""``labmesh subscribe``: print fires live, resuming by cursor across disconnects (via ``labmesh_client``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any

from google.protobuf import json_format

from labmesh_cli.common import UsageError, connect, format_span, format_time
from labmesh_cli.spec import parse_labels
from servicekit.config import parse_duration

__all__ = ["add_parser"]

_EPILOG = """\
One line per fire: fire time (UTC), fire id, target, display name, lateness (fire time - scheduled time).
When the connection breaks (server restart, shutdown, network) the subscription reconnects with backoff and
resumes after the last fire printed, so nothing is lost or printed twice. On exit the last cursor is printed
to stderr: pass it back with --cursor to continue where you stopped.

With --group the fires are shared by every subscriber of that consumer group (each fire goes to one of them);
add --ack to acknowledge each fire once printed, otherwise it is redelivered after the ack deadline.

examples:
  labmesh subscribe --target devices/incubator-7
  labmesh subscribe --label room=3 --json
  labmesh subscribe --target devices/incubator-7 --group feeders --ack
  labmesh subscribe --cursor 1234 --count 10
"""


def add_parser(subparsers: Any, client: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "subscribe", help="print fires live (resumes across disconnects)", parents=[client],
        description="Subscribe to fires of the lab and print them as they happen.", epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--target", action="append", default=[], help="only fires of this target (repeatable: any)")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                        help="only alarms with this label (repeatable: all)")
    parser.add_argument("--owner-email", default="", help="only alarms of this owner")
    parser.add_argument("--alarm", action="append", default=[], metavar="NAME",
                        help="only these alarms (repeatable: any)")
    parser.add_argument("--group", metavar="G", help="consumer group to join (each fire goes to one member)")
    parser.add_argument("--ack", action="store_true", help="with --group: acknowledge each fire after printing it")
    parser.add_argument("--ack-deadline", metavar="DURATION", help="with --group: redeliver unacked fires after "
                        "this long (default: 30s; set when the group is created)")
    parser.add_argument("--max-attempts", type=int, default=0, help="with --group: deliveries before dead-lettering")
    parser.add_argument("--cursor", metavar="C", help="start strictly after this cursor (replays missed fires)")
    parser.add_argument("--count", type=int, default=0, help="exit after this many fires (default: run until Ctrl-C)")
    parser.add_argument("--json", action="store_true", help="print each FireEvent as one line of protobuf JSON")
    parser.set_defaults(func=run)


def _line(event: Any) -> str:
    lateness = (event.fire_time.ToNanoseconds() - event.scheduled_time.ToNanoseconds()) / 1e9
    display = f'"{event.alarm.display_name}"' if event.alarm.display_name else "-"
    attempt = f"  attempt {event.attempt}" if event.attempt > 1 else ""
    return (f"{format_time(event.fire_time)}  {event.fire_id}  {event.alarm.target or '-'}  {display}  "
            f"late {format_span(max(lateness, 0.0))}{attempt}")


async def run(args: argparse.Namespace) -> int:
    if args.ack and not args.group:
        raise UsageError("--ack needs --group (plain subscriptions have nothing to acknowledge)")
    if args.group and args.cursor:
        print("note: --cursor only positions a consumer group that does not exist yet", file=sys.stderr)
    filter_spec = {"targets": args.target, "labels": parse_labels(args.label), "owner_email": args.owner_email,
                   "alarms": [a if a.startswith("alarms/") else f"alarms/{a}" for a in args.alarm]}
    ack_deadline = None
    if args.ack_deadline:
        try:
            ack_deadline = parse_duration(args.ack_deadline)
        except ValueError:
            raise UsageError(f"--ack-deadline: {args.ack_deadline!r} is not a duration such as 30s or 5m") from None

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    printed = 0
    async with connect(args) as client:
        stream = client.fires(filter_spec, consumer_group=args.group, cursor=args.cursor,
                              ack_deadline=ack_deadline, max_attempts=args.max_attempts,
                              subscriber_id="labmesh-subscribe")
        what = f"group {args.group}" if args.group else "fires"
        print(f"subscribed to {what} at {args.address} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        to_ack: list[str] = []
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                step = asyncio.ensure_future(anext(stream))
                await asyncio.wait((step, stopping), return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    step.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await step
                    break
                try:
                    event = step.result()
                except StopAsyncIteration:
                    break
                print(json_format.MessageToJson(event, indent=None) if args.json else _line(event), flush=True)
                printed += 1
                if args.ack:
                    to_ack.append(event.fire_id)
                    if stream.pending == 0 or len(to_ack) >= 100:
                        await client.acknowledge(args.group, to_ack)
                        to_ack = []
                if args.count and printed >= args.count:
                    break
            if to_ack:
                await client.acknowledge(args.group, to_ack)
        finally:
            stopping.cancel()
            await stream.aclose()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
    if stream.cursor and not args.group:
        print(f"{printed} fire{'s' if printed != 1 else ''}; resume with --cursor {stream.cursor}", file=sys.stderr)
    return 0
