"""The ``labmesh`` command: run the mesh (``up``, ``serve``, ``migrate``) and talk to it (``alarm``, ``subscribe``).

Exit codes: 0 success, 1 the server answered with an error (code, message and field violations on stderr),
2 a usage or configuration error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import sys
from collections.abc import Sequence

import grpc

from labmesh_cli import alarm, serve, subscribe
from labmesh_cli.common import UsageError, client_options, print_rpc_error

__all__ = ["build_parser", "main"]

_EPILOG = """\
examples:
  labmesh up
  labmesh alarm create --name feed-7 --target devices/incubator-7 --daily 07:30 --tz Europe/Berlin
  labmesh alarm list
  labmesh subscribe --target devices/incubator-7
  labmesh serve scheduler --address 0.0.0.0:50051

Run `labmesh COMMAND --help` for the options of each command. Settings come from the environment
(docs/configuration.md); client commands use $LABMESH_ADDRESS, $LABMESH_LAB and $LABMESH_API_KEY.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labmesh", description="labmesh: durable alarms, devices and samples for automated laboratories.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more (client commands: INFO)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve.add_parsers(commands)
    client = client_options()
    alarm.add_parser(commands, client)
    subscribe.add_parser(commands, client)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in ("up", "serve"):
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                            format="%(levelname)s %(name)s: %(message)s")
    prog = f"labmesh {args.command}" + (f" {args.alarm_command}" if args.command == "alarm" else "")
    try:
        result = args.func(args)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        print_rpc_error(exc)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from servicekit.config import ConfigError

        if isinstance(exc, ConfigError):
            print(f"{prog}: configuration error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
