"""The bulletin: one shared page the master writes and every child reads, without a round trip.

The scoreboard carries what each child tells the master; the bulletin carries what the master
tells all its children, for them to act on at their next look (before a fetch, before a task
starts), never by interrupting them:

    control (revoke, add-queue, cancel-queue) ─► master ─► Bulletin.post_* ─► shared page
                                                                                 │
    child: before each fetch / task start ─► BulletinReader.* (a few loads) ◄────┘

Layout (little-endian), guarded by a sequence counter as a scoreboard slot is (the writer
makes it odd, writes, makes it even; a reader retries while it is odd or changed)::

    seq u32 | pad 4 | revokes u64 | queues_version u64 | queues_length u32 | queues 2048s

`revokes` counts the revocations the master has heard of: a child whose count is behind reads
the revoked ids again from where they are kept (the result backend). `queues` is the set of
queues the pool consumes, newline-separated, with a version that changes with it.
"""

from __future__ import annotations

import mmap
import struct
import time

import msgspec

_HEAD = struct.Struct("<I 4x Q Q I")
_REVOKES_AT = 8  # aligned
_QUEUES_VERSION_AT = 16  # aligned
_SEQ = struct.Struct("<I")
_QUEUES = 2048
_SIZE = _HEAD.size + _QUEUES
_READ_PATIENCE = 0.1  # seconds; the master finishes a write in microseconds


class QueuesTooLong(ValueError):
    """The queue names do not fit the bulletin."""


class Posted(msgspec.Struct, frozen=True):
    """A consistent snapshot of the bulletin."""

    revokes: int
    queues_version: int
    queues: tuple[str, ...]


class Bulletin:
    """Made by the master before it forks; the children read the same pages."""

    def __init__(self, queues: tuple[str, ...] = ()) -> None:
        self._map = mmap.mmap(-1, _SIZE, flags=mmap.MAP_SHARED)
        self._seq = 0
        self._posted = Posted(0, 0, ())
        if queues:
            self.post_queues(queues)

    @property
    def posted(self) -> Posted:
        """What the master wrote last (its own copy: no read of the page)."""
        return self._posted

    def post_revoke(self) -> int:
        """One more revocation heard of; returns the new count."""
        p = self._posted
        self._write(Posted(p.revokes + 1, p.queues_version, p.queues))
        return self._posted.revokes

    def post_queues(self, queues: tuple[str, ...]) -> None:
        """The pool now consumes `queues` (QueuesTooLong if they do not fit)."""
        if "\n" in "".join(queues) or len("\n".join(queues).encode()) > _QUEUES:
            raise QueuesTooLong(f"{len(queues)} queue names do not fit in {_QUEUES} bytes")
        p = self._posted
        self._write(Posted(p.revokes, p.queues_version + 1, tuple(queues)))

    def reader(self) -> BulletinReader:
        return BulletinReader(self._map)

    def _write(self, posted: Posted) -> None:
        raw = "\n".join(posted.queues).encode()
        head = _HEAD.pack(self._seq + 1, posted.revokes, posted.queues_version, len(raw))
        self._map[0 : _SEQ.size] = _SEQ.pack(self._seq + 1)  # odd: write in progress
        self._map[_REVOKES_AT : _HEAD.size] = head[_REVOKES_AT:]
        self._map[_HEAD.size : _HEAD.size + len(raw)] = raw
        self._seq += 2
        self._map[0 : _SEQ.size] = _SEQ.pack(self._seq)
        self._posted = posted

    def close(self) -> None:
        self._map.close()


class BulletinReader:
    """A child's view. `revokes()` is one load, cheap enough to make before every task."""

    def __init__(self, shared: mmap.mmap) -> None:
        self._map = shared

    def revokes(self) -> int:
        """The master's count of revocations (a single aligned 8-byte field: no torn read
        that matters, a count read one write early is caught at the next look)."""
        return int(struct.unpack_from("<Q", self._map, _REVOKES_AT)[0])

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
        return Posted(revokes, version, tuple(q for q in text.split("\n") if q))
