"""A child's queues follow what the master posts on the bulletin (`ConsumedQueues`)."""

from __future__ import annotations

from forkq.pool.bulletin import Bulletin
from forkq.worker.consume import ConsumedQueues


def test_a_child_takes_up_the_posted_queues_and_says_when_one_was_dropped() -> None:
    bulletin = Bulletin(("default",))
    queues = ConsumedQueues(("default",), bulletin.reader())
    assert (queues.changed(), queues.now) == (False, ("default",))
    bulletin.post_queues(("default", "extra"))
    assert (queues.changed(), queues.now) == (False, ("default", "extra"))  # only added
    assert (queues.changed(), queues.now) == (False, ("default", "extra"))  # read once
    bulletin.post_queues(("extra",))
    assert (queues.changed(), queues.now) == (True, ("extra",))  # what it holds goes back
    assert ConsumedQueues(("default",), bulletin.reader()).now == ("extra",)  # a later child
    assert ConsumedQueues(("default",), None).now == ("default",)  # no bulletin: its own
    bulletin.close()
