"""Property: whatever anyone writes straight into a Redis queue's streams and delayed set,
among valid tasks, on one running worker (4 children, a plain URL with only a prefix): every
valid task completes, every bad entry ends in the queue's dead letters with a reason, no
child dies, and the queue drains to nothing."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import redis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from forkq import Forkq
from forkq.engines.redis.broker import RedisBroker
from forkq.engines.redis.keys import QueueKeys
from tests.bodies import TOO_DEEP, nested_too_deeply
from tests.conftest import REDIS, engine_url, redis_test_url, wait_until_serving

pytestmark = pytest.mark.timeout(120)


class Valid(msgspec.Struct, frozen=True):
    x: int
    priority: int
    countdown: float  # 0: straight into its band; more: through the delayed set


class RawEntry(msgspec.Struct, frozen=True):
    band: int
    fields: dict[bytes, bytes]


class RawMember(msgspec.Struct, frozen=True):
    tail: bytes  # after a unique marker: "<marker><tail>" is the member
    score: float  # due already


# Numbers as anyone might write them: huge, negative, NaN, infinite, not decimal.
NUMBERS = st.one_of(
    st.integers(-(10**40), 10**40).map(lambda n: str(n).encode()),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: repr(f).encode()),
    st.sampled_from([b"nan", b"-nan", b"inf", b"-inf", b"1e400", b"0x10", b" 5 ", b"", b"9" * 400]),
)
# Arbitrary bytes, non-UTF-8 included, and tasks nested too deeply to decode.
BYTES = st.one_of(
    st.binary(max_size=64),
    st.integers(TOO_DEEP, 40_000).map(lambda depth: nested_too_deeply("deep", depth=depth)),
)
FIELD_NAMES = st.one_of(st.sampled_from([b"b", b"d", b"p"]), st.binary(min_size=1, max_size=8))
ENTRIES = st.builds(
    RawEntry,
    band=st.integers(0, 3),
    fields=st.dictionaries(FIELD_NAMES, st.one_of(BYTES, NUMBERS), min_size=1, max_size=5),
)
MEMBERS = st.builds(
    RawMember,
    tail=st.one_of(
        BYTES,
        st.tuples(NUMBERS, NUMBERS, BYTES).map(lambda t: b"|" + b"|".join(t)),  # the shape
    ),
    score=st.one_of(st.just(float("-inf")), st.floats(-1e300, 1.7e12)),
)
VALID = st.builds(
    Valid,
    x=st.integers(0, 1000),
    priority=st.integers(0, 9),
    countdown=st.sampled_from([0.0, 0.0, 0.05]),
)
PLANS = st.lists(st.one_of(VALID, ENTRIES, MEMBERS), min_size=1, max_size=20)


@pytest.fixture
def broker_url() -> Iterator[str]:
    url = redis_test_url()
    assert "timeout" not in url  # as users write it
    yield from engine_url("redis", url)


@pytest.mark.slow
def test_hostile_entries_among_valid_tasks_on_one_worker(client: Forkq, start_worker: Any) -> None:
    worker = start_worker("-c", "4", "-l", "warning")
    wait_until_serving(client, worker)
    children = worker.all_children(4)
    assert len(children) == 4
    assert isinstance(client.broker, RedisBroker)
    queue = client.settings.default_queue
    keys = QueueKeys(client.broker.prefix, queue)
    raw = redis.Redis.from_url(REDIS, protocol=2)
    markers = itertools.count()
    last_dead = "0-0"

    @settings(  # no shrinking: examples share the worker and its queue, so a failure can
        max_examples=12,  # leave the queue in a state that fails the next examples too
        phases=[Phase.explicit, Phase.generate],
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(PLANS)
    def hostile_among_valid(plan: list[Valid | RawEntry | RawMember]) -> None:
        nonlocal last_dead
        results, expected, bad = [], [], 0
        for item in plan:
            if isinstance(item, Valid):
                options = {"priority": item.priority, "countdown": item.countdown or None}
                results.append(client.send_task("e2eapp.add", (item.x, 1), **options))
                expected.append(item.x + 1)
            elif isinstance(item, RawEntry):
                raw.xadd(keys.band(item.band), item.fields)  # type: ignore[arg-type]
                bad += 1
            else:
                member = b"m%d" % next(markers) + item.tail
                raw.zadd(keys.delayed, {member: item.score})
                bad += 1
        assert [r.get(timeout=20) for r in results] == expected
        letters, last_dead = _await_dead_letters(raw, keys.dead, last_dead, bad, timeout=20)
        assert all(fields.get(b"r") for fields in letters), letters
        assert client.broker.size(queue) == 0

    hostile_among_valid()
    assert sorted(worker.children()) == children  # no child died and was replaced
    log = worker.log()
    for sign in ("released", "exited", "Traceback", "unreachable", "failed", "ERROR"):
        assert sign not in log, log
    raw.close()


def _await_dead_letters(
    raw: redis.Redis, key: str, after: str, count: int, timeout: float
) -> tuple[list[dict[bytes, bytes]], str]:
    """The next `count` dead letters after entry id `after`, waited for in XREAD BLOCK;
    fails if more come, or fewer within `timeout`."""
    letters: list[dict[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    while True:
        new: Any = raw.xrange(key, min=f"({after}")
        for entry_id, fields in new:
            letters.append(fields)
            after = entry_id.decode()
        assert len(letters) <= count, f"more dead letters than bad entries: {letters}"
        if len(letters) == count:
            return letters, after
        left = deadline - time.monotonic()
        assert left > 0, f"{len(letters)} of {count} bad entries dead-lettered: {letters}"
        raw.xread({key: after}, block=max(1, int(min(left, 1.0) * 1000)))
