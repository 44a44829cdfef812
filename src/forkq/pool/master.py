"""The master: one single-threaded loop that forks, watches and replaces children.

    signals ──► handlers do nothing ──► wake-up fd ──┐
                                                     ▼
    timers (monotonic) ──► selector.select(timeout) ──► handle signals ──► reap ──► manage
                                                                             │
    children exit ──► SIGCHLD ──► wake-up fd                  spawn missing ◄┘ (with backoff)

Signal handlers only let the signal write its number to the wake-up pipe; the loop reads the
numbers and acts on them. There are no threads here and nothing sleeps to poll: the loop
blocks in `select` until a signal arrives or the next timer is due.
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from setproctitle import setproctitle

from forkq.pool.child import EXIT_BOOT_FAILED, ChildProgram, child_main
from forkq.pool.scoreboard import Scoreboard, SlotState, SlotView
from forkq.pool.watch import TIME_LIMIT, Verdict, Watch

log = logging.getLogger("forkq.master")

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD)
EXIT_CHILDREN_CANNOT_BOOT = 4  # forkq.exitcodes.CHILDREN_CANNOT_BOOT
_BOOT_FAILURES_BEFORE_GIVING_UP = 5
_MAX_RESPAWN_DELAY = 10.0
_HEALTHY_LIFETIME = 1.0  # seconds; an idle child dying sooner makes the master back off


@dataclass(frozen=True)
class PoolConfig:
    concurrency: int
    title: str = "forkq"
    shutdown_timeout: float = 60.0  # warm shutdown: how long running tasks may still take
    tick_interval: float = 1.0  # how often Supervision.tick runs
    scan_interval: float = 0.25  # how often the scoreboard is read for time limits
    max_memory_per_child: int | None = None  # bytes of USS; over it, a child is recycled


@dataclass(frozen=True)
class ChildExit:
    index: int
    pid: int
    status: int  # as returned by waitpid
    last_seen: SlotView  # the child's slot just before it went away
    reason: str = ""  # why the master ended it: watch.TIME_LIMIT, watch.MEMORY, or ""

    @property
    def description(self) -> str:
        if os.WIFSIGNALED(self.status):
            return f"killed by {signal.Signals(os.WTERMSIG(self.status)).name}"
        return f"exit code {os.waitstatus_to_exitcode(self.status)}"

    @property
    def boot_failed(self) -> bool:
        return os.WIFEXITED(self.status) and os.WEXITSTATUS(self.status) == EXIT_BOOT_FAILED


class Supervision(Protocol):
    """What the worker layer does in the master."""

    def child_exited(self, exit: ChildExit) -> None:
        """A child is gone: make whatever it held available again."""
        ...

    def tick(self) -> None:
        """Runs every `tick_interval` seconds (heartbeats)."""
        ...


@dataclass
class _Child:
    index: int
    pid: int
    spawned_at: float


class Master:
    def __init__(self, program: ChildProgram, supervision: Supervision, config: PoolConfig):
        self.program = program
        self.supervision = supervision
        self.config = config
        self.children: dict[int, _Child] = {}  # by pid
        self.scoreboard = Scoreboard(capacity=config.concurrency)
        self.stopping = False
        self.exit_code = 0
        self._shutdown_deadline: float | None = None
        self._boot_failures = 0  # children in a row that failed before taking work
        self._quick_crashes = 0  # children in a row that died idle, soon after starting
        self._respawn_at = 0.0
        self._next_tick = 0.0
        self._next_scan = 0.0
        self.watch = Watch(config.max_memory_per_child)
        self._verdicts: dict[int, Verdict] = {}  # by pid: what the master did to it and why
        self._int_count = 0
        self._wake_fds: tuple[int, int] = (-1, -1)  # the signal wake-up pipe, made by run()
        self._actions: dict[int, Callable[[], None]] = {
            signal.SIGTERM: self.stop_warm,
            signal.SIGINT: self._on_interrupt,
            signal.SIGQUIT: self.stop_cold,
            signal.SIGCHLD: lambda: None,  # reaping happens on every loop turn
        }

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        wake_r, wake_w = self._install_signals()
        self._wake_fds = (wake_r, wake_w)
        selector = selectors.DefaultSelector()
        selector.register(wake_r, selectors.EVENT_READ)
        self._set_title()
        log.info("master %d starting %d children", os.getpid(), self.config.concurrency)
        try:
            while self.children or not self.stopping:
                self.manage()
                selector.select(self._timeout())
                self._handle_signals(wake_r)
                self.reap()
                self._run_timers()
        finally:
            selector.close()
            signal.set_wakeup_fd(-1)
            for fd in self._wake_fds:
                os.close(fd)
        log.info("master %d exiting with code %d", os.getpid(), self.exit_code)
        return self.exit_code

    def _install_signals(self) -> tuple[int, int]:
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, _record_only)
        return wake_r, wake_w

    def _handle_signals(self, wake_r: int) -> None:
        try:
            received = os.read(wake_r, 4096)
        except BlockingIOError:
            return
        for signum in received:
            action = self._actions.get(signum)
            if action is not None:
                action()

    def _timeout(self) -> float:
        now = time.monotonic()
        due = [self._next_tick, self._next_scan]
        if self._shutdown_deadline is not None:
            due.append(self._shutdown_deadline)
        if not self.stopping and len(self.children) < self.config.concurrency:
            due.append(self._respawn_at)
        return max(0.0, min(due) - now)

    def _run_timers(self) -> None:
        now = time.monotonic()
        if now >= self._next_tick:
            self._next_tick = now + self.config.tick_interval
            try:
                self.supervision.tick()
            except Exception:  # a failed heartbeat must not take the pool down with it
                log.exception("supervision tick failed; retrying next tick")
        if now >= self._next_scan:
            self._next_scan = now + self.config.scan_interval
            self.enforce(self.watch.check(self._unjudged(), self.scoreboard))
        if self._shutdown_deadline is not None and now >= self._shutdown_deadline:
            log.warning("shutdown timeout: killing %d busy children", len(self.children))
            self._shutdown_deadline = None
            self.kill_all(signal.SIGKILL)

    # -- verbs ------------------------------------------------------------------------------

    def manage(self) -> None:
        """Spawn children until the pool is full, unless stopping or backing off."""
        if self.stopping or time.monotonic() < self._respawn_at:
            return
        used = {child.index for child in self.children.values()}
        for index in range(self.config.concurrency):
            if index not in used:
                try:
                    self.spawn(index)
                except OSError as exc:  # EAGAIN/ENOMEM: out of processes or memory for now
                    log.error("cannot fork child %d: %s", index, exc)
                    self._quick_crashes += 1
                    self._back_off("could not be forked")
                    return

    def spawn(self, index: int) -> None:
        self.scoreboard.clear(index)
        slot = self.scoreboard.writer(index)
        master_pid = os.getpid()
        # Block our signals across fork so the child cannot run the master's handlers.
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                child_main(
                    self.program,
                    index,
                    slot,
                    master_pid,
                    HANDLED_SIGNALS,
                    self._wake_fds,
                    self.config.title,
                )
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        self.children[pid] = _Child(index, pid, time.monotonic())
        log.debug("spawned child %d (pid %d)", index, pid)
        self._set_title()

    def reap(self) -> None:
        """Collect every exited child and tell the worker layer about it."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue
            seen = self.scoreboard.read(child.index)
            verdict = self._verdicts.pop(pid, None)
            # A time limit names one task; if the child moved on before the kill landed,
            # the kill is an ordinary death for the task it was running instead.
            applies = verdict is not None and verdict.task_id in ("", seen.task_id)
            reason = verdict.reason if verdict is not None and applies else ""
            exit = ChildExit(child.index, pid, status, seen, reason)
            self._on_child_exit(exit, time.monotonic() - child.spawned_at)

    def _on_child_exit(self, exit: ChildExit, lifetime: float) -> None:
        clean = os.WIFEXITED(exit.status) and os.WEXITSTATUS(exit.status) == 0
        if not (clean and self.stopping):
            level = logging.INFO if clean else logging.WARNING
            log.log(level, "child %d (pid %d) %s", exit.index, exit.pid, exit.description)
        try:
            self.supervision.child_exited(exit)
        except Exception:
            log.exception("could not release what child %d held", exit.index)
        state = exit.last_seen.state
        if exit.boot_failed or (not clean and state == SlotState.STARTING):
            self._boot_failures += 1
            self._back_off("failed while booting")
        elif not clean and state != SlotState.BUSY and lifetime < _HEALTHY_LIFETIME:
            # Not a task's fault (that is the redelivery limit's business) and not booting:
            # the environment is failing, e.g. the broker. Slow down, but do not give up.
            self._quick_crashes += 1
            self._back_off("crashed soon after starting")
        else:
            self._boot_failures = self._quick_crashes = 0
        self._set_title()

    def _back_off(self, why: str) -> None:
        if self._boot_failures >= _BOOT_FAILURES_BEFORE_GIVING_UP:
            log.error("children cannot boot: %d failed in a row; stopping", self._boot_failures)
            self.exit_code = EXIT_CHILDREN_CANNOT_BOOT
            self.stop_cold()
            return
        failures = self._boot_failures + self._quick_crashes
        delay = min(_MAX_RESPAWN_DELAY, 0.1 * 2**failures)
        self._respawn_at = time.monotonic() + delay
        log.warning("child %s; next spawn in %.1fs", why, delay)

    def stop_warm(self) -> None:
        """TERM: stop taking work, let running tasks finish, then exit."""
        if self.stopping:
            return
        log.info("warm shutdown: waiting up to %gs for running tasks", self.config.shutdown_timeout)
        self.stopping = True
        self._shutdown_deadline = time.monotonic() + self.config.shutdown_timeout
        self.kill_all(signal.SIGTERM)

    def stop_cold(self) -> None:
        """QUIT: kill the children now; what they held is released for redelivery."""
        log.info("cold shutdown: killing %d children", len(self.children))
        self.stopping = True
        self._shutdown_deadline = None
        self.kill_all(signal.SIGKILL)

    def _on_interrupt(self) -> None:
        self._int_count += 1
        if self._int_count == 1:
            self.stop_warm()
        else:
            self.stop_cold()

    def _unjudged(self) -> list[tuple[int, int]]:
        return [(c.index, c.pid) for c in self.children.values() if c.pid not in self._verdicts]

    def enforce(self, verdicts: list[Verdict]) -> None:
        for verdict in verdicts:
            child = self.children[verdict.pid]
            if verdict.reason == TIME_LIMIT:
                log.warning(
                    "child %d (pid %d) ran %s past its hard time limit: killing it",
                    child.index,
                    child.pid,
                    verdict.detail,
                )
            else:
                log.info("recycling child %d (pid %d): %s", child.index, child.pid, verdict.detail)
            self._verdicts[verdict.pid] = verdict
            self.kill(verdict.pid, verdict.signum)

    def kill_all(self, signum: int) -> None:
        for pid in list(self.children):
            self.kill(pid, signum)

    def kill(self, pid: int, signum: int) -> None:
        try:
            os.kill(pid, signum)
        except OSError as exc:
            if exc.errno != errno.ESRCH:  # already gone: reap will see it
                raise

    def _set_title(self) -> None:
        setproctitle(f"{self.config.title} master [{len(self.children)} children]")


def _record_only(signum: int, frame: object) -> None:
    """The wake-up fd already carries the signal number; nothing else happens here."""
