"""Children's output as whole lines: each child writes stdout and stderr into one pipe, the
master reads it when the selector says so and cuts it into lines here."""

from __future__ import annotations

import os

MAX_LINE = 64 * 1024  # a longer line is passed on in pieces of this size, never dropped


class LineBuffer:
    def __init__(self) -> None:
        self._partial = b""

    def feed(self, data: bytes) -> list[str]:
        """Complete lines in `data` (plus what was left over before), without newlines."""
        chunks = (self._partial + data).split(b"\n")
        self._partial = chunks.pop()
        while len(self._partial) > MAX_LINE:
            chunks.append(self._partial[:MAX_LINE])
            self._partial = self._partial[MAX_LINE:]
        return [chunk.decode(errors="replace") for chunk in chunks]

    def flush(self) -> list[str]:
        """At the end of the stream: the last line, if it had no newline."""
        rest, self._partial = self._partial, b""
        return [rest.decode(errors="replace")] if rest else []


class ChildOutput:
    """The master's end of one child's output pipe."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self.closed = False  # the child (and anything that inherited the pipe) closed it
        self._lines = LineBuffer()

    def drain(self) -> list[str]:
        """Whole lines readable now (and the last partial one once the pipe is closed)."""
        data, self.closed = read_available(self.fd)
        return self._lines.feed(data) + (self._lines.flush() if self.closed else [])

    def leftover(self) -> list[str]:
        """At reap, when a grandchild still holds the pipe open: the unterminated line."""
        return self._lines.flush()


def read_available(fd: int) -> tuple[bytes, bool]:
    """Everything readable now from a non-blocking fd; and whether it reached end of file."""
    parts: list[bytes] = []
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return b"".join(parts), False
        if not data:
            return b"".join(parts), True
        parts.append(data)
