"""The scoreboard: shared memory with one fixed-size slot per child.

Created by the master before it forks, so every child maps the same pages. A slot is
written only by the child that owns it and read by the master on its tick, without a round
trip. Writes are guarded by a sequence counter (a seqlock): the writer makes it odd, writes,
makes it even; a reader retries when it saw an odd value or the value changed under it.

Slot layout (little-endian; `_HEAD`, then `unacked` with a sequence of its own)::

    seq u32 | pid i32 | state u8 | pad 1 | reserved u16 | pad 4
    | started_at f64 | heartbeat f64 | deadline f64 | done u64 | failed u64
    | task_id 48s | receipt 64s | queue 64s | task_name 160s
    | unacked_seq u32 | unacked 2048s

`unacked` lists the (queue, receipt) pairs of messages the child finished but whose acks its
broker kept back to send with its next call (`ConsumerSession.kept_acks`); when the child dies the
master acks them instead of releasing them, so that they do not run again. Only whole pairs
are written: one that does not fit is left out, and would at worst run twice. A write copies
`unacked` only when it changed: the 2 KiB would otherwise be most of a slot write's cost. Its
own sequence (odd while it is rewritten) tells a dead child's master whether the list, not
only the slot, was cut short.

`reserved` counts the messages of the child's batch that it holds and has not started yet.

`deadline` is on the monotonic clock (system-wide on Linux, so the master can compare it with
its own): the moment the running task passes its hard time limit, 0 when it has none.
"""

from __future__ import annotations

import enum
import mmap
import struct
import time
from collections.abc import Sequence

import msgspec
from setproctitle import setproctitle

_HEAD = struct.Struct("<Ii B x H 4x ddd QQ 48s 64s 64s 160s")  # every field but unacked
_SEQ = struct.Struct("<I")
# What `taken` writes in place: the state and the receipt.
_STATE_AT = struct.calcsize("<Ii")
_RECEIPT_AT = struct.calcsize("<Ii B 7x ddd QQ 48s")
_UNACKED = 2048
_UNACKED_AT = _HEAD.size + _SEQ.size  # unacked has a sequence of its own, just before it
_SLOT_SIZE = _UNACKED_AT + _UNACKED
_READ_PATIENCE = 0.1  # seconds; a live writer finishes a write in microseconds
_PAIR, _NEXT = "\x1f", "\x1e"  # ASCII unit and record separators


def slot_capacity(concurrency: int) -> int:
    """Slots a pool of `concurrency` children has: room for TTIN to grow it (up to four
    times, at least 16 more) and for what lives beside the slots (the tally) to be made with
    the scoreboard, before the fork."""
    return max(4 * concurrency, concurrency + 16)


class SlotState(enum.IntEnum):
    EMPTY = 0
    STARTING = 1
    IDLE = 2
    BUSY = 3
    EXITING = 4


class SlotView(msgspec.Struct, frozen=True):
    """A consistent snapshot of one slot."""

    pid: int
    state: SlotState
    started_at: float  # when the current task started (BUSY only)
    heartbeat: float  # when the child last wrote its slot
    deadline: float  # monotonic; 0 when the running task has no hard time limit
    done: int
    failed: int
    task_id: str
    receipt: str
    queue: str
    task_name: str
    unacked: tuple[tuple[str, str], ...] = ()
    reserved: int = 0  # messages fetched, held, not started


