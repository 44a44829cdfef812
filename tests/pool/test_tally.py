"""The tally: children count in their own areas across fork; the master's totals never go
backwards when a child is folded in and its slot is used again."""

from __future__ import annotations

import os

import pytest

from forkq.pool.tally import Tally

pytestmark = pytest.mark.timeout(30)


def counted_in_child(tally: Tally, index: int, counts: dict[int, int]) -> None:
    """A forked process adds `counts` to its area, then exits: what a child does."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        area = tally.area(index)
        for word, n in counts.items():
            area[word] += n
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_childs_counts_reach_the_master_without_a_message() -> None:
    tally = Tally(capacity=4, width=3)
    counted_in_child(tally, 1, {0: 2, 2: 5})
    counted_in_child(tally, 3, {0: 1})
    assert tally.totals() == [3, 0, 5]
    tally.close()


def test_folding_keeps_totals_and_frees_the_slot_for_a_child_starting_from_zero() -> None:
    tally = Tally(capacity=2, width=2)
    counted_in_child(tally, 0, {0: 7, 1: 1})
    before = tally.totals()
    tally.fold(0)  # the child was reaped
    assert tally.totals() == before == [7, 1]
    assert tally.area(0).tolist() == [0, 0]  # the next child of slot 0 starts from zero
    counted_in_child(tally, 0, {0: 1})
    assert tally.totals() == [8, 1]
    tally.fold(0)
    tally.add(1, 4)  # what the master counts itself
    assert tally.totals() == [8, 5]
    tally.close()


def test_no_area_overlaps_another() -> None:
    tally = Tally(capacity=3, width=9)
    for index in range(3):
        tally.area(index)[8] += 1  # the last word of each
    assert tally.totals()[8] == 3
    assert [tally.area(i).tolist()[:8] for i in range(3)] == [[0] * 8] * 3
    tally.close()


def test_a_tally_needs_slots_and_words() -> None:
    with pytest.raises(ValueError, match="needs slots and words"):
        Tally(capacity=0, width=3)


def test_a_scrape_reads_only_the_occupied_slots_and_misses_nothing() -> None:
    """Every slot without a child was folded and zeroed at reap: the totals of the occupied
    slots and the folded words are the totals of every slot."""
    tally = Tally(capacity=64, width=3)
    counted_in_child(tally, 0, {0: 4})
    tally.fold(0)  # reaped: slot 0 is empty now
    counted_in_child(tally, 5, {1: 2})  # slot 5's child is alive (its area not folded)
    tally.add(2, 3.0)
    assert tally.totals([5]) == tally.totals() == [4, 2, 3]
    assert tally.totals([]) == [4, 0, 3]  # the folded and the master's own
    tally.close()
