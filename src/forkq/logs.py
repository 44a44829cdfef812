"""Logging for the worker: children write, the master tells.

    child: logging record ─► one JSON line ─┐
           print / C extension ─► raw line ─┴─► stdout+stderr pipe (one per child)
    master: selector ─► read ─► whole lines ─► relay(): a LogRecord tagged with the child's
            index, pid and running task ─► the master's handlers (stderr or --logfile,
            text or JSON)

Only the master writes to the terminal or the log file, a whole line at a time, so output
from N children never interleaves mid-line. Raw output lines (prints, C extensions,
faulthandler dumps) are logged at WARNING under the logger `forkq.output`.
"""

from __future__ import annotations

import io
import json
import logging
import os
import select
import sys
from collections.abc import Callable
from typing import Any

import msgspec

TEXT_FORMAT = "[%(asctime)s] [%(origin)s] %(levelname)s %(name)s: %(message)s"
_RECORD_MARK = '{"forkq":1,'


class Origin(msgspec.Struct, frozen=True):
    """Which process a line came from, and what it was running."""

    label: str  # "master" or "child 2"
    pid: int
    task_id: str = ""
    task_name: str = ""

    def __str__(self) -> str:
        running = f" {self.task_name}[{self.task_id}]" if self.task_id else ""
        return f"{self.label} {self.pid}{running}"


class _OriginFilter(logging.Filter):
    """Records made in the master itself get the master as their origin."""

    def __init__(self, origin: Origin) -> None:
        super().__init__()
        self.origin = origin

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "origin"):
            record.origin = self.origin
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        origin: Origin = record.origin  # type: ignore[attr-defined]
        entry: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname,
            "logger": record.name,
            "process": origin.label,
            "pid": origin.pid,
            "message": record.getMessage(),
        }
        if origin.task_id:
            entry["task_id"], entry["task"] = origin.task_id, origin.task_name
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


QUIET_DRIVERS = ("pika",)


class WholeLinesHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that writes each record whole to its stream's file descriptor.

    Why: with PYTHONUNBUFFERED=1 (as in many containers), sys.stderr writes straight to the
    descriptor and drops whatever a partial write left over: a signal that lands while a long
    line waits for room in a full pipe cuts it at a page and loses the rest. Here the rest is
    written until all of it is out (and a descriptor someone made non-blocking is waited on)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + self.terminator).encode(errors="replace")
            self.flush()
            write_all(self.stream.fileno(), data)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])


def configure_master(level: str, json_lines: bool, logfile: str | None, pid: int) -> None:
    handler: logging.Handler = (
        logging.FileHandler(logfile) if logfile else WholeLinesHandler(sys.stderr)
    )
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(_OriginFilter(Origin("master", pid)))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # Drivers narrate every connection, and log each lost one with a traceback; forkq logs
    # one line per outage itself. With --loglevel debug, they speak.
    quiet = logging.DEBUG if level.lower() == "debug" else logging.CRITICAL
    for driver in QUIET_DRIVERS:
        logging.getLogger(driver).setLevel(quiet)


RunningTask = Callable[[], tuple[str, str]]  # (task id, task name), empty when idle


class _ChildRecordFormatter(logging.Formatter):
    def __init__(self, running: RunningTask) -> None:
        super().__init__()
        self.running = running

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        task_id, task_name = self.running()
        body = {"t": record.created, "l": record.levelno, "n": record.name, "m": message}
        if task_id:
            body["i"], body["k"] = task_id, task_name
        return _RECORD_MARK + json.dumps(body)[1:]


def configure_child(running: RunningTask) -> None:
    """In a child after fork: records leave as JSON lines on stderr (the pipe to the master),
    tagged with the task running when they were made."""
    handler = WholeLinesHandler(sys.stderr)
    handler.setFormatter(_ChildRecordFormatter(running))
    root = logging.getLogger()
    level = root.level
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True)  # a print reaches the master at once


def relay(line: str, origin: Origin) -> None:
    """In the master: log one line a child wrote. A record names its own task; a raw line
    gets the task `origin` saw running when the master read it."""
    parsed = _parse_record(line) if line.startswith(_RECORD_MARK) else None
    if parsed is None:
        record = logging.LogRecord("forkq.output", logging.WARNING, "", 0, line, None, None)
        record.origin = origin
    else:
        record, task_id, task_name = parsed
        record.origin = Origin(origin.label, origin.pid, task_id, task_name)
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)


def _parse_record(line: str) -> tuple[logging.LogRecord, str, str] | None:
    try:
        body = json.loads(line)
        record = logging.LogRecord(
            str(body["n"]), int(body["l"]), "", 0, str(body["m"]), None, None
        )
        record.created = float(body["t"])
        record.msecs = (record.created - int(record.created)) * 1000
        return record, str(body.get("i", "")), str(body.get("k", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