class Scoreboard:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._map = mmap.mmap(-1, _SLOT_SIZE * capacity, flags=mmap.MAP_SHARED)

    def writer(self, index: int) -> SlotWriter:
        return SlotWriter(self._map, index * _SLOT_SIZE)

    def read(self, index: int) -> SlotView:
        """A consistent snapshot; if none comes within `_READ_PATIENCE` seconds the child
        died in the middle of a write (it has not been reaped yet): its final state."""
        offset = index * _SLOT_SIZE
        give_up = time.monotonic() + _READ_PATIENCE
        while time.monotonic() < give_up:
            before = _SEQ.unpack_from(self._map, offset)[0]
            raw = self._map[offset : offset + _SLOT_SIZE]
            after = _SEQ.unpack_from(self._map, offset)[0]
            if before == after and not before & 1:
                return _view(raw)
        return self.read_final(index)

    def read_final(self, index: int) -> SlotView:
        """The last state of a slot whose child has exited, so no write is coming. A child
        killed in the middle of a write leaves an odd sequence and a slot that may mix two
        writes: it is returned as it is. `unacked` has its own sequence, odd only if the kill
        came while it was being rewritten: then it is dropped, since its pairs could be torn
        (a finished task then runs again rather than an unfinished one being acked)."""
        offset = index * _SLOT_SIZE
        view = _view(self._map[offset : offset + _SLOT_SIZE])
        if _SEQ.unpack_from(self._map, offset + _HEAD.size)[0] & 1:
            return msgspec.structs.replace(view, unacked=())
        return view

    def clear(self, index: int) -> None:
        """Master only, for a slot whose child is gone and before a new one is forked."""
        offset = index * _SLOT_SIZE
        self._map[offset : offset + _SLOT_SIZE] = bytes(_SLOT_SIZE)

    def close(self) -> None:
        self._map.close()


class SlotWriter:
    """The owning child's view of its slot; keeps the fields and rewrites the whole slot.

    With a `title`, the state also shows in `ps`: "busy <task>" from the moment a task starts,
    "idle" from `waiting` (the child is about to fetch). A finished task leaves its title up
    until then, so a batch of the same task costs two title changes, not two a task
    (setproctitle costs 2-4 µs in a worker's child: 5% of a short task's CPU)."""

    def __init__(self, shared: mmap.mmap, offset: int) -> None:
        self._map, self._offset = shared, offset
        self.title = ""  # e.g. "forkq: proj child 2"; set by the child
        self._seq = _SEQ.unpack_from(shared, offset)[0] & ~1
        self.pid = 0
        self.state = SlotState.EMPTY
        self.started_at = self.deadline = 0.0
        self.done = self.failed = 0
        self.reserved = 0  # written with the next whole-slot write (the next task's start)
        self.task_id = self.receipt = self.queue = self.task_name = ""
        self.unacked = b""
        self._unacked_written = _UNACKED  # bytes to overwrite: all, the first time
        self._shown = ""  # the title set last

    def start(self, pid: int) -> None:
        self.pid = pid
        self._set(SlotState.STARTING)

    def idle(self) -> None:
        self.task_id = self.receipt = self.queue = self.task_name = ""
        self.deadline = 0.0
        self._set(SlotState.IDLE)

    def taken(self, receipt: str) -> None:
        """The child begins handling a message whose bytes it has not read yet: from now on
        its death is charged to that message (the master releases it as running). Only the
        state and the receipt are written, in place: the receipt, task fields and deadline are
        empty since the last `finished` or `idle`, and `busy` or `finished` follows with the
        whole slot."""
        at, seq = self._offset, self._seq
        self._map[at : at + _SEQ.size] = _SEQ.pack(seq + 1)
        self._map[at + _STATE_AT] = SlotState.BUSY
        raw = receipt.encode()[:64]  # over zeros: `finished` and `idle` clear the field
        self._map[at + _RECEIPT_AT : at + _RECEIPT_AT + len(raw)] = raw
        self._seq = seq + 2
        self._map[at : at + _SEQ.size] = _SEQ.pack(seq + 2)

    def busy(
        self, task_id: str, task_name: str, receipt: str, queue: str, time_limit: float | None
    ) -> None:
        self.task_id, self.task_name, self.receipt, self.queue = task_id, task_name, receipt, queue
        self.started_at = time.time()
        self.deadline = time.monotonic() + time_limit if time_limit else 0.0
        self._set(SlotState.BUSY)

    def finished(self, failed: bool, unacked: Sequence[tuple[str, str]] = ()) -> None:
        self.done += 1
        self.failed += int(failed)
        encoded = _encode_pairs(unacked)
        if encoded != self.unacked:
            self._unacked_written = max(len(self.unacked), 1)  # what to overwrite or clear
            self.unacked = encoded
        self.task_id = self.receipt = self.queue = self.task_name = ""
        self.deadline = 0.0
        self._set(SlotState.IDLE, show=False)  # its title waits for `waiting`

    def waiting(self) -> None:
        """The child is about to fetch (and may block): `ps` shows it idle."""
        self._show("idle")

    def exiting(self) -> None:
        self._set(SlotState.EXITING)

    def _set(self, state: SlotState, show: bool = True) -> None:
        self.state = state
        packed = _HEAD.pack(
            self._seq + 1,
            self.pid,
            state,
            min(self.reserved, 0xFFFF),
            self.started_at,
            time.time(),
            self.deadline,
            self.done,
            self.failed,
            self.task_id.encode()[:48],
            self.receipt.encode()[:64],
            self.queue.encode()[:64],
            self.task_name.encode()[:160],
        )
        seq_field = slice(self._offset, self._offset + _SEQ.size)
        # Slice copies, not struct.pack_into: pack_into zeroes its target before writing,
        # and a reader seeing that transient 0 at both ends would accept a torn slot.
        self._map[seq_field] = _SEQ.pack(self._seq + 1)  # odd: write in progress
        self._map[seq_field.stop : self._offset + _HEAD.size] = memoryview(packed)[_SEQ.size :]
        if self._unacked_written:  # the 2 KiB of unacked only when it changed
            useq = slice(self._offset + _HEAD.size, self._offset + _UNACKED_AT)
            start = useq.stop
            length = max(len(self.unacked), self._unacked_written)
            self._map[useq] = _SEQ.pack(1)  # odd: being rewritten
            self._map[start : start + length] = self.unacked.ljust(length, b"\0")
            self._map[useq] = _SEQ.pack(0)
            self._unacked_written = 0
        self._seq += 2
        self._map[seq_field] = _SEQ.pack(self._seq)
        if show:
            busy = f" {self.task_name}" if state == SlotState.BUSY else ""
            self._show(f"{state.name.lower()}{busy}")

    def _show(self, what: str) -> None:
        if self.title and what != self._shown:
            setproctitle(f"{self.title} {what}")
            self._shown = what


