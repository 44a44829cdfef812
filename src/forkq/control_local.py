"""Control through this host's control sockets (`forkq.pool.control`): how `forkq.control`
reaches workers whose broker carries no control (SQLite, memory: one host by nature), and how
`forkq inspect --pid` reaches one master.

Each master is asked its worker's name first (`ping`), so that `destination` picks workers by
name as it does over the broker; two of one name (workers started without `-n` on one host)
are told apart by master pid. A socket that is not ours, or whose master does not answer, is
skipped with a warning; a worker named in `destination` that did not answer is missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from forkq.control_replies import Replies, Route
from forkq.exceptions import ForkqError, NoWorkerHere
from forkq.pool.control import ask, socket_name
from forkq.pool.control_dir import (
    SUFFIX,
    ControlDir,
    ForeignSocket,
    open_inspect_dirs,
    worker_dir_path,
)


class _Master(NamedTuple):
    directory: ControlDir
    socket: str
    pid: int


def ask_local(
    command: str,
    args: Mapping[str, Any] | None = None,
    destination: Sequence[str] | None = None,
    timeout: float = 5.0,
    pid: int | None = None,
) -> Replies:
    """`command` to every live master on this host (or the one whose pid is `pid`) whose
    worker `destination` names, or to all."""
    dirs, skipped = open_inspect_dirs()
    warnings = [f"skipped {w}" for w in skipped]
    replies: dict[str, dict[str, Any]] = {}
    answered: set[str] = set()
    try:
        masters = _masters(dirs, pid)
        for master in masters:
            try:
                ping = _ask(master, "ping", timeout, None)
                name = str(ping.get("hostname") or f"pid {master.pid}")
                if destination is not None and name not in destination:
                    continue
                body = ping if command == "ping" else _ask(master, command, timeout, args)
            except ForeignSocket as exc:
                if pid is not None:  # the one asked for: its refusal is the answer
                    raise
                warnings.append(str(exc))
                continue
            except (OSError, ValueError) as exc:
                if pid is not None:
                    raise ForkqError(f"no answer from {_where(master)}: {exc}") from None
                warnings.append(f"no answer from {_where(master)}: {exc}")
                continue
            replies[name if name not in replies else f"{name} (pid {master.pid})"] = body
            answered.add(name)
    finally:
        for directory in dirs:
            directory.close()
    missing = tuple(sorted(set(destination or ()) - answered))
    return Replies(command, replies, missing, route=Route.LOCAL, warnings=tuple(warnings))


def _masters(dirs: list[ControlDir], pid: int | None) -> list[_Master]:
    where = " or ".join(str(d.path) for d in dirs) or str(worker_dir_path())
    if pid is not None:
        name = socket_name(pid)
        for directory in dirs:
            if name in directory.names():
                return [_Master(directory, name, pid)]
        raise NoWorkerHere(f"no worker with master pid {pid} here (no {name} in {where})")
    found = [
        _Master(directory, name, int(name.removesuffix(SUFFIX)))
        for directory in dirs
        for name in directory.names()
        if _alive(name)
    ]
    if not found:
        raise NoWorkerHere(f"no running worker found in {where}; start one or give --pid")
    return found


def _ask(
    master: _Master, command: str, timeout: float, args: Mapping[str, Any] | None
) -> dict[str, Any]:
    return ask(master.directory, master.socket, command, timeout, args)


def _where(master: _Master) -> Path:
    return master.directory.path / master.socket


def _alive(name: str) -> bool:
    try:
        Path(f"/proc/{int(name.removesuffix(SUFFIX))}").stat()
    except (ValueError, FileNotFoundError):
        return False
    return True
