"""Dead letters on RabbitMQ for `forkq.engines.amqp.broker`: one queue per prefix, `P.dead`, whose
messages carry the original queue, the reason and the time in headers. Listing reads them
without acking on a channel of its own; closing that channel puts back, in order, whatever
was not acked (`forkq dead requeue` and `purge` ack the chosen ones)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel

from forkq.engines.amqp.publish import Publisher
from forkq.engines.amqp.reading import UnreadableProperties, priority_of
from forkq.engines.amqp.topology import Topology
from forkq.engines.contract import LAST_MOMENT, DeadLetter

MAX_REASON = 2000  # characters of a reason kept in a letter's headers
LAST_DATE_MS = int(LAST_MOMENT * 1000)  # a failed_at past it is not shown


def publish_dead(publisher: Publisher, queue: str, body: bytes, priority: int, reason: str) -> None:
    """Confirmed, like every publish: the caller acks the original only after this. The
    reason is cut to MAX_REASON characters: headers must fit in one AMQP frame."""
    if len(reason) > MAX_REASON:
        reason = reason[: MAX_REASON - 1] + "…"
    headers = {
        "x-forkq-queue": queue,
        "x-forkq-reason": reason,
        "x-forkq-failed-at": int(time.time() * 1000),
    }
    properties = pika.BasicProperties(
        delivery_mode=pika.DeliveryMode.Persistent,
        priority=priority,
        headers=headers,
        message_id=uuid.uuid4().hex,
    )
    publisher.declare_dead()
    publisher.channel().basic_publish("", publisher.topology.dead, body, properties)


@contextmanager
def browsing_dead(
    publisher: Publisher, connection: Callable[[], Any]
) -> Iterator[tuple[BlockingChannel, list[tuple[int, DeadLetter]]]]:
    """Every dead letter with its delivery tag, and the channel to ack the chosen ones on."""
    dead = publisher.topology.dead
    publisher.declare_dead()
    browser: BlockingChannel = connection().channel()
    letters: list[tuple[int, DeadLetter]] = []
    try:
        while True:
            method, properties, body = browser.basic_get(dead)
            if method is None:
                break
            letter = letter_from(publisher.topology, properties, body)
            letters.append((method.delivery_tag, letter))
        yield browser, letters
    finally:
        if browser.is_open:
            browser.close()


def list_dead(
    publisher: Publisher, connection: Callable[[], Any], queue: str | None, limit: int
) -> list[DeadLetter]:
    with browsing_dead(publisher, connection) as (_, letters):
        chosen = [letter for _, letter in letters if queue in (None, letter.queue)]
    return chosen[:limit]


def take_dead(
    publisher: Publisher,
    connection: Callable[[], Any],
    chosen: Callable[[DeadLetter], bool],
    *,
    republish: bool,
) -> int:
    """Ack the chosen letters, each published back to its queue first when `republish`. A
    letter whose queue is not known (published straight to P.dead by someone else) has
    nowhere to go back to: it stays, for `purge_dead` to delete."""
    taken = 0
    with browsing_dead(publisher, connection) as (browser, letters):
        for tag, letter in letters:
            if chosen(letter) and (letter.queue or not republish):
                if republish:
                    publisher.send(letter.queue, letter.body, letter.priority, {}, 0.0)
                browser.basic_ack(tag)
                taken += 1
    return taken


def letter_from(topology: Topology, properties: pika.BasicProperties, body: bytes) -> DeadLetter:
    """Read as forkq writes letters, and defensively: anyone may publish to P.dead, and
    RabbitMQ itself moves there what a work queue rejects (x-death says from where)."""
    headers = properties.headers if isinstance(properties.headers, dict) else {}
    deaths = headers.get("x-death")
    death = deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else {}
    queue = text(headers.get("x-forkq-queue"))
    if not queue and text(death.get("queue")).startswith(f"{topology.prefix}."):
        queue = topology.name_of(text(death.get("queue")))
    if not queue or len(topology.queue(queue).encode()) > 255:
        queue = ""  # not a queue forkq could publish to
    if isinstance(properties, UnreadableProperties):
        reason = properties.reason
    elif not (reason := text(headers.get("x-forkq-reason"))):
        why = text(death.get("reason"))
        reason = f"dead-lettered by RabbitMQ ({why})" if why else "dead-lettered by RabbitMQ"
    failed_at = headers.get("x-forkq-failed-at")
    if not (isinstance(failed_at, int) and 0 <= failed_at <= LAST_DATE_MS):
        failed_at = 0
    return DeadLetter(
        text(properties.message_id),
        queue,
        body,
        reason,
        failed_at / 1000,
        priority_of(properties),
    )


def text(value: object) -> str:
    """A header's text: str as it is, bytes decoded, anything else (absent, a number, a
    table) empty."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else ""
