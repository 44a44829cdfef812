"""Which workers consume a queue, on RabbitMQ (`Broker.consumers_seen`): at each heartbeat, a
worker's master publishes one message per queue it consumes to `P.seen.Q` (body: its id;
header x-forkq-seen: when, in ms), which keeps the latest SEEN_KEPT for a day. Asking browses
them without acking on a channel of its own (closing it puts them back) and keeps each
worker's latest."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pika

from forkq.engines.amqp.publish import Publisher
from forkq.engines.contract import Sighting


def beat(publisher: Publisher, worker: str, queues: Sequence[str]) -> None:
    headers = {"x-forkq-seen": int(time.time() * 1000)}
    properties = pika.BasicProperties(headers=headers, delivery_mode=1)  # transient
    for queue in queues:
        name = publisher.topology.seen_queue(queue)
        publisher.declare(name, publisher.topology.seen_arguments())
        publisher.channel().basic_publish("", name, worker.encode(), properties)


def seen(
    publisher: Publisher, connection: Callable[[], Any], queue: str, within: float
) -> list[Sighting]:
    name = publisher.topology.seen_queue(queue)
    publisher.declare(name, publisher.topology.seen_arguments())
    since_ms, latest = int((time.time() - within) * 1000), dict[str, int]()
    browser = connection().channel()
    try:
        while True:
            method, properties, body = browser.basic_get(name)
            if method is None:
                break
            headers = properties.headers if isinstance(properties.headers, dict) else {}
            at = headers.get("x-forkq-seen")
            worker = body.decode(errors="replace")
            if isinstance(at, int) and at >= since_ms and at > latest.get(worker, 0):
                latest[worker] = at
    finally:
        if browser.is_open:
            browser.close()
    return sorted((Sighting(w, ms / 1000) for w, ms in latest.items()), key=lambda s: -s.seen_at)
