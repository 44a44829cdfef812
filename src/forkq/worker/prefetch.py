"""How many messages a child fetches at once.

`--prefetch N` fetches N every time. By default (`auto`) a child fetches about `AHEAD` seconds
of work, judged by how long its recent tasks took:

    tasks of 0.1 ms ─► 16 at a time   (one round trip for many: +7% drain rate against 4)
    tasks of 4 ms   ─► 4              (a process forked per task)
    tasks of 20 ms+ ─► 1              (a child never sits on messages another could run)

A long task thus holds nothing back behind it, which a fixed prefetch does (Celery's users
lower its prefetch multiplier by hand for that). Until it has timed a task, a child fetches
`START` (1): a new child (at start-up, after a recycle or a HUP) knows nothing of the tasks
waiting, and taking more than one could leave them queued behind a long one while its
siblings are free. The first batch timed sets the size (short tasks: 16 from the second
fetch). A child that waited a whole fetch without work forgets what it timed: what comes
after a lull may be of another kind. Sizes move in powers of two so that RabbitMQ's
basic.qos seldom changes. On RabbitMQ quorum queues (`?queue_type=quorum`) a consumer keeps the
limit it started with, so there the size stays at `START`: one message per round trip.
"""

from __future__ import annotations

AHEAD = 0.02  # seconds of work a child fetches ahead
START = 1  # the size before any task has been timed
MOST = 16  # more saves almost nothing: one round trip per 16 tasks is already under 1%
_WEIGHT = 0.3  # of the newest batch in the running mean


class PrefetchSizer:
    def __init__(self, fixed: int | None = None) -> None:
        self.fixed = fixed
        self.seconds_per_task: float | None = None

    def size(self) -> int:
        if self.fixed is not None:
            return self.fixed
        if self.seconds_per_task is None:
            return START
        fits = AHEAD / max(self.seconds_per_task, 1e-9)
        size = 1
        while size * 2 <= min(fits, MOST):
            size *= 2
        return size

    def ran(self, tasks: int, seconds: float) -> None:
        """A batch of `tasks` took `seconds` to run, fetching excluded. No tasks: the fetch
        waited its whole time for work, and the next one starts over at `START`."""
        if tasks <= 0:
            self.seconds_per_task = None
            return
        newest = seconds / tasks
        mean = self.seconds_per_task
        self.seconds_per_task = newest if mean is None else mean + _WEIGHT * (newest - mean)
