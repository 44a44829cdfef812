"""The master's `revoke` command: tell the children, and end the ones running a revoked task
when asked to.

    {"command": "revoke", "args": {"ids": [...], "terminate": false, "signal": "SIGTERM"}}
      ─► Bulletin.post_revoke: every child reads the revoked ids again before its next task
      ─► terminate: each child whose slot runs one of the ids ─► Bulletin.post_terminating
                    ─► Verdict(pid, signal, Ending.REVOKED, task id) ─► Master.enforce (kill)

The ids are stored by whoever revoked them (the result backend: `forkq.revocation`) before any
master hears of them; the bulletin only says "read them again", so the master never touches
the backend here. A child sent SIGTERM for a terminated task ends that task at once
(`forkq.pool.child.Terminated`); SIGKILL ends the child outright. Signals that would not end a
child are refused (`terminating_signal`). When the child is reaped, the worker layer stores
the task's REVOKED record and gives its message back, to be discarded by the next child that
fetches it (`forkq.worker.supervision`).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from forkq.pool.bulletin import TERMINATING_AT_ONCE, Bulletin
from forkq.pool.control import BadArguments
from forkq.pool.scoreboard import Scoreboard, SlotState, slot_task_id
from forkq.pool.signals import CHILD_IGNORES
from forkq.pool.watch import Ending, Verdict

log = logging.getLogger("forkq.master")

MAX_IDS = 200  # ids in one request: at MAX_ID characters each, within a request's 64 KiB
MAX_ID = 255  # characters of one

# Signals that would leave a child running, and why: those it ignores or uses, and those whose
# default action is not to end a process.
_SPARED: dict[signal.Signals, str] = {
    **{s: "children ignore it" for s in CHILD_IGNORES},
    signal.SIGUSR1: "a child writes its stacks on it",
    signal.SIGALRM: "a child's soft time limit uses it",
    signal.SIGCHLD: "it does not end a process",
    signal.SIGCONT: "it does not end a process",
    signal.SIGURG: "it does not end a process",
    signal.SIGWINCH: "it does not end a process",
    signal.SIGPIPE: "Python ignores it",
    signal.SIGXFSZ: "Python ignores it",
    signal.SIGSTOP: "it pauses a process rather than ending it",
    signal.SIGTSTP: "it pauses a process rather than ending it",
}


class RevokingPool(Protocol):
    """What the command needs of the master."""

    title: str
    scoreboard: Scoreboard
    bulletin: Bulletin

    def child_slots(self) -> Sequence[tuple[int, int]]:
        """(index, pid) of every live child."""
        ...

    def enforce(self, verdicts: list[Verdict]) -> None:
        """Carry the verdicts out: signal each child, remembering why."""
        ...


def terminating_signal(name: object) -> signal.Signals:
    """The signal a terminate sends, from its name ("SIGTERM", "term", "9"); BadArguments for
    one that does not exist or would not end a child."""
    text = str(name).strip().upper()
    try:
        signum = signal.Signals(int(text)) if text.isdigit() else signal.Signals[_sig(text)]
    except (KeyError, ValueError):
        raise BadArguments(f"unknown signal {str(name)[:40]!r}: give a name like SIGTERM") from None
    why = _SPARED.get(signum)
    if why is not None:
        raise BadArguments(
            f"{signum.name} would not end the child running the task ({why}): use SIGTERM "
            "(the task is interrupted, then its child leaves) or SIGKILL"
        )
    return signum


def _sig(text: str) -> str:
    return text if text.startswith("SIG") else f"SIG{text}"


def revoke(pool: RevokingPool, args: Mapping[str, Any]) -> dict[str, Any]:
    """Handle one `revoke` request (see the module's docstring)."""
    ids = _ids(args.get("ids"))
    terminate = args.get("terminate", False)
    if not isinstance(terminate, bool):
        raise BadArguments("terminate must be true or false")
    signum = terminating_signal(args.get("signal", "SIGTERM"))
    heard = pool.bulletin.post_revoke()
    ended = _terminate(pool, set(ids), signum) if terminate else []
    log.info(
        "revoke heard: %d task id(s) (%s)%s",
        len(ids),
        ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else ""),
        f"; terminating {len(ended)} running" if terminate else "",
    )
    return {"pid": os.getpid(), "title": pool.title, "revokes": heard, "terminated": ended}


def _ids(raw: object) -> list[str]:
    if not isinstance(raw, list) or not raw or len(raw) > MAX_IDS:
        raise BadArguments(f"ids must be a list of 1 to {MAX_IDS} task ids")
    if not all(isinstance(i, str) and 0 < len(i) <= MAX_ID for i in raw):
        raise BadArguments(f"each task id must be a string of 1 to {MAX_ID} characters")
    return list(raw)


def _terminate(pool: RevokingPool, ids: set[str], signum: signal.Signals) -> list[dict[str, Any]]:
    """Signal each child running one of `ids`; what was ended, for the reply."""
    verdicts: list[Verdict] = []
    ended: list[dict[str, Any]] = []
    wanted = {slot_task_id(i): i for i in ids}  # as a slot holds an id: its first bytes
    for index, pid in pool.child_slots():
        seen = pool.scoreboard.read(index)
        task_id = wanted.get(seen.task_id) if seen.pid == pid else None
        if task_id is not None and seen.state == SlotState.BUSY:
            if len(verdicts) == TERMINATING_AT_ONCE:
                log.warning("revoke: %s not terminated: %d at most at once", task_id, len(verdicts))
                continue
            pool.bulletin.post_terminating(task_id)  # before the signal lands
            detail = f"{seen.task_name}[{task_id}]"
            verdicts.append(Verdict(pid, signum, Ending.REVOKED, seen.task_id, detail))
            ended.append({"pid": pid, "task_id": task_id, "signal": signum.name})
    pool.enforce(verdicts)
    return ended
