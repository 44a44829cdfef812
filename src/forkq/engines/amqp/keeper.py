"""The thread that answers AMQP heartbeats on a child's connection while its main thread runs
a task, so that RabbitMQ does not drop the connection (and redeliver what it held) during a
long task. See `forkq.engines.amqp.broker`."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable

KEEPER_INTERVAL = 1.0  # seconds between the keeper thread's looks at the connection


class Keeper:
    """A thread that, once a second, tends a connection nobody else is using (it only takes
    the lock when free: while the main thread runs a task): `tend` sends kept acks and
    answers AMQP heartbeats."""

    def __init__(self, lock: threading.RLock, tend: Callable[[], None]) -> None:
        self._lock = lock
        self._tend = tend
        self._stop = threading.Event()
        self._held_for_fork = False
        self._thread = threading.Thread(target=self._run, name="forkq-amqp-keeper", daemon=True)
        self._thread.start()
        # A child forking a task's process (--max-tasks-per-child 1) must not copy this
        # thread's connection state halfway through a send: the lock is held across fork.
        self._owner = os.getpid()  # in a forked copy the thread does not exist
        ref = weakref.ref(self)
        os.register_at_fork(
            before=lambda: _call_if_alive(ref, Keeper._hold_for_fork),
            after_in_parent=lambda: _call_if_alive(ref, Keeper._let_go_after_fork),
            after_in_child=lambda: _call_if_alive(ref, Keeper._let_go_after_fork),
        )

    def _hold_for_fork(self) -> None:
        if os.getpid() == self._owner and not self._stop.is_set():
            self._held_for_fork = self._lock.acquire()

    def _let_go_after_fork(self) -> None:
        """In the parent, and in the forked copy too (the forking thread is its one thread
        and owns the copied lock): released, so nothing there waits on it forever."""
        if self._held_for_fork:
            self._held_for_fork = False
            self._lock.release()

    def _run(self) -> None:
        while not self._stop.wait(KEEPER_INTERVAL):
            if self._lock.acquire(blocking=False):
                try:
                    self._tend()
                except Exception:  # the main thread sees the same failure on its next call
                    pass
                finally:
                    self._lock.release()

    def stop(self) -> None:
        self._stop.set()


def _call_if_alive(ref: weakref.ref[Keeper], method: Callable[[Keeper], None]) -> None:
    keeper = ref()
    if keeper is not None:
        method(keeper)
