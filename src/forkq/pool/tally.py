"""The tally: shared counters, one area per child slot, each written only by its child, summed
by the master. What children count reaches the master without a message or a round trip.

    before fork: Tally(capacity, width) ─► one area of `width` words per scoreboard slot
    child i:     tally.area(i)[word] += x           (its own area only; nothing else)
    master:      totals(occupied) = folded + the areas of the slots with a child now (on a
                 scrape: every other slot was folded and zeroed at reap, so adds nothing)
                 fold(i) at reap, before slot i is forked again: the area joins `folded`
                 and is zeroed, in one step of the loop
                 add(word, x): what the master counts itself joins `folded`

A word is a double that only its one writer changes, and only upwards: a count (exact up to
2**53) or a sum of seconds. A double, not an integer: the child adds a runtime as it is, with
no conversion, and a scrape's values are floats anyway. Each word is written and read as one
aligned 8-byte access (a memoryview of format "d": CPython moves the item with an 8-byte
`memcpy`, one load or store on x86-64 and arm64), so a reader never sees half an update of a
word: every value it reads lies between the one read before and the one read after. No
seqlock guards the areas, as one guards the scoreboard's slots, because nothing here needs
one: an area is not one record but many counters, each monotonic on its own, and what a
seqlock would add (the words of one task counted all together or not at all) would cost the
child's hot path two more writes per task. A read in the middle of a child's
update may see a task counted in one word and not yet in the next; the next read sees both.

Counters never go backwards, across children too: at reap the master folds the exited child's
area into its own totals and zeroes it in the same step (a child killed in the middle of an
update leaves what it wrote), and the next child of that slot starts from zero.

An area is padded to whole cache lines, so that two children never write the same line.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterable
from operator import add

_WORD = 8
_LINE_WORDS = 8  # a 64-byte cache line


class Tally:
    """Made by the master before it forks; each child then writes its own `area`."""

    def __init__(self, capacity: int, width: int) -> None:
        if capacity < 1 or width < 1:
            raise ValueError(f"a tally needs slots and words, got {capacity} x {width}")
        self.capacity = capacity
        self.width = width
        self._stride = -(-width // _LINE_WORDS) * _LINE_WORDS
        self._map = mmap.mmap(-1, capacity * self._stride * _WORD, flags=mmap.MAP_SHARED)
        self._words = memoryview(self._map).cast("d")  # zero bytes: 0.0
        self._folded = [0.0] * width  # the master's own: exited children's counts, its adds

    def area(self, index: int) -> memoryview[float]:
        """Slot `index`'s words (format "d"), for the child in that slot to count in."""
        start = index * self._stride
        return self._words[start : start + self.width]

    def fold(self, index: int) -> None:
        """Master only, when the child of slot `index` has been reaped: its counts become
        the master's and its area is zeroed for the next child."""
        area = self.area(index)
        self._folded = list(map(add, self._folded, area.tolist()))
        area[:] = memoryview(bytes(self.width * _WORD)).cast("d")

    def add(self, word: int, amount: float = 1.0) -> None:
        """Master only: something the master counted itself."""
        self._folded[word] += amount

    def totals(self, occupied: Iterable[int] | None = None) -> list[float]:
        """Every word summed: what exited children counted, what the master added, what the
        live children have counted so far. `occupied`: the slots with a child now (the
        master's), the only ones to read: a scrape of a worker with room for 256 children and
        20 tasks then sums the areas of its 64 children, not 256: 1.6 ms rather than 10 ms
        (word by word, in one pass). None: every slot."""
        slots = range(self.capacity) if occupied is None else occupied
        return list(
            map(sum, zip(self._folded, *(self.area(i).tolist() for i in slots), strict=True))
        )

    def close(self) -> None:
        self._words.release()
        self._map.close()
