"""The master: one single-threaded loop that forks, watches and replaces children.

    signals ─► handlers do nothing ─► wake-up pipe ─┐
    child exits ─► pidfds (SIGCHLD without them) ───┤
    children's stdout/stderr ─► one pipe each ──────┼─► selector.select(timeout)
    forkq inspect ─► control socket ────────────────┤        │
    GET /metrics, /healthz, /readyz ─► HTTP ────────┤        │
    HUP's check of the new code: pipe, pidfd ───────┤        │
    timers (monotonic): tick, scan, back-off, ──────┘        ▼
    shutdown, check and HTTP deadlines          relay lines, answer, handle signals,
                                                reap, run timers, manage (spawn/retire)

Nothing here sleeps to poll and there are no threads: the loop blocks in `select` until one
of its sources has something, or the next timer is due.
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence

import msgspec
from setproctitle import setproctitle

from forkq import exitcodes
from forkq.logs import Origin, relay
from forkq.pool import inspection
from forkq.pool.bulletin import Bulletin
from forkq.pool.child import ChildProgram
from forkq.pool.companion import Companion, CompanionProgram, Companions
from forkq.pool.config import PoolConfig, Supervision
from forkq.pool.control import ControlServer
from forkq.pool.exits import ChildExit, RespawnPolicy
from forkq.pool.http_endpoint import HttpEndpoint
from forkq.pool.metrics_port import MetricsPort, Unserved
from forkq.pool.output import ChildOutput
from forkq.pool.reload import ReloadCheck
from forkq.pool.scoreboard import Scoreboard, SlotState, slot_capacity
from forkq.pool.signals import SignalPipe, pidfds_work
from forkq.pool.spawn import fork_child
from forkq.pool.watch import Ending, Verdict, Watch

log = logging.getLogger("forkq.master")


class _Child(msgspec.Struct):
    index: int
    pid: int
    spawned_at: float
    output: ChildOutput  # the pipe carrying the child's stdout and stderr
    pidfd: int | None = None  # readable when the child exits (Linux 5.3+)


_EXITED = "exited"  # selector data of a child's pidfd: the loop reaps after every wake-up


class Master:
    def __init__(
        self,
        program: ChildProgram,
        supervision: Supervision,
        config: PoolConfig,
        private_fds: Sequence[int] = (),  # the caller's that no child may keep (a pidfile's)
        companions: Sequence[CompanionProgram] = (),  # kept running beside the children
        bulletin: Bulletin | None = None,  # what the master posts for its children to read
        metrics: MetricsPort | None = None,  # --metrics-port: served by this loop
    ):
        self.program = program
        self.bulletin = bulletin or Bulletin()
        self.metrics = metrics or Unserved()
        self.private_fds = list(private_fds)
        self.supervision = supervision
        self.config = config
        self.children: dict[int, _Child] = {}  # by pid
        self.concurrency = config.concurrency  # TTIN/TTOU and control change it
        self.title = config.title
        self.hostname = config.hostname
        self.started_at = time.time()
        self.restarts: Counter[int] = Counter()  # children replaced, by slot index
        self.scoreboard = Scoreboard(capacity=slot_capacity(config.concurrency))
        self.reload_requested = False
        self.stopping = False
        self.exit_code = 0
        self._shutdown_deadline: float | None = None
        self.respawn = RespawnPolicy()
        self._next_tick = 0.0
        self._next_scan = 0.0
        self.watch = Watch(config.max_memory_per_child)
        self._verdicts: dict[int, Verdict] = {}  # by pid: what the master did to it and why
        self._int_count = 0
        self._signals: SignalPipe | None = None  # made by run()
        self._selector = selectors.DefaultSelector()
        self._pidfds = pidfds_work()
        self.companions = Companions(companions, self._selector, self._pidfds, config.title)
        self._control: ControlServer | None = None  # made by run()
        self.reload_check = ReloadCheck(
            config.reload_check, self._selector, self._pidfds, self._reload_now
        )
        self._actions: dict[int, Callable[[], None]] = {
            signal.SIGTERM: self.stop_warm,
            signal.SIGINT: self._on_interrupt,
            signal.SIGQUIT: self.stop_cold,
            signal.SIGHUP: self.reload,
            signal.SIGTTIN: lambda: self.resize(1, "TTIN"),
            signal.SIGTTOU: lambda: self.resize(-1, "TTOU"),
            signal.SIGUSR1: self.dump_stacks,
            signal.SIGCHLD: lambda: None,  # reaping happens on every loop turn
        }

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        self._control = ControlServer(
            inspection.handlers(self, self.config.commands), self._selector
        )
        self._signals = signals = SignalPipe(catch_sigchld=not self._pidfds)
        self._selector.register(signals, selectors.EVENT_READ)
        self.metrics.start(self, self._selector)
        self._set_title()
        log.info("master %d starting %d children", os.getpid(), self.concurrency)
        try:
            while self.children or self.companions.running or not self.stopping:
                self.manage()
                for key, _ in self._selector.select(self._timeout()):
                    if isinstance(key.data, _Child):
                        self.relay_output(key.data)
                    elif isinstance(key.data, ControlServer):
                        key.data.on_readable(key.fileobj)
                    elif isinstance(key.data, ReloadCheck):
                        key.data.on_readable()
                    elif isinstance(key.data, Companion):
                        self.companions.relay(key.data)
                    elif isinstance(key.data, HttpEndpoint):
                        key.data.on_ready(key.fileobj)
                for signum in signals.received():
                    self._actions.get(signum, lambda: None)()
                self.reap()
                self._run_timers()
        finally:
            self.reload_check.close()
            self.metrics.close()
            self._selector.close()
            self._control.close()
            signals.close()
        log.info("master %d exiting with code %d", os.getpid(), self.exit_code)
        return self.exit_code

    def child_slots(self) -> list[tuple[int, int]]:
        return [(child.index, child.pid) for child in self.children.values()]

    def _timeout(self) -> float:
        now = time.monotonic()
        due = [self._next_tick, self._next_scan]
        http = self.metrics.deadline
        for deadline in (self._shutdown_deadline, self.reload_check.deadline, http):
            if deadline is not None:
                due.append(deadline)
        if not self.stopping and len(self.children) < self.concurrency:
            due.append(self.respawn.not_before)
        if not self.stopping and (companion_due := self.companions.next_spawn()) is not None:
            due.append(companion_due)
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
        self.reload_check.expire(now)
        self.metrics.expire(now)
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
        self.companions.spawn_due(self._own_fds())
        self.retire_excess()
        while (
            not self.stopping
            and len(self.children) < self.concurrency
            and time.monotonic() >= self.respawn.not_before
        ):
            used = {child.index for child in self.children.values()}
            index = min(set(range(self.scoreboard.capacity)) - used)
            try:
                self.spawn(index)
            except OSError as exc:  # EAGAIN/ENOMEM: out of processes or memory for now
                log.error("cannot fork child %d: %s; %s", index, exc, self.respawn.fork_failed())

    def retire_excess(self) -> None:
        """After a shrink: TERM idle children until the pool fits; a busy one is never touched."""
        excess = len(self.children) - len(self._verdicts) - self.concurrency
        if excess <= 0:
            return
        staying = [c for c in self.children.values() if c.pid not in self._verdicts]
        idle = [
            c
            for c in sorted(staying, key=lambda c: -c.index)
            if self.scoreboard.read(c.index).state == SlotState.IDLE
        ]
        self.enforce([Verdict(c.pid, signal.SIGTERM, Ending.SHRINK) for c in idle[:excess]])

    def resize(self, by: int, source: str) -> None:
        """`by` children more (TTIN: 1) or fewer (TTOU: -1), from one to the scoreboard's
        capacity; children over the size are retired when idle (`retire_excess`)."""
        wanted = max(1, min(self.concurrency + by, self.scoreboard.capacity))
        if self.stopping or wanted == self.concurrency:
            if by > 0:
                log.warning("%s: cannot grow past %d children", source, self.scoreboard.capacity)
            return
        change = "grows" if wanted > self.concurrency else "shrinks"
        self.concurrency = wanted
        log.info("%s: pool %s to %d children", source, change, wanted)

    def dump_stacks(self) -> None:
        """USR1: the master's stack to the log, and every child's (via faulthandler)."""
        log.warning("USR1: master %d stack:\n%s", os.getpid(), "".join(traceback.format_stack()))
        self.kill_all(signal.SIGUSR1)

    def reload(self) -> None:
        """HUP: once the new code is known to load (pool/reload.py), let running tasks
        finish; then `run()` returns and the worker re-executes itself in this same process
        (same PID and pidfile), loading the new code."""
        if not self.stopping:
            self.reload_check.request()

    def _reload_now(self) -> None:
        if self.stopping:
            return
        log.info("HUP: reloading once running tasks finish")
        self.reload_requested = True
        self.stop_warm()

    def spawn(self, index: int) -> None:
        self.scoreboard.clear(index)
        slot = self.scoreboard.writer(index)
        pid, out_r = fork_child(self.program, index, slot, self.config.title, self._own_fds())
        child = _Child(index, pid, time.monotonic(), ChildOutput(out_r))
        self.children[pid] = child
        self._selector.register(out_r, selectors.EVENT_READ, child)
        if self._pidfds:
            child.pidfd = os.pidfd_open(pid)
            self._selector.register(child.pidfd, selectors.EVENT_READ, _EXITED)
        log.debug("spawned child %d (pid %d)", index, pid)
        self._set_title()

    def _own_fds(self) -> list[int]:
        """The master's descriptors, which a new child closes (pool/spawn.py)."""
        own = [*(self._signals.fds if self._signals else ()), *self.reload_check.fds]
        own += self.private_fds + self.companions.fds
        own += self.metrics.fds
        if self._control is not None:
            own += [self._control.listener.fileno(), self._control.directory.fd]
        for other in self.children.values():
            own += [other.output.fd] + ([other.pidfd] if other.pidfd is not None else [])
        return own

    def relay_output(self, child: _Child) -> None:
        """Log the whole lines the child has written, tagged with what it is running."""
        lines = child.output.drain()
        if child.output.closed:
            self._selector.unregister(child.output.fd)
        if lines:
            seen = self.scoreboard.read(child.index)
            busy = seen.pid == child.pid and seen.state == SlotState.BUSY
            task = (seen.task_id, seen.task_name) if busy else ("", "")
            origin = Origin(f"child {child.index}", child.pid, *task)
            for line in lines:
                relay(line, origin)

    def _close_output(self, child: _Child) -> None:
        """At reap: what is left in the pipe, then close it (a grandchild that inherited the
        write end may keep it open; its later output is not waited for)."""
        if not child.output.closed:
            self.relay_output(child)
        if not child.output.closed:
            self._selector.unregister(child.output.fd)
            for line in child.output.leftover():
                relay(line, Origin(f"child {child.index}", child.pid))
        os.close(child.output.fd)

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
                if self.companions.reaped(pid, status, self.stopping) is None:
                    self.reload_check.reaped(pid, status)
                continue
            self._close_output(child)
            if child.pidfd is not None:
                self._selector.unregister(child.pidfd)
                os.close(child.pidfd)
            seen = self.scoreboard.read_final(child.index)
            verdict = self._verdicts.pop(pid, None)
            # A time limit names one task; if the child moved on before the kill landed,
            # the kill is an ordinary death for the task it was running instead.
            applies = verdict is not None and verdict.task_id in ("", seen.task_id)
            reason = verdict.reason if verdict is not None and applies else None
            exit = ChildExit(child.index, pid, status, seen, reason)
            self.metrics.child_reaped(exit, self.stopping)  # before the slot is forked again
            self._on_child_exit(exit, time.monotonic() - child.spawned_at)

    def _on_child_exit(self, exit: ChildExit, lifetime: float) -> None:
        if not self.stopping and exit.reason is not Ending.SHRINK:  # a retired one stays gone
            self.restarts[exit.index] += 1
        if not (exit.clean and self.stopping):
            level = logging.INFO if exit.clean else logging.WARNING
            log.log(level, "child %d (pid %d) %s", exit.index, exit.pid, exit.description)
        try:
            self.supervision.child_exited(exit)
        except Exception:
            log.exception("could not release what child %d held", exit.index)
        delayed = self.respawn.child_exited(exit, lifetime)
        if self.respawn.gave_up:
            log.error(
                "children cannot boot: %d failed in a row; stopping", self.respawn.boot_failures
            )
            self.exit_code = exitcodes.CHILDREN_CANNOT_BOOT
            self.stop_cold()
        elif delayed:
            log.warning(delayed)
        self._set_title()

    def stop_warm(self) -> None:
        """TERM: stop taking work, let running tasks finish, then exit."""
        if self.stopping:
            return
        log.info(
            "warm shutdown: waiting up to %gs for running tasks (a second Ctrl-C: cold shutdown)",
            self.config.shutdown_timeout,
        )
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
        """The children the watch still judges: not those already being ended, except for a
        revoked task (a task that survives its SIGTERM still has time and memory limits)."""
        return [
            (c.index, c.pid)
            for c in self.children.values()
            if (v := self._verdicts.get(c.pid)) is None or v.reason is Ending.REVOKED
        ]

    def enforce(self, verdicts: list[Verdict]) -> None:
        for verdict in verdicts:
            index = self.children[verdict.pid].index
            log.log(*verdict.announcement(index))
            standing = self._verdicts[verdict.pid] = verdict.after(self._verdicts.get(verdict.pid))
            try:
                self.supervision.child_ending(standing, self.scoreboard.read(index))
            except Exception:
                log.exception("could not settle child %d's task before ending it", index)
            self.kill(verdict.pid, verdict.signum)

    def kill_all(self, signum: int) -> None:
        for pid in list(self.children):
            self.kill(pid, signum)
        self.companions.kill(signum)

    def kill(self, pid: int, signum: int) -> None:
        try:
            os.kill(pid, signum)
        except OSError as exc:
            if exc.errno != errno.ESRCH:  # already gone: reap will see it
                raise

    def _set_title(self) -> None:
        setproctitle(f"{self.config.title} master [{len(self.children)} children]")
