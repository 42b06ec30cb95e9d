"""``labmesh alarm import FILE``: stream alarms from CSV or JSON lines through ImportAlarms, in chunks."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from google.protobuf import json_format
from labmesh.scheduler.v1 import scheduler_pb2 as pb

from labmesh_cli.common import UsageError, connect
from labmesh_cli.spec import COLUMNS, alarm_from_spec, normalize_column

__all__ = ["read_alarms", "run_import"]


class RowError(UsageError):
    """A row of the input file that does not describe an alarm (reported with its line number)."""


def _open(path: str) -> IO[str]:
    if path == "-":
        return sys.stdin
    try:
        return open(path, encoding="utf-8-sig", newline="")  # closed by the caller
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def _detect(path: str, stream: IO[str], requested: str) -> tuple[str, Iterator[str]]:
    """The format (``csv``/``jsonl``) and the lines (with the peeked first line put back)."""
    lines = iter(stream)
    if requested != "auto":
        return requested, lines
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv", lines
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl", lines
    first = next(lines, "")
    fmt = "jsonl" if first.lstrip().startswith("{") else "csv"

    def chained() -> Iterator[str]:
        if first:
            yield first
        yield from lines

    return fmt, chained()


def read_alarms(path: str, lines: Iterator[str], fmt: str) -> Iterator[pb.Alarm]:
    """Alarms of the file, lazily; :class:`RowError` (``FILE:LINE: ...``) at the first malformed row."""
    if fmt == "csv":
        reader = csv.reader(lines)
        header = next(reader, None)
        if header is None:
            return
        columns = [normalize_column(h) for h in header]
        unknown = [h for h, c in zip(header, columns, strict=True) if c not in COLUMNS]
        if unknown:
            raise RowError(f"{path}:1: unknown column(s) {', '.join(unknown)}; known: {', '.join(COLUMNS)}")
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(columns):
                raise RowError(f"{path}:{reader.line_num}: {len(row)} cells but the header has {len(columns)}")
            try:
                yield alarm_from_spec(dict(zip(columns, row, strict=False)))
            except UsageError as exc:
                raise RowError(f"{path}:{reader.line_num}: {exc}") from None
        return
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RowError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise RowError(f"{path}:{number}: expected a JSON object")
        try:
            if "schedule" in obj:
                alarm = json_format.ParseDict(obj, pb.Alarm())
                if alarm.name and not alarm.name.startswith("alarms/"):
                    alarm.name = f"alarms/{alarm.name}"
                yield alarm
            else:
                yield alarm_from_spec(obj)
        except (UsageError, json_format.ParseError) as exc:
            raise RowError(f"{path}:{number}: {exc}") from None


def _count_rows(path: str, fmt: str) -> int | None:
    """Rows in a regular file (for the progress bar's total); ``None`` for standard input."""
    if path == "-":
        return None
    with open(path, encoding="utf-8-sig", newline="") as stream:
        if fmt == "csv":
            return max(0, sum(1 for row in csv.reader(stream) if any(c.strip() for c in row)) - 1)
        return sum(1 for line in stream if line.strip())


async def run_import(args: argparse.Namespace) -> int:
    if not 1 <= args.chunk_size <= 10_000:
        raise UsageError("--chunk-size must be 1 to 10000")
    from tqdm import tqdm

    stream = _open(args.file)
    lines: Iterator[str] = iter(())
    try:
        fmt, lines = _detect(args.file, stream, args.format)
        quiet = args.quiet or args.json or not sys.stderr.isatty()
        total = None if quiet else _count_rows(args.file, fmt)
        alarms = read_alarms(args.file, lines, fmt)
        started = time.perf_counter()
        sent = 0
        with tqdm(total=total, unit=" alarms", disable=quiet, file=sys.stderr, desc="importing") as bar:
            async with connect(args) as client:
                call = client.scheduler.ImportAlarms()
                try:
                    chunk: list[pb.Alarm] = []
                    for alarm in alarms:
                        chunk.append(alarm)
                        if len(chunk) >= args.chunk_size:
                            await call.write(pb.ImportAlarmsRequest(alarms=chunk))
                            sent += len(chunk)
                            bar.update(len(chunk))
                            chunk = []
                    if chunk:
                        await call.write(pb.ImportAlarmsRequest(alarms=chunk))
                        sent += len(chunk)
                        bar.update(len(chunk))
                    await call.done_writing()
                    bar.set_description("committing")  # the server commits the whole import in one transaction
                    response: pb.ImportAlarmsResponse = await call
                except BaseException:
                    call.cancel()  # never let a half-read file commit: the server rolls the import back
                    raise
        elapsed = time.perf_counter() - started
    finally:
        close = getattr(lines, "close", None)
        if close is not None:
            close()  # a generator over the stream: finish it before the stream goes away
        if stream is not sys.stdin:
            stream.close()
    if args.json:
        print(json_format.MessageToJson(response))
        return 0
    rate = response.imported_count / elapsed if elapsed > 0 else 0.0
    server = response.elapsed.ToNanoseconds() / 1e9
    noun = "alarm" if response.imported_count == 1 else "alarms"
    print(f"imported {response.imported_count} {noun} in {elapsed:.2f}s ({rate:,.0f} alarms/s; "
          f"server {server:.2f}s)")
    if response.imported_count != sent:
        print(f"warning: sent {sent} alarms but the server imported {response.imported_count}", file=sys.stderr)
    return 0
