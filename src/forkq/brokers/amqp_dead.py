"""Dead letters on RabbitMQ for `forkq.brokers.amqp`: one queue per prefix, `P.dead`, whose
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

from forkq.brokers.amqp_publish import Publisher
from forkq.brokers.base import DeadLetter


def publish_dead(
    publisher: Publisher, queue: str, body: bytes, priority: int | None, reason: str
) -> None:
    """Confirmed, like every publish: the caller acks the original only after this."""
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
    dead = publisher.topology.dead
    publisher.declare(dead, publisher.topology.dead_arguments())
    publisher.channel().basic_publish("", dead, body, properties)


@contextmanager
def browsing_dead(
    publisher: Publisher, connection: Callable[[], Any]
) -> Iterator[tuple[BlockingChannel, list[tuple[int, DeadLetter]]]]:
    """Every dead letter with its delivery tag, and the channel to ack the chosen ones on."""
    dead = publisher.topology.dead
    publisher.declare(dead, publisher.topology.dead_arguments())
    browser: BlockingChannel = connection().channel()
    letters: list[tuple[int, DeadLetter]] = []
    try:
        while True:
            method, properties, body = browser.basic_get(dead)
            if method is None:
                break
            letters.append((method.delivery_tag, letter_from(properties, body)))
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
    """Ack the chosen letters, each published back to its queue first when `republish`."""
    taken = 0
    with browsing_dead(publisher, connection) as (browser, letters):
        for tag, letter in letters:
            if chosen(letter):
                if republish:
                    publisher.send(letter.queue, letter.body, letter.priority, {}, 0.0)
                browser.basic_ack(tag)
                taken += 1
    return taken


def letter_from(properties: pika.BasicProperties, body: bytes) -> DeadLetter:
    headers = dict(properties.headers or {})

    def text(key: str) -> str:
        value = headers.get(key, "")
        return value.decode(errors="replace") if isinstance(value, bytes) else str(value)

    try:
        failed_at = int(headers.get("x-forkq-failed-at", 0)) / 1000
    except (TypeError, ValueError):
        failed_at = 0.0
    return DeadLetter(
        properties.message_id or "",
        text("x-forkq-queue"),
        body,
        text("x-forkq-reason") or "rejected by RabbitMQ",
        failed_at,
        properties.priority or 0,
    )
