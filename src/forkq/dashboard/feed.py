"""What the dashboard knows, kept current: the event history read from the store at start
(up to the kept cap, so a restart loses nothing the store keeps), then the new events read
every `POLL_EVERY` seconds by one asyncio task; and the queues' depths (and the dead letters
while a page shows them), read every `DEPTHS_EVERY` seconds or at once when a page asks for
what is not read yet. Pages and streams read it; `changed` wakes the streams.

Every call on the app, its broker or the event store runs in one thread of its own
(`Feed.call`): connections are not shared across threads, and the event loop never blocks.
The dashboard process never forks, so a thread is safe here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from forkq.app import Forkq
from forkq.engines.contract import DeadLetter, EventPage, QueueDepth, ResultBackend, StoredResult
from forkq.engines.registry import open_backend
from forkq.events.codec import decode
from forkq.events.groups import GroupIndex
from forkq.events.queue_rates import QueueRates
from forkq.events.series import MemorySeries, OutcomeSeries
from forkq.events.state import EventsState
from forkq.events.tasks import TaskIndex
from forkq.events.values import Event, TaskEvent
from forkq.exceptions import ForkqError
from forkq.worker.schedules_now import SchedulesNow, schedules_now

log = logging.getLogger("forkq.dashboard")

POLL_EVERY = 0.25  # seconds between reads of the event store once caught up
RETRY_EVERY = 2.0  # seconds between reads while the store is unreachable
DEPTHS_EVERY = 2.0  # seconds between reads of the queues' depths
QUEUES_READ = 50  # queues whose depth is read, at most (event bodies may name any number)
ASKED_FOR = 60.0  # seconds a queue a page asked for by name is read after the last ask
DEAD_READ = 500  # dead letters read per filter, the oldest first
DEAD_FILTERS = 16  # queue filters of the dead letters read at once, the least asked dropped
PAGE = 5_000  # events read at once
RECENT = 200  # task events EventsState keeps (the task index keeps the rest)

T = TypeVar("T")


class Feed:
    def __init__(self, app: Forkq, events_url: str) -> None:
        self.app, self.events_url = app, events_url
        self.state = EventsState(recent=RECENT)
        self.tasks = TaskIndex()
        self.outcomes = OutcomeSeries()
        self.rates = QueueRates()
        self.groups = GroupIndex()
        self.memory = MemorySeries()
        self.depths: dict[str, QueueDepth] = {}
        self._asked = Asked(QUEUES_READ)  # queues pages asked for by name
        self._poll_now = asyncio.Event()  # a page asked for a queue not read yet
        # Dead letters by the queue a page filters them by ("": every queue), read while a
        # page shows them; a filter absent: not read (yet).
        self.dead: dict[str, list[DeadLetter]] = {}
        self.dead_read = DEAD_READ  # letters read per filter
        self._dead_asked = Asked(DEAD_FILTERS)  # queue filters of the dead letters shown
        self.schedules: SchedulesNow | None = None  # None: not read (no page asked for them)
        self._schedules_asked = -ASKED_FOR
        self.trouble = ""  # why the store or the broker cannot be read now; "" when it can
        self.version = 0  # bumped on every change
        self.read = 0  # events read from the store
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()  # set when the server stops: the streams end
        self._loop: asyncio.AbstractEventLoop | None = None
        self._offset: str | None = None
        self._store: ResultBackend | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="forkq-dashboard-io")
        self._tasks: list[asyncio.Task[None]] = []

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` in the feed's one I/O thread."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def start(self) -> None:
        """Read the history (folded in the I/O thread: nothing reads the state yet), then
        tail the store and poll the depths."""
        self._loop = asyncio.get_running_loop()
        await self.call(self._load_history)
        self._tasks = [asyncio.create_task(self._tail()), asyncio.create_task(self._depths())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.call(self._close)
        self._thread.shutdown(wait=True)

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def close_streams(self) -> None:
        """End every stream (from any thread, or a signal handler): the server can stop
        without waiting for browsers that keep their streams open."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._closing.set)

    async def changed_since(self, version: int, timeout: float) -> int:
        """The version once it differs from `version`, or after `timeout` seconds, or at
        once when closing."""
        if self.version == version and not self.closing:
            waits = [asyncio.ensure_future(e.wait()) for e in (self._changed, self._closing)]
            try:
                await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
        return self.version

    def _bump(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    def _open(self) -> ResultBackend:
        if self._store is None:
            self._store = open_backend(self.events_url)
        return self._store

    def _load_history(self) -> None:
        try:
            while True:
                page = self._read()
                self._fold_page(page)
                if len(page.events) < PAGE:
                    return
        except ForkqError as exc:
            self.trouble = f"the event store cannot be read: {exc}"
            log.warning("%s", self.trouble)

    def _read(self) -> EventPage:
        page = self._open().read_events(self._offset, PAGE)
        self._offset = page.next or None
        return page

    def _fold_page(self, page: EventPage) -> None:
        self.read += len(page.events)
        for stored in page.events:
            event = decode(stored.body)
            if event is None:
                self.state.skipped += 1
            else:
                self._fold(event)

    def _fold(self, event: Event) -> None:
        self.state.fold(event)
        if isinstance(event, TaskEvent):
            self.tasks.fold(event)
            self.outcomes.fold(event)
            self.rates.fold(event)
            self.groups.fold(event)
        else:
            self.memory.fold(event)

    async def _tail(self) -> None:
        while True:
            try:
                page = await self.call(self._read)
                if page.events:
                    self._fold_page(page)
                    self._bump()
            except ForkqError as exc:
                self._say(f"the event store cannot be read: {exc}")
                await asyncio.sleep(RETRY_EVERY)
                continue
            except Exception:  # a bug must not end the tail for good: said, and tried again
                log.exception("reading the events failed")
                self._say("reading the events failed: see the dashboard's log")
                await asyncio.sleep(RETRY_EVERY)
                continue
            if self.trouble:
                self._say("")
            if len(page.events) < PAGE:
                await asyncio.sleep(POLL_EVERY)

    async def _depths(self) -> None:
        """The queues' depths, and the dead letters while a page shows them."""
        while True:
            queues = self.queue_names()
            asked = time.monotonic() - ASKED_FOR
            dead, schedules = self._dead_asked.live(), self._schedules_asked > asked
            try:
                read = await self.call(self._read_broker, queues, dead, schedules)
            except ForkqError as exc:
                self._say(f"the broker cannot be read: {exc}")
            except Exception:  # a bug must not end the polling for good: said, and tried again
                log.exception("reading the broker failed")
                self._say("reading the broker failed: see the dashboard's log")
            else:
                if read != (self.depths, self.dead, self.schedules):
                    self.depths, self.dead, self.schedules = read
                    self._bump()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._poll_now.wait(), DEPTHS_EVERY)
            self._poll_now.clear()

    def queue_names(self) -> list[str]:
        """The queues shown: the default one, those workers consume, those a page asked for
        by name in the last ASKED_FOR seconds, then those task events name; QUEUES_READ at
        most."""
        first = {q for w in self.state.workers.values() for q in w.queues}
        first |= {self.app.settings.default_queue, *self._asked.live()}
        named = [q for q in self.rates.queues if q not in first]
        return (sorted(first) + named)[:QUEUES_READ]

    def ask(self, queue: str) -> None:
        """A page shows `queue`: its depth is read from now on, for ASKED_FOR seconds after
        the last ask; at once if it is not read yet."""
        if not self._asked.ask(queue) and queue not in self.depths:
            self._poll_now.set()

    def ask_dead(self, queue: str) -> None:
        """A page shows the dead letters of `queue` ("": of every queue): they are read from
        now on, for ASKED_FOR seconds after the last ask; at once if they are not read yet."""
        self._dead_asked.ask(queue)
        if queue not in self.dead:
            self._poll_now.set()

    def ask_schedules(self) -> None:
        """A page shows the schedules: read as the dead letters are (`ask_dead`)."""
        self._schedules_asked = time.monotonic()
        if self.schedules is None:
            self._poll_now.set()

    async def reread_dead(self) -> None:
        """The dead letters of every filter shown read again now (an action changed them)."""
        self.dead = await self.call(self._read_dead, self._dead_asked.live())
        self._bump()

    def stored(self, task_id: str) -> StoredResult | None:
        """The task's result record (call it in the I/O thread: `call(feed.stored, id)`)."""
        return self.app.backend.get(task_id)

    def _read_broker(
        self, queues: list[str], dead: list[str], schedules: bool
    ) -> tuple[dict[str, QueueDepth], dict[str, list[DeadLetter]], SchedulesNow | None]:
        depths = {queue: self.app.broker.depth(queue) for queue in queues}
        letters = self._read_dead(dead)
        return depths, letters, schedules_now(self.app, now()) if schedules else None

    def _read_dead(self, filters: list[str]) -> dict[str, list[DeadLetter]]:
        broker = self.app.broker
        return {f: broker.dead_letters(f or None, self.dead_read) for f in filters}

    def _say(self, trouble: str) -> None:
        if trouble != self.trouble:
            self.trouble = trouble
            if trouble:
                log.warning("%s", trouble)
            self._bump()

    def _close(self) -> None:
        if self._store is not None:
            self._store.close()
        self.app.close()


class Asked:
    """Names pages asked for, each kept ASKED_FOR seconds after its last ask; at most `most`,
    the least recently asked going first."""

    def __init__(self, most: int) -> None:
        self.most = most
        self._at: dict[str, float] = {}  # name: its last ask (monotonic), the newest last

    def ask(self, name: str) -> bool:
        """Keep `name` (again); whether it was kept already."""
        known = self._at.pop(name, None) is not None
        self._at[name] = time.monotonic()
        while len(self._at) > self.most:
            del self._at[next(iter(self._at))]
        return known

    def live(self) -> list[str]:
        """The names asked for in the last ASKED_FOR seconds (the others forgotten)."""
        since = time.monotonic() - ASKED_FOR
        self._at = {name: at for name, at in self._at.items() if at >= since}
        return list(self._at)


def now() -> float:
    return time.time()
