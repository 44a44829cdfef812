"""Dead letters: the oldest the broker keeps (DEAD_READ at most), of every queue or one,
each with its queue, when it failed, the task and id it claims (read as `forkq dead list`
reads them: leniently, and only where the app's secret checks the signature), the reason and
the start of its body; and the forms that requeue or delete one, or all of those shown."""

from __future__ import annotations

from typing import Any

from forkq.dashboard.feed import Feed
from forkq.dashboard.views.common import Links, ago, clock
from forkq.engines.contract import DeadLetter
from forkq.envelope import Codec
from forkq.printable import printable

BODY_SHOWN = 300  # characters of a body shown


def dead_letters(feed: Feed, links: Links, now: float, queue: str = "") -> dict[str, Any]:
    letters = feed.dead.get(queue)
    shown = letters or []
    oldest = f"the oldest {feed.dead_read}" if len(shown) >= feed.dead_read else "all"
    return {
        "trouble": feed.trouble,
        "reading": "" if letters is not None else "Reading the dead letters…",
        "count": f"{len(shown)} shown: {oldest}" + (f" of queue {queue}" if queue else ""),
        "queues": ", ".join(sorted({d.queue for d in shown})),
        "empty": "No dead letters." if letters == [] else "",
        "letters": [_letter(d, feed.app.codec, links, now) for d in shown],
    }


def _letter(letter: DeadLetter, codec: Codec, links: Links, now: float) -> dict[str, str]:
    names = codec.trusted_names(letter.body)
    body = letter.body[: BODY_SHOWN * 4].decode(errors="replace")
    return {
        "receipt": letter.receipt,
        "queue": letter.queue or "?",
        "failed": f"{ago(letter.failed_at, now)} ({clock(letter.failed_at)})"
        if letter.failed_at > 0
        else "unknown time",
        "task": names.task or "?",
        "task_id": names.id or "",
        "task_url": links.task(names.id) if names.id else "",
        "reason": letter.reason,
        "body": printable(body[:BODY_SHOWN]) + ("…" if len(body) > BODY_SHOWN else ""),
    }
