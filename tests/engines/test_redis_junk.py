"""Junk written straight into a Redis queue's keys (ZADD into the delayed set, XADD into a band
or dead-letter stream): each such entry ends in the queue's dead letters with a readable
reason, or runs when it can be read, and the rest of the queue keeps flowing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from forkq import Forkq
from forkq.engines.contract import Consumer, ConsumerSession, outgoing
from forkq.engines.redis.broker import RedisBroker
from forkq.engines.redis.keys import QueueKeys
from forkq.engines.registry import open_backend, open_broker
from tests.conftest import REDIS, engine_url, redis_test_url

pytestmark = pytest.mark.timeout(60)

HOLDER = Consumer("w", "w/0")


@pytest.fixture
def broker_url() -> Iterator[str]:
    """A plain URL, as users write it: only a prefix."""
    yield from engine_url("redis", redis_test_url())


@pytest.fixture
def broker(broker_url: str) -> Iterator[RedisBroker]:
    opened = open_broker(broker_url)
    assert isinstance(opened, RedisBroker)
    opened.purge("q")  # its streams and group exist, its name is known
    yield opened
    opened.close()


@pytest.fixture
def raw() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS)
    yield client
    client.close()


def _holder(broker: RedisBroker) -> ConsumerSession:
    return broker.consumer(HOLDER, open_backend("memory://redis-junk"))


def _keys(broker: RedisBroker, queue: str = "q") -> QueueKeys:
    return QueueKeys(broker.prefix, queue)


def _reasons(broker: RedisBroker, queue: str = "q") -> dict[bytes, str]:
    return {d.body: d.reason for d in broker.dead_letters(queue)}


def test_junk_delayed_members_are_dead_lettered_and_the_rest_moves(
    broker: RedisBroker, raw: redis.Redis
) -> None:
    """Before, one member without three '|' made fetch.lua fail on every call."""
    unsplit = "not <nonce>|<priority>|<starts>|<body>: "
    junk = {  # member: (the dead letter's body, its reason after "malformed delayed entry: ")
        b"no-pipes-at-all": (b"no-pipes-at-all", unsplit + '"no-pipes-at-all"'),
        b"n|3": (b"n|3", unsplit + '"n|3"'),
        b"\xff\xfe|0": (b"\xff\xfe|0", unsplit + '"??|0"'),
        b"n|abc|0|p-word": (b"p-word", 'priority "abc" is not an integer'),
        b"n|nan|0|p-nan": (b"p-nan", 'priority "nan" is not an integer'),
        b"n|inf|0|p-inf": (b"p-inf", 'priority "inf" is not an integer'),
        b"n|0x9|0|p-hex": (b"p-hex", 'priority "0x9" is not an integer'),
        b"n|3.5|0|p-float": (b"p-float", 'priority "3.5" is not an integer'),
        b"n|3|0|": (b"n|3|0|", "empty body"),
    }
    runnable = {
        b"n|-5|0|negative": (0, 1),  # priority clamped to 0-9, starts junk -> 0 (count 1)
        b"n|99999999999999999999999|0|huge": (9, 1),
        b"n|4|zz|junk-starts": (4, 1),
        b"n|4|-7|negative-starts": (4, 1),
        b"n|4|1e99|float-starts": (4, 1),
        b"n|4|2|started-twice": (4, 3),
    }
    raw.zadd(_keys(broker).delayed, {m: 1 for m in [*junk, *runnable]})
    broker.publish([outgoing("q", b"published")])

    got = _holder(broker).fetch(["q"], 100, 0)

    expected = {m.rsplit(b"|", 1)[1]: (p, n) for m, (p, n) in runnable.items()}
    assert {d.body: d.delivery_count for d in got} == {
        **{body: n for body, (_, n) in expected.items()},
        b"published": 1,
    }
    assert got[0].body == b"huge"  # priority 9 comes first
    assert raw.zcard(_keys(broker).delayed) == 0
    letters = broker.dead_letters("q")
    assert sorted((d.body, d.reason) for d in letters) == sorted(
        (body, f"malformed delayed entry: {why}") for body, why in junk.values()
    )
    assert all(d.priority == 0 and d.failed_at > time.time() - 60 for d in letters)


def test_stream_entries_without_a_body_are_dead_lettered_not_delivered(
    broker: RedisBroker, raw: redis.Redis
) -> None:
    k = _keys(broker)
    raw.xadd(k.band(1), {"x": "1", "y": b"\xff"})
    raw.xadd(k.band(1), {"b": "", "p": "4"})
    raw.xadd(k.band(1), {"b": "nan-starts", "d": "nan", "p": "junk"})
    raw.xadd(k.band(1), {"b": "inf-starts", "d": "1e400"})
    raw.xadd(k.band(1), {"b": "started", "d": "5"})

    got = _holder(broker).fetch(["q"], 100, 0)

    assert {d.body: d.delivery_count for d in got} == {
        b"nan-starts": 1,
        b"inf-starts": 1,
        b"started": 6,
    }
    reasons = sorted(d.reason for d in broker.dead_letters("q"))
    assert reasons == [
        "malformed stream entry: empty body (field b)",
        'malformed stream entry: no body (field b); its fields: "x", "y"',
    ]
    assert raw.xlen(k.band(1)) == 3  # the two without a body are deleted


def test_an_entry_without_a_body_met_by_the_blocking_read_is_dead_lettered(
    broker: RedisBroker, raw: redis.Redis
) -> None:
    """The blocking XREADGROUP delivers to Python what it reads, not through fetch.lua."""
    k = _keys(broker)
    got: list[Any] = []
    holder = _holder(broker)
    fetching = threading.Thread(target=lambda: got.extend(holder.fetch(["q"], 10, 20)))
    fetching.start()
    deadline = time.monotonic() + 10
    while not any(c["cmd"] == "xreadgroup" for c in raw.client_list()):
        assert time.monotonic() < deadline, "the fetch never blocked"
    raw.xadd(k.band(0), {"not-b": "x"})
    deadline = time.monotonic() + 10
    while not raw.xlen(k.dead):  # dead-lettered, and the fetch goes on waiting
        assert time.monotonic() < deadline, "the entry without a body was not dead-lettered"
    raw.xadd(k.band(0), {"b": "valid"})
    fetching.join(timeout=20)
    assert [d.body for d in got] == [b"valid"]
    assert [d.reason for d in broker.dead_letters("q")] == [
        'malformed stream entry: no body (field b); its fields: "not-b"'
    ]


def test_release_and_requeue_read_junk_fields(broker: RedisBroker, raw: redis.Redis) -> None:
    k = _keys(broker)
    raw.xadd(k.band(1), {"b": "r", "d": "nan", "p": "0x9"})
    holder = _holder(broker)
    [first] = holder.fetch(["q"], 1, 0)
    holder.release([first.receipt])  # it was running: started once more
    [again] = holder.fetch(["q"], 1, 0)
    assert (again.body, again.delivery_count) == (b"r", 2)  # nan + 1, the nan read as 0
    holder.requeue(again, delay=60)
    [member] = raw.zrange(k.delayed, 0, -1)
    nonce, priority, starts, body = member.split(b"|")
    assert (priority, starts, body) == (b"3", b"1", b"r")  # junk priority: its band's lowest
    assert len(nonce) == 16  # random, not the band


def test_equal_messages_requeued_with_a_delay_stay_two(
    broker: RedisBroker, raw: redis.Redis
) -> None:
    """Each delayed member gets a nonce of its own: before, settle.lua took the band for it,
    and the second of two equal messages replaced the first."""
    k = _keys(broker)
    for _ in range(2):
        raw.xadd(k.band(0), {"b": "same", "d": "0", "p": "0"})
    holder = _holder(broker)
    for delivery in holder.fetch(["q"], 2, 0):
        holder.requeue(delivery, delay=60)
    assert raw.zcard(k.delayed) == 2


def test_dead_letters_with_junk_or_missing_fields_are_listed_and_requeued(
    broker: RedisBroker, raw: redis.Redis
) -> None:
    k = _keys(broker)
    raw.xadd(k.dead, {"b": "no reason, no time"})
    raw.xadd(k.dead, {"r": b"\xff bad", "t": "nan", "p": "99"})
    raw.xadd(k.dead, {"b": "far", "t": "1" + "0" * 25, "p": "-3", "r": "why"})
    raw.xadd(k.dead, {"b": "farther", "t": "1" + "0" * 400, "r": "why"})
    letters = {d.body: d for d in broker.dead_letters("q")}
    assert letters[b"no reason, no time"].reason == "(no reason stored)"
    assert letters[b""].reason == "\ufffd bad"
    assert (letters[b""].failed_at, letters[b""].priority) == (0, 9)
    assert letters[b"far"].priority == 0
    assert letters[b"far"].failed_at == 253_402_300_799  # 9999-12-31, not an overflow
    assert letters[b"farther"].failed_at == 0  # not a number of 30 digits or fewer: junk
    assert broker.requeue_dead() == 4
    assert broker.dead_letters("q") == []
    got = _holder(broker).fetch(["q"], 10, 0)
    assert sorted(d.body for d in got) == [b"far", b"farther", b"no reason, no time"]
    assert [d.reason for d in broker.dead_letters("q")] == [  # no body: dead again, said why
        "malformed stream entry: empty body (field b)"
    ]


def test_a_junk_delayed_member_among_tasks_to_a_real_worker(
    client: Forkq, start_worker: Any, raw: redis.Redis
) -> None:
    queue = client.settings.default_queue
    assert isinstance(client.broker, RedisBroker)
    raw.zadd(_keys(client.broker, queue).delayed, {b"no-pipes-at-all": 1, b"n|x|0|y": 2})
    results = [client.send_task("e2eapp.add", (i, 1)) for i in range(50)]
    worker = start_worker("-c", "2", "-l", "warning")
    assert [r.get(timeout=30) for r in results] == [i + 1 for i in range(50)]
    reasons = sorted(d.reason for d in client.broker.dead_letters(queue))
    assert reasons == [
        'malformed delayed entry: not <nonce>|<priority>|<starts>|<body>: "no-pipes-at-all"',
        'malformed delayed entry: priority "x" is not an integer',
    ]
    assert "unreachable" not in worker.log()
    assert "Error" not in worker.log()