def _view(raw: bytes) -> SlotView:
    _, pid, state, held, started, beat, deadline, done, failed, task_id, receipt, queue, name = (
        _HEAD.unpack_from(raw)
    )
    un = raw[_UNACKED_AT:]
    return SlotView(
        pid=pid,
        state=SlotState(state),
        started_at=started,
        heartbeat=beat,
        deadline=deadline,
        done=done,
        failed=failed,
        task_id=_text(task_id),
        receipt=_text(receipt),
        queue=_text(queue),
        task_name=_text(name),
        unacked=_decode_pairs(_text(un)),
        reserved=held,
    )


def _encode_pairs(pairs: Sequence[tuple[str, str]]) -> bytes:
    out = "".join(f"{queue}{_PAIR}{receipt}{_NEXT}" for queue, receipt in pairs).encode()
    if len(out) <= _UNACKED:
        return out
    cut = out.rfind(_NEXT.encode(), 0, _UNACKED + 1)  # only whole pairs
    return out[: cut + 1] if cut >= 0 else b""


def _decode_pairs(text: str) -> tuple[tuple[str, str], ...]:
    records = (r.split(_PAIR, 1) for r in text.split(_NEXT) if _PAIR in r)
    return tuple((queue, receipt) for queue, receipt in records)


def slot_task_id(task_id: str) -> str:
    """A task id as a slot holds it: its first 48 bytes (`SlotView.task_id` of a child
    running it)."""
    return _text(task_id.encode()[:48])


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode(errors="replace")
