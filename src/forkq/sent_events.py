"""A client's `sent` events (setting `events_sent`): one `add_events` per publish call, after
the messages went to the broker.

    app.publish / publish_many ─► the time ─► broker.publish ─► SentEvents.sent(messages, at)
        ─► add_events (a failure: logged once per outage, counted in `dropped`, never raised;
           no attempt then for a back-off of BACKOFF_MIN to BACKOFF_MAX seconds, the events
           meanwhile dropped and counted, so a store that is down costs a publish no wait)

`at` is taken before the publish: a child may receive the message at once, and a task's
events order by their times.

The events go to the app's result backend (its connection), or with `events_url` to a
connection of this process's own, opened on first use and let go (not closed under the
parent) in a forked child.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence

from forkq.engines.contract import ResultBackend
from forkq.engines.registry import open_backend
from forkq.envelope import Message
from forkq.events import TaskEvent, TaskEventKind, encode
from forkq.events.workflow import membership
from forkq.exceptions import BackendError, ConfigurationError
from forkq.outage import Outage
from forkq.settings import Settings

log = logging.getLogger("forkq.events")

BACKOFF_MIN, BACKOFF_MAX = 1.0, 5.0  # seconds without an attempt after a failed one


class SentEvents:
    def __init__(self) -> None:
        self.dropped = 0  # events that could not be kept, in this process
        self._own: ResultBackend | None = None  # the events_url store, when there is one
        self._own_url, self._own_pid = "", 0
        self._outage = Outage("events store (sent events)", log)
        self._not_before = 0.0  # no attempt before this (monotonic): a back-off

    def sent(
        self,
        settings: Settings,
        backend: Callable[[], ResultBackend],
        messages: Sequence[Message],
        at: float,
    ) -> None:
        """A `sent` event for each message, sent at `at` (Unix time), in one `add_events`."""
        if time.monotonic() < self._not_before:
            self.dropped += len(messages)
            return
        bodies = [encode(_sent(m, at)) for m in messages]
        try:
            self._store(settings, backend).add_events(bodies, settings.events_kept)
        except (BackendError, OSError, ConfigurationError) as exc:  # a bad events_url too
            wait = min(BACKOFF_MAX, max(BACKOFF_MIN, self._outage.failed(exc)))
            self._not_before = time.monotonic() + wait
            self.dropped += len(bodies)
        else:
            self._outage.succeeded()

    def _store(self, settings: Settings, backend: Callable[[], ResultBackend]) -> ResultBackend:
        url = settings.events_url
        if url is None:
            return backend()
        if self._own is not None and (self._own_pid != os.getpid() or self._own_url != url):
            if self._own_pid != os.getpid():
                self._own.abandon()  # the parent's connection: not closed under it
            else:
                self._own.close()
            self._own = None
        if self._own is None:
            self._own, self._own_url, self._own_pid = open_backend(url), url, os.getpid()
        return self._own

    def close(self) -> None:
        if self._own is not None and self._own_pid == os.getpid():
            self._own.close()
        self._own = None


def _sent(message: Message, at: float) -> TaskEvent:
    member = membership(message.flow)
    return TaskEvent(
        TaskEventKind.SENT, message.id, message.task, message.queue, at,
        group=member.group, group_size=member.group_size, group_body=member.group_body,
    )  # fmt: skip
