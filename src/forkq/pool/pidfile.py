"""`--pidfile`: the master's pid, in a file that one live worker at a time may hold.

The master holds a POSIX record lock (`lockf`) on the file for its whole life. The lock
belongs to the process, so forked children never hold it, and it lasts across `execv` as long
as the descriptor stays open: a HUP hands the descriptor to the re-executed master (its number
in `HANDOVER_ENV`), which takes it over without ever letting go. A second worker finds the lock
taken and refuses, naming the pid in the file; a file left by a dead process has no lock and
is taken over. The file is removed when the worker exits, except when it re-executes itself.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os

from forkq.exceptions import ConfigurationError

HANDOVER_ENV = "FORKQ_PIDFILE_FD"  # set across a HUP's execv: the descriptor holding the lock


class PidFileHeld(ConfigurationError):
    """Another live process holds the pidfile."""


class PidFile:
    """`PidFile.claim(path)` locks and writes; `with` removes it at the end, unless
    `hand_over()` passed it to the next program this process executes."""

    def __init__(self, path: str | None, fd: int | None) -> None:
        self.path = path
        self.fd = fd
        self.handed_over = False

    @classmethod
    def claim(cls, path: str | None) -> PidFile:
        """Raises PidFileHeld when another live process holds it."""
        if not path:
            return cls(None, None)
        fd = _adopt(path)
        while fd is None:
            fd = _lock(path)
        os.set_inheritable(fd, False)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def hand_over(self) -> None:
        """Before `execv`: the descriptor (and so the lock) survives it, and the next program
        finds its number in the environment."""
        if self.fd is not None:
            os.set_inheritable(self.fd, True)
            os.environ[HANDOVER_ENV] = str(self.fd)
            self.handed_over = True

    def __enter__(self) -> PidFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        if self.fd is None or self.handed_over:
            return
        if self.path and _same_file(self.fd, self.path):
            os.unlink(self.path)  # while still locked: no other worker can have it yet
        os.close(self.fd)
        self.fd = None


def _adopt(path: str) -> int | None:
    """The descriptor a re-executing master handed over, if it is this path's file."""
    given = os.environ.pop(HANDOVER_ENV, None)
    if given is None or not given.isdigit():
        return None
    fd = int(given)
    try:
        if _same_file(fd, path):
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours already: this cannot wait
            return fd
    except OSError:
        return None
    with contextlib.suppress(OSError):
        os.close(fd)
    return None


def _lock(path: str) -> int | None:
    """The locked descriptor of the file now at `path`; None when the file was removed or
    replaced between opening and locking it (its worker exited meanwhile: try again)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise ConfigurationError(f"cannot open pidfile {path}: {exc.strerror}") from None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        raise PidFileHeld(_held_message(path, holder)) from None
    if _same_file(fd, path):
        return fd
    os.close(fd)
    return None


def _held_message(path: str, holder: str) -> str:
    who = f"worker pid {holder}" if holder.isdigit() else "another worker, starting"
    return (
        f"pidfile {path} is held by {who}: stop that worker first, or give this one "
        f"another --pidfile"
    )


def _same_file(fd: int, path: str) -> bool:
    try:
        there = os.stat(path)
    except FileNotFoundError:
        return False
    here = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
