"""A client's `sent` events (setting `events_sent`): one `add_events` per publish call, after
the messages went to the broker.

    app.publish / publish_many ─► broker.publish ─► SentEvents.sent(messages) ─► add_events
                                                     (a failure: logged once per outage,
                                                      counted in `dropped`; never raised)

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
from forkq.exceptions import BackendError
from forkq.outage import Outage
from forkq.settings import Settings

log = logging.getLogger("forkq.events")


class SentEvents:
    def __init__(self) -> None:
        self.dropped = 0  # events that could not be kept, in this process
        self._own: ResultBackend | None = None  # the events_url store, when there is one
        self._own_url, self._own_pid = "", 0
        self._outage = Outage("events store (sent events)", log)

    def sent(
        self, settings: Settings, backend: Callable[[], ResultBackend], messages: Sequence[Message]
    ) -> None:
        """A `sent` event for each message, in one `add_events`."""
        now = time.time()
        bodies = [
            encode(TaskEvent(TaskEventKind.SENT, m.id, m.task, m.queue, now)) for m in messages
        ]
        try:
            self._store(settings, backend).add_events(bodies, settings.events_kept)
        except (BackendError, OSError) as exc:
            self._outage.failed(exc)
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
