"""A burst of long tasks on a worker that just started spreads over every child at once.

8 tasks of 2 s on `-c 4` are all done within 4.5 s: two waves of 2 s and 0.5 s to spare (a
child that took more than one of them at its first fetch leaves the rest waiting a whole nap
or more). Times are the tasks' own (CLOCK_MONOTONIC is one clock for every process), and
measured from the fourth start, so that children booting at different times do not count.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forkq import Forkq

pytestmark = pytest.mark.timeout(120)

NAP = 2.0
SLACK = 0.5  # for fetching, storing results and a loaded machine

TIMED_NAP = """

@app.task
def timed_nap(seconds):
    started = time.monotonic()
    time.sleep(seconds)
    return [os.getpid(), started, time.monotonic()]
"""


@pytest.fixture
def broker_url(every_broker_url: str) -> Iterator[str]:
    yield every_broker_url


def test_a_backlog_of_long_tasks_waits_behind_none_while_a_child_is_free(
    client: Forkq, start_worker: Any, e2e_dir: Path
) -> None:
    with open(e2e_dir / "e2eapp.py", "a") as source:
        source.write(TIMED_NAP)
    results = [client.send_task("e2eapp.timed_nap", (NAP,)) for _ in range(8)]
    worker = start_worker("-c", "4")  # every child's first fetch finds the whole backlog
    runs = [result.get(timeout=60) for result in results]
    starts = sorted(started for _, started, _ in runs)
    last_end = max(ended for _, _, ended in runs)
    # Four at once, then the other four as soon as the first four end: a child that took
    # more than one at its first fetch (4 did) starts its last one 3 naps after the fourth.
    assert starts[-1] - starts[3] <= NAP + SLACK, (starts, worker.log())
    assert last_end - starts[3] <= 2 * NAP + SLACK, (starts, last_end, worker.log())
    assert len({pid for pid, _, _ in runs}) == 4
