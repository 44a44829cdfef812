"""The chaos suite's counting, on records written here: a loss, duplicates beyond the bound
and a recovery are each what the figures say, and `check()` fails on the first two."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.harness import Fault, Run

pytestmark = pytest.mark.chaos


def recorded(tmp_path: Path, lines: list[str], sent: list[str]) -> Run:
    run = Run("harness", "none", tmp_path)
    run.record.write_text("".join(f"{line}\n" for line in lines))
    run.sent.extend(sent)
    return run


def test_a_task_that_never_ended_is_lost_and_one_started_twice_is_a_duplicate(
    tmp_path: Path,
) -> None:
    run = recorded(
        tmp_path,
        ["S a 10 1.0 1", "S b 10 1.1 1", "S a 11 3.0 2", "E a 11 3.1 2", "S c 11 3.2 1"],
        ["a", "b", "c", "d"],
    )
    run.faults.append(Fault(2.0, 1))
    figures = run.figures(dead_lettered=1)
    assert (figures.sent, figures.completed, figures.duplicates) == (4, 1, 1)
    assert figures.lost == 2  # b, c, d not ended; one of them dead-lettered
    assert figures.redelivered == pytest.approx(1.1)  # a's second delivery ended at 3.1
    with pytest.raises(AssertionError, match="lost=2"):
        figures.check()


def test_duplicates_beyond_the_in_flight_bound_fail(tmp_path: Path) -> None:
    lines = ["S a 10 1.0 1", "S a 11 2.5 2", "E a 11 2.6 2"]
    run = recorded(tmp_path, lines, ["a"])
    run.faults.append(Fault(2.0, 0))
    figures = run.figures(dead_lettered=0)
    assert (figures.lost, figures.duplicates, figures.bound) == (0, 1, 0)
    with pytest.raises(AssertionError, match="duplicates=1 \\(bound 0"):
        figures.check()


def test_recovery_runs_from_the_fault_to_its_probe_and_is_the_worst_of_the_faults(
    tmp_path: Path,
) -> None:
    lines = ["S p 10 2.2 1", "E p 10 2.5 1", "S q 10 7.0 1", "E q 10 7.1 1"]
    run = recorded(tmp_path, lines, ["p", "q"])
    run.faults.extend([Fault(2.0, 2), Fault(6.0, 2)])
    run.probes.update({0: "p", 1: "q"})
    figures = run.figures(dead_lettered=0)
    assert figures.recovery == pytest.approx(1.1)
    assert "recovery=1.10s" in figures.line()
    figures.check()


def test_a_probe_that_never_ran_is_an_endless_recovery(tmp_path: Path) -> None:
    run = recorded(tmp_path, [], [])
    run.faults.append(Fault(2.0, 0))
    run.probes[0] = "never"
    assert run.figures(dead_lettered=0).recovery == float("inf")
