"""The bulletin: one shared page the master writes and every child reads, without a round trip.

The scoreboard carries what each child tells the master; the bulletin carries what the master
tells all its children, for them to act on at their next look (before a fetch, before a task
starts), never by interrupting them:

    control (revoke, add-queue, cancel-queue) ─► master ─► Bulletin.post_* ─► shared page
                                                                                 │
    child: before each fetch / task start ─► BulletinReader.* (a few loads) ◄────┘
           on SIGTERM while busy ─► BulletinReader.terminating(its task) ◄───────┘

Layout (little-endian), guarded by a sequence counter as a scoreboard slot is (the writer
makes it odd, writes, makes it even; a reader retries while it is odd or changed)::

    seq u32 | pad 4 | revokes u64 | queues_version u64 | queues_length u32 | queues 2048s
    | terminating 128 x 64s

`revokes` counts the revocations the master has heard of: a child whose count is behind reads
the revoked ids again from where they are kept (the result backend). `queues` is the set of
queues the pool consumes, newline-separated, with a version that changes with it.
`terminating` holds the ids of the last 128 tasks the master is terminating (a revoke with
terminate), oldest overwritten first: a busy child that gets SIGTERM while running one of them
ends its task at once instead of finishing it (`forkq.pool.child.StopSignal`).
"""

from __future__ import annotations

import mmap
import struct
import sys
import time

import msgspec

from forkq.exceptions import ConfigurationError

_HEAD = struct.Struct("<I 4x Q Q I")
_REVOKES_AT = 8  # aligned
_QUEUES_VERSION_AT = 16  # aligned
_SEQ = struct.Struct("<I")
_COUNT = struct.Struct("<Q")
_QUEUES = 2048
_TERMINATING = 128  # task ids kept
TERMINATING_AT_ONCE = _TERMINATING  # a revoke terminates at most this many tasks
_TASK_ID = 64  # bytes of each: ids longer are compared by their first 64 bytes
_TERMINATING_AT = _HEAD.size + _QUEUES
_SIZE = _TERMINATING_AT + _TERMINATING * _TASK_ID
_READ_PATIENCE = 0.1  # seconds; the master finishes a write in microseconds


class QueuesTooLong(ConfigurationError):
    """The queue names do not fit the bulletin."""


class Posted(msgspec.Struct, frozen=True):
    """A consistent snapshot of the bulletin."""

    revokes: int
    queues_version: int
    queues: tuple[str, ...]
    terminating: tuple[str, ...] = ()  # in slot order, "" for an empty slot


class Bulletin:
    """Made by the master before it forks; the children read the same pages."""

    def __init__(self, queues: tuple[str, ...] = ()) -> None:
        self._map = mmap.mmap(-1, _SIZE, flags=mmap.MAP_SHARED)
        self._seq = 0
        self._posted = Posted(0, 0, (), ("",) * _TERMINATING)
        self._next_terminating = 0  # the slot the next id overwrites
        self._readers: list[BulletinReader] = []
        if queues:
            self.post_queues(queues)

    @property
    def posted(self) -> Posted:
        """What the master wrote last (its own copy: no read of the page)."""
        return self._posted

    def post_revoke(self) -> int:
        """One more revocation heard of; returns the new count."""
        p = self._posted
        self._write(Posted(p.revokes + 1, p.queues_version, p.queues, p.terminating))
        return self._posted.revokes

    def post_terminating(self, task_id: str) -> None:
        """The master is about to signal the child running `task_id` to end it."""
        p = self._posted
        slots = list(p.terminating)
        slots[self._next_terminating] = _clipped(task_id)
        self._next_terminating = (self._next_terminating + 1) % _TERMINATING
        self._write(Posted(p.revokes, p.queues_version, p.queues, tuple(slots)))

    def post_queues(self, queues: tuple[str, ...]) -> None:
        """The pool now consumes `queues` (QueuesTooLong if they do not fit)."""
        if "\n" in "".join(queues) or len("\n".join(queues).encode()) > _QUEUES:
            raise QueuesTooLong(f"{len(queues)} queue names do not fit in {_QUEUES} bytes")
        p = self._posted
        self._write(Posted(p.revokes, p.queues_version + 1, tuple(queues), p.terminating))

    def reader(self) -> BulletinReader:
        made = BulletinReader(self._map)
        self._readers.append(made)
        return made

    def _write(self, posted: Posted) -> None:
        raw = "\n".join(posted.queues).encode()
        head = _HEAD.pack(self._seq + 1, posted.revokes, posted.queues_version, len(raw))
        self._map[0 : _SEQ.size] = _SEQ.pack(self._seq + 1)  # odd: write in progress
        self._map[_REVOKES_AT : _HEAD.size] = head[_REVOKES_AT:]
        self._map[_HEAD.size : _HEAD.size + len(raw)] = raw
        ids = b"".join(t.encode().ljust(_TASK_ID, b"\0") for t in posted.terminating)
        self._map[_TERMINATING_AT:_SIZE] = ids
        self._seq += 2
        self._map[0 : _SEQ.size] = _SEQ.pack(self._seq)
        self._posted = posted

    def close(self) -> None:
        for reader in self._readers:
            reader.close()  # a view of the page would keep it from closing
        self._map.close()


class BulletinReader:
    """A child's view. `revokes()` is one load, cheap enough to make before every task: an
    index into a view of the page's first 16 bytes as two native 8-byte integers (an unpack
    where the native order is not the page's), with none of the buffer export an unpack from
    the mmap makes each time. The view is released by `Bulletin.close` (a page with a view
    cannot close)."""

    def __init__(self, shared: mmap.mmap) -> None:
        self._map = shared
        little = sys.byteorder == "little"
        self._counts = memoryview(shared)[0:16].cast("Q") if little else None

    def revokes(self) -> int:
        """The master's count of revocations (a single aligned 8-byte field: no torn read
        that matters, a count read one write early is caught at the next look)."""
        if self._counts is not None:
            return self._counts[1]
        return int(_COUNT.unpack_from(self._map, _REVOKES_AT)[0])

    def close(self) -> None:
        if self._counts is not None:
            self._counts.release()
            self._counts = None

    def queues_version(self) -> int:
        """The version of the queue set (one aligned load, as `revokes`): a child reads the
        set again only when it changed."""
        return int(struct.unpack_from("<Q", self._map, _QUEUES_VERSION_AT)[0])

    def read(self) -> Posted:
        give_up = time.monotonic() + _READ_PATIENCE
        while True:
            before = _SEQ.unpack_from(self._map, 0)[0]
            raw = self._map[0:_SIZE]
            after = _SEQ.unpack_from(self._map, 0)[0]
            if (before == after and not before & 1) or time.monotonic() > give_up:
                break
        _, revokes, version, length = _HEAD.unpack_from(raw)
        text = raw[_HEAD.size : _HEAD.size + length].decode(errors="replace")
        terminating = tuple(
            raw[at : at + _TASK_ID].rstrip(b"\0").decode(errors="replace")
            for at in range(_TERMINATING_AT, _SIZE, _TASK_ID)
        )
        return Posted(revokes, version, tuple(q for q in text.split("\n") if q), terminating)

    def terminating(self, task_id: str) -> bool:
        """Whether the master is terminating the task `task_id` (safe in a signal handler:
        it reads the shared page, written by another process, and takes no lock)."""
        return bool(task_id) and _clipped(task_id) in self.read().terminating


def _clipped(task_id: str) -> str:
    """The id as the page holds it: its first 64 bytes, cut at a whole character."""
    return task_id.encode()[:_TASK_ID].decode(errors="ignore")
