"""Where masters put their control sockets and `forkq inspect` finds them, and why it is safe.

The directory is $FORKQ_CONTROL_DIR when set; else $XDG_RUNTIME_DIR/forkq when
XDG_RUNTIME_DIR names a directory of ours with mode 0700 (per user, cleared at logout); else
/tmp/forkq-<uid>. Whoever can write to it could plant a socket whose answers `forkq inspect`
shows as a worker's, so it is used only if it is a real directory (not a symbolic link),
owned by us, with mode 0700; the worker creates it that way. The check is made on a
descriptor opened with O_DIRECTORY|O_NOFOLLOW, and every later use goes through that
descriptor (`/proc/self/fd/N/<name>` for bind and connect, `dir_fd` for the rest): a
directory renamed or swapped after the check is never the one used.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from forkq.exceptions import ConfigurationError

MODE = 0o700
SUFFIX = ".sock"
FIX = "set FORKQ_CONTROL_DIR to a directory you own with mode 0700"


class UnsafeControlDir(ConfigurationError):
    """The control directory cannot be trusted or made; the message says why and the fix."""


class ForeignSocket(ConfigurationError):
    """A control socket that is not our own worker's: nothing it answers is believed."""


class ControlDir:
    """A checked control directory, held open; close it when done."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path  # as named, for messages
        self.fd = fd

    @classmethod
    def open(cls, path: Path, *, create: bool) -> ControlDir:
        """The directory at `path`, checked; with `create`, made (mode 0700) when missing.
        Raises UnsafeControlDir, or FileNotFoundError when it is missing and not created."""
        made = create and _make(path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            raise UnsafeControlDir(_describe_unopenable(path, exc)) from None
        try:
            _check(path, fd, made)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd)

    def entry(self, name: str) -> str:
        """A path to `name` in this very directory, whatever its path names now."""
        return f"/proc/self/fd/{self.fd}/{name}"

    def names(self) -> list[str]:
        """Names of the control sockets in it, as named: check each with `check_socket`."""
        return sorted(name for name in os.listdir(self.fd) if name.endswith(SUFFIX))

    def check_socket(self, name: str) -> None:
        """Raises ForeignSocket unless `name` is a socket (not a link to one) of ours:
        FileNotFoundError if there is none."""
        st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        if not stat.S_ISSOCK(st.st_mode):
            raise ForeignSocket(f"not trusting {self.path / name}: it is not a socket")
        if st.st_uid != os.getuid():
            raise ForeignSocket(
                f"not trusting {self.path / name}: it belongs to uid {st.st_uid}, not to you "
                f"(uid {os.getuid()}), so it is no worker of yours"
            )

    def unlink(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> ControlDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def configured() -> Path | None:
    value = os.environ.get("FORKQ_CONTROL_DIR")
    return Path(value) if value else None


def runtime_dir() -> Path | None:
    """$XDG_RUNTIME_DIR/forkq, when XDG_RUNTIME_DIR is an absolute path to a directory of
    ours with mode 0700 (the XDG spec's rule; a relative or unsafe one is ignored)."""
    value = os.environ.get("XDG_RUNTIME_DIR")
    if not value or not os.path.isabs(value):
        return None
    try:
        st = os.lstat(value)
    except OSError:
        return None
    if not _safe(st):
        return None
    return Path(value) / "forkq"


def shared_tmp_dir() -> Path:
    return Path(f"/tmp/forkq-{os.getuid()}")


def worker_dir_path() -> Path:
    """The directory a worker puts its socket in."""
    return configured() or runtime_dir() or shared_tmp_dir()


def open_worker_dir() -> ControlDir:
    return ControlDir.open(worker_dir_path(), create=True)


def open_inspect_dirs() -> tuple[list[ControlDir], list[str]]:
    """The directories `forkq inspect` reads (those that exist), and warnings for any it
    skipped. Besides the worker's own choice, a session with XDG_RUNTIME_DIR also reads
    /tmp/forkq-<uid>, where workers started without it (system services) put theirs; that
    one is skipped with a warning if unsafe, so another user cannot stop inspect by making it.
    An unsafe directory of the worker's own choice raises UnsafeControlDir."""
    primary = worker_dir_path()
    dirs = []
    warnings = []
    with contextlib.suppress(FileNotFoundError):
        dirs.append(ControlDir.open(primary, create=False))
    if configured() is None and primary != shared_tmp_dir():
        try:
            dirs.append(ControlDir.open(shared_tmp_dir(), create=False))
        except FileNotFoundError:
            pass
        except UnsafeControlDir as exc:
            warnings.append(f"skipped {exc}")
    return dirs, warnings


def _safe(st: os.stat_result) -> bool:
    return (
        stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) == MODE
    )


def _make(path: Path) -> bool:
    """Create `path` (mode 0700; missing parents with the default mode); True if we did."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(path, MODE)
    except FileExistsError:
        return False
    except OSError as exc:
        raise UnsafeControlDir(
            f"cannot create control directory {path}: {exc.strerror}; {FIX}"
        ) from None
    return True


def _check(path: Path, fd: int, made: bool) -> None:
    st = os.fstat(fd)
    uid = os.getuid()
    if st.st_uid != uid:
        raise UnsafeControlDir(
            f"control directory {path} belongs to uid {st.st_uid}, not to you (uid {uid}): "
            f"another user could plant sockets in it; remove it, or {FIX}"
        )
    if made:
        os.fchmod(fd, MODE)  # the umask may have taken bits we need
        st = os.fstat(fd)
    mode = stat.S_IMODE(st.st_mode)
    if mode != MODE:
        raise UnsafeControlDir(
            f"control directory {path} has mode {mode:04o}, not 0700: others could read or "
            f"plant sockets in it; run 'chmod 700 {path}', or {FIX}"
        )


def _describe_unopenable(path: Path, exc: OSError) -> str:
    if exc.errno in (errno.ENOTDIR, errno.ELOOP):
        try:
            is_link = stat.S_ISLNK(os.lstat(path).st_mode)
        except OSError:
            is_link = False
        what = "a symbolic link" if is_link else "not a directory"
        return f"control directory {path} is {what}; remove it, or {FIX}"
    return f"cannot open control directory {path}: {exc.strerror}; {FIX}"
