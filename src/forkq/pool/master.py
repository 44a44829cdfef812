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
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from setproctitle import setproctitle

from forkq.logs import Origin, relay
from forkq.pool.child import EXIT_BOOT_FAILED, ChildProgram, child_main
from forkq.pool.output import LineBuffer, read_available
from forkq.pool.scoreboard import Scoreboard, SlotState, SlotView
from forkq.pool.signals import MASTER_SIGNALS, SignalPipe
from forkq.pool.watch import SHRINK, TIME_LIMIT, Verdict, Watch

log = logging.getLogger("forkq.master")

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
    output_fd: int  # read end of the pipe carrying the child's stdout and stderr
    lines: LineBuffer = field(default_factory=LineBuffer)
    output_closed: bool = False


class Master:
    def __init__(self, program: ChildProgram, supervision: Supervision, config: PoolConfig):
        self.program = program
        self.supervision = supervision
        self.config = config
        self.children: dict[int, _Child] = {}  # by pid
        self.concurrency = config.concurrency  # TTIN/TTOU change it
        self.scoreboard = Scoreboard(capacity=max(4 * config.concurrency, config.concurrency + 16))
        self.reload_requested = False
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
        self._signals: SignalPipe | None = None  # made by run()
        self._selector = selectors.DefaultSelector()
        self._actions: dict[int, Callable[[], None]] = {
            signal.SIGTERM: self.stop_warm,
            signal.SIGINT: self._on_interrupt,
            signal.SIGQUIT: self.stop_cold,
            signal.SIGHUP: self.reload,
            signal.SIGTTIN: self.grow,
            signal.SIGTTOU: self.shrink,
            signal.SIGUSR1: self.dump_stacks,
            signal.SIGCHLD: lambda: None,  # reaping happens on every loop turn
        }

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        self._signals = signals = SignalPipe()
        self._selector.register(signals, selectors.EVENT_READ)
        self._set_title()
        log.info("master %d starting %d children", os.getpid(), self.concurrency)
        try:
            while self.children or not self.stopping:
                self.manage()
                for key, _ in self._selector.select(self._timeout()):
                    if isinstance(key.data, _Child):
                        self.relay_output(key.data)
                for signum in signals.received():
                    self._actions.get(signum, lambda: None)()
                self.reap()
                self._run_timers()
        finally:
            self._selector.close()
            signals.close()
        log.info("master %d exiting with code %d", os.getpid(), self.exit_code)
        return self.exit_code

    def _timeout(self) -> float:
        now = time.monotonic()
        due = [self._next_tick, self._next_scan]
        if self._shutdown_deadline is not None:
            due.append(self._shutdown_deadline)
        if not self.stopping and len(self.children) < self.concurrency:
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
        """Retire idle children over the pool size; spawn until the pool is full, unless
        stopping or backing off."""
        if self.stopping:
            return
        self.retire_excess()
        while (
            not self.stopping
            and len(self.children) < self.concurrency
            and time.monotonic() >= self._respawn_at
        ):
            used = {child.index for child in self.children.values()}
            index = min(set(range(self.scoreboard.capacity)) - used)
            try:
                self.spawn(index)
            except OSError as exc:  # EAGAIN/ENOMEM: out of processes or memory for now
                log.error("cannot fork child %d: %s", index, exc)
                self._quick_crashes += 1
                self._back_off("could not be forked")

    def retire_excess(self) -> None:
        """After TTOU: TERM idle children until the pool fits; a busy one is never touched."""
        excess = len(self.children) - len(self._verdicts) - self.concurrency
        if excess <= 0:
            return
        staying = [c for c in self.children.values() if c.pid not in self._verdicts]
        idle = [
            c
            for c in sorted(staying, key=lambda c: -c.index)
            if self.scoreboard.read(c.index).state == SlotState.IDLE
        ]
        self.enforce([Verdict(c.pid, signal.SIGTERM, SHRINK) for c in idle[:excess]])

    def grow(self) -> None:
        """TTIN: one child more."""
        if self.stopping or self.concurrency >= self.scoreboard.capacity:
            log.warning("cannot grow past %d children", self.scoreboard.capacity)
            return
        self.concurrency += 1
        log.info("TTIN: pool grows to %d children", self.concurrency)

    def shrink(self) -> None:
        """TTOU: one child fewer, retired when idle."""
        if self.stopping or self.concurrency <= 1:
            return
        self.concurrency -= 1
        log.info("TTOU: pool shrinks to %d children", self.concurrency)

    def dump_stacks(self) -> None:
        """USR1: the master's stack to the log, and every child's (via faulthandler)."""
        log.warning("USR1: master %d stack:\n%s", os.getpid(), "".join(traceback.format_stack()))
        self.kill_all(signal.SIGUSR1)

    def reload(self) -> None:
        """HUP: let running tasks finish, then `run()` returns and the worker re-executes
        itself in this same process (same PID and pidfile), loading the new code."""
        if self.stopping:
            return
        log.info("HUP: reloading once running tasks finish")
        self.reload_requested = True
        self.stop_warm()

    def spawn(self, index: int) -> None:
        self.scoreboard.clear(index)
        slot = self.scoreboard.writer(index)
        master_pid = os.getpid()
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        # The child must not keep the master's own pipes open (signals, other children's).
        inherited = [*(self._signals.fds if self._signals else ()), out_r]
        inherited += [child.output_fd for child in self.children.values()]
        for stream in (sys.stdout, sys.stderr):  # or the child would write it out again
            stream.flush()
        # Block our signals across fork so the child cannot run the master's handlers.
        signal.pthread_sigmask(signal.SIG_BLOCK, MASTER_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                child_main(
                    self.program,
                    index,
                    slot,
                    master_pid,
                    MASTER_SIGNALS,
                    inherited,
                    out_w,
                    self.config.title,
                )
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, MASTER_SIGNALS)
            os.close(out_w)
        os.set_blocking(out_r, False)
        child = _Child(index, pid, time.monotonic(), out_r)
        self.children[pid] = child
        self._selector.register(out_r, selectors.EVENT_READ, child)
        log.debug("spawned child %d (pid %d)", index, pid)
        self._set_title()

    def relay_output(self, child: _Child) -> bool:
        """Log the whole lines the child has written; True once its pipe is closed."""
        data, closed = read_available(child.output_fd)
        lines = child.lines.feed(data) + (child.lines.flush() if closed else [])
        if lines:
            seen = self.scoreboard.read(child.index)
            origin = Origin(f"child {child.index}", child.pid)
            if seen.pid == child.pid and seen.state == SlotState.BUSY:
                origin = Origin(origin.label, child.pid, seen.task_id, seen.task_name)
            for line in lines:
                relay(line, origin)
        if closed:
            self._selector.unregister(child.output_fd)
            child.output_closed = True
        return closed

    def _close_output(self, child: _Child) -> None:
        """At reap: what is left in the pipe, then close it (a grandchild that inherited the
        write end may keep it open; its later output is not waited for)."""
        if not child.output_closed and not self.relay_output(child):
            self._selector.unregister(child.output_fd)
            for line in child.lines.flush():
                relay(line, Origin(f"child {child.index}", child.pid))
        os.close(child.output_fd)

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
            self._close_output(child)
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
            if verdict.reason == SHRINK:
                log.info("retiring idle child %d (pid %d)", child.index, child.pid)
            elif verdict.reason == TIME_LIMIT:
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
