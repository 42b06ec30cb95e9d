"""What the client commands share: connection options, error reporting, time and table formatting."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import grpc
import grpc.aio
from google.protobuf import timestamp_pb2

import labmesh_client
from servicekit.errors import status_details

DEFAULT_ADDRESS = "127.0.0.1:50051"


class UsageError(Exception):
    """A command line the command cannot run (exit code 2)."""


def client_options() -> argparse.ArgumentParser:
    """A parent parser with the options of every command that talks to a running server."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")
    group.add_argument(
        "--address", default=os.environ.get("LABMESH_ADDRESS") or DEFAULT_ADDRESS, metavar="HOST:PORT",
        help="server or gateway to talk to (default: $LABMESH_ADDRESS or %(default)s)",
    )
    group.add_argument(
        "--lab", default=os.environ.get("LABMESH_LAB") or None,
        help="act in this lab: sent as labmesh-lab metadata (default: $LABMESH_LAB, else the server's default lab)",
    )
    group.add_argument(
        "--api-key", default=os.environ.get("LABMESH_API_KEY") or None,
        help="sent as 'authorization: Bearer KEY' (default: $LABMESH_API_KEY)",
    )
    group.add_argument("--tls", action="store_true", help="connect with TLS (system CA roots unless --ca-file)")
    group.add_argument("--ca-file", type=Path, metavar="PEM", help="CA certificate(s) to trust; implies --tls")
    group.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS", help="deadline of each call (default: %(default)s)"
    )
    return parent


def connect(args: argparse.Namespace) -> labmesh_client.Client:
    root = args.ca_file.read_bytes() if args.ca_file is not None else None
    return labmesh_client.connect(
        args.address, tls=args.tls, root_certificates=root, api_key=args.api_key, lab=args.lab
    )


def print_rpc_error(err: grpc.aio.AioRpcError | grpc.RpcError, out: TextIO | None = None) -> None:
    """``error: CODE: message`` plus the ErrorInfo reason and every BadRequest field violation, to stderr."""
    out = out or sys.stderr
    code = err.code() if callable(getattr(err, "code", None)) else None
    details = err.details() if callable(getattr(err, "details", None)) else str(err)
    name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    info, bad_request = status_details(err)
    reason = f" [{info.reason}]" if info is not None and info.reason and info.reason != name else ""
    print(f"error: {name}: {details}{reason}", file=out)
    if bad_request is not None:
        for violation in bad_request.field_violations:
            print(f"  {violation.field}: {violation.description}", file=out)
    if name == "UNAVAILABLE" and info is None:
        print("  (is the server running? start one with `labmesh up`)", file=out)


def parse_time(text: str, tz: str | None = None, *, field: str = "--at") -> timestamp_pb2.Timestamp:
    """An RFC 3339 instant (``2025-03-01T07:00:00Z``, ``...+01:00``); without an offset it is read in ``tz``."""
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{field}: {text!r} is not an RFC 3339 time such as 2025-03-01T07:00:00Z") from None
    if value.tzinfo is None:
        if not tz:
            raise UsageError(f"{field}: {text!r} has no UTC offset: add Z or +01:00, or give a time zone")
        from zoneinfo import ZoneInfo

        try:
            value = value.replace(tzinfo=ZoneInfo(tz))
        except (KeyError, ValueError, OSError):
            raise UsageError(f"time zone {tz!r} is not an IANA name such as Europe/Berlin") from None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value.astimezone(dt.UTC))
    return stamp


def format_time(stamp: timestamp_pb2.Timestamp | None, *, relative: bool = False) -> str:
    """``2025-03-01T07:00:00Z`` (seconds precision, UTC), ``-`` when unset."""
    if stamp is None or (stamp.seconds == 0 and stamp.nanos == 0):
        return "-"
    when = dt.datetime.fromtimestamp(stamp.seconds, dt.UTC)
    text = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    if relative:
        delta = stamp.seconds + stamp.nanos / 1e9 - dt.datetime.now(dt.UTC).timestamp()
        text += f" ({'in ' if delta >= 0 else ''}{format_span(abs(delta))}{'' if delta >= 0 else ' ago'})"
    return text


def format_span(seconds: float) -> str:
    """``0.012s``, ``42s``, ``3m12s``, ``5h03m``, ``2d04h``."""
    if seconds < 10:
        return f"{seconds:.3f}s"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def print_table(header: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO | None = None) -> None:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    out = out or sys.stdout
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        line = "  ".join(cell.ljust(widths[i]) if i < len(row) - 1 else cell for i, cell in enumerate(row))
        print(line.rstrip(), file=out)
