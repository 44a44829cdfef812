"""Property: whatever anyone with access to the vhost publishes into a forkq queue on
RabbitMQ (any body, any headers of any AMQP field type, any priority), among valid tasks on
one running worker (-c 4): every valid task completes, every raw message ends either with a
result (it was a task forkq could run) or in the dead letters with a reason, no child dies,
nothing is left in the queue.

Raw messages are encoded byte by byte (tests/amqp_raw.py), so headers hold what pika never
writes: doubles, out-of-range timestamps, tables nested past Python's recursion limit. Bodies
include tasks nested too deeply to decode.
"""

from __future__ import annotations

import re
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forkq import Forkq
from forkq.engines.amqp.topology import MAX_DELAY_MS
from forkq.envelope import make_message
from forkq.result import decode_record
from tests import amqp_raw as raw
from tests.bodies import TOO_DEEP, nested_too_deeply
from tests.conftest import (
    E2E_APP,
    WorkerProcess,
    amqp_reachable,
    amqp_test_url,
    drop_amqp_streams,
    results_url_for,
    wait_until_serving,
)

pytestmark = pytest.mark.timeout(240)

WAIT = 20.0  # seconds for one example's messages to settle
DIED = re.compile(r"child \d+ \(pid \d+\)|lost its connection|unreachable|released|Traceback")
# A task that ran and raised (its arguments were hostile: add(1.5, [])) is logged with its
# traceback: its task's failure, not the worker's.
TASK_RAISED = re.compile(r"\] ERROR forkq\.worker: task \S+ raised ")


def worker_trouble(log: str) -> list[str]:
    """The log's records (a record: a line that starts with its time, and the lines after it)
    that say a child died, a connection was lost or forkq itself failed."""
    records = re.split(r"\n(?=\[\d{4}-)", log)
    return [r for r in records if DIED.search(r) and not TASK_RAISED.search(r)]


def now_ms() -> int:
    return int(time.time() * 1000)


def packed(kind: bytes, fmt: str) -> st.SearchStrategy[bytes]:
    """Integers of an AMQP field type: `fmt` is its struct format, lower case if signed."""
    bits = struct.calcsize(fmt) * 8
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if fmt.islower() else (0, 2**bits - 1)
    return st.integers(low, high).map(lambda v: kind + struct.pack(f">{fmt}", v))


KEYS = st.one_of(
    st.sampled_from([b"x-forkq-queue", b"forkq-bucket", b"x-death", b"x-forkq-reason"]),
    st.binary(max_size=20),
)
# Every field type RabbitMQ 3.10 accepts (it refuses NaN and infinite doubles and type 'U').
SCALARS = st.one_of(
    packed(b"b", "b"),
    packed(b"B", "B"),
    packed(b"s", "h"),
    packed(b"u", "H"),
    packed(b"I", "i"),
    packed(b"i", "I"),
    packed(b"l", "q"),
    packed(b"L", "q"),
    st.floats(allow_nan=False, allow_infinity=False).map(raw.double),
    st.floats(width=32, allow_nan=False, allow_infinity=False).map(
        lambda f: b"f" + struct.pack(">f", f)
    ),
    st.builds(raw.decimal, st.integers(0, 255), st.integers(-(2**31), 2**31 - 1)),
    st.binary(max_size=40).map(raw.string),
    st.binary(max_size=40).map(raw.raw_bytes),
    st.booleans().map(raw.boolean),
    st.integers(0, 2**64 - 1).map(raw.timestamp),  # past the year 9999: pika cannot read it
    st.just(raw.void()),
    st.integers(1, 700).map(raw.nested),  # past ~490 levels: pika cannot read it
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(raw.array),
        st.lists(st.tuples(KEYS, inner), max_size=4).map(raw.field_table),
    ),
    max_leaves=8,
)
NOT_NUMBERS = st.one_of(
    st.binary(max_size=20).map(raw.string),
    st.booleans().map(raw.boolean),
    st.integers(0, 2**64 - 1).map(raw.timestamp),
    st.builds(raw.decimal, st.integers(0, 255), st.integers(-(2**31), 2**31 - 1)),
    st.lists(VALUES, max_size=3).map(raw.array),
    st.integers(1, 700).map(raw.nested),
)
# A due time is never left to chance between now and 100 years ahead: the message would wait.
DUE = st.one_of(
    st.integers(-(2**63), 0).map(raw.long),  # past
    st.integers(0, 1500).map(lambda ms: raw.long(now_ms() + ms)),  # soon: runs after a hop
    st.integers(MAX_DELAY_MS + 365 * 86_400_000, 2**62).map(lambda ms: raw.long(now_ms() + ms)),
    st.floats(-1e300, 1e12).map(raw.double),  # read as whole ms, in the past
    NOT_NUMBERS,
)
STARTS = st.one_of(st.integers(0, 4).map(raw.long), packed(b"l", "q"), NOT_NUMBERS)
HEADERS = st.builds(
    lambda forkq, other: [*forkq, *other],
    st.lists(
        st.one_of(
            STARTS.map(lambda v: (b"x-forkq-starts", v)), DUE.map(lambda v: (b"x-forkq-due", v))
        ),
        max_size=2,
    ),
    st.lists(st.tuples(KEYS, VALUES), max_size=4),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,  # shallow: see the module's docstring
)
# Times as absurd as JSON holds: far past, far future, past what a datetime can show.
TIMES = st.sampled_from([-1e30, -1.0, 0, 1e12, 1e300, -(10**40), 10**40])
Body = Callable[[Forkq, str], bytes]  # (client, marker): the body, unique by its marker


def task_body(client: Forkq, marker: str) -> bytes:
    """A valid task, whose id is the marker."""
    queue = client.settings.default_queue
    return client.codec.encode(make_message("e2eapp.add", [7, 1], {}, queue=queue, task_id=marker))


def bytes_body(junk: bytes) -> Body:
    return lambda _client, marker: f"{marker}:".encode() + junk


def json_body(value: object) -> Body:
    return lambda _client, marker: msgspec.json.encode([marker, value])


def envelope_body(fields: dict[str, object]) -> Body:
    """A task whose fields (not its id, queue or times) are replaced by any JSON."""

    def body(client: Forkq, marker: str) -> bytes:
        valid = msgspec.json.decode(task_body(client, marker))
        return msgspec.json.encode({**valid, **fields, "marker": marker})

    return body


def nested_body(depth: int) -> Body:
    """A task nested too deeply to decode, whose id is the marker."""
    return lambda client, marker: nested_too_deeply(marker, client.settings.default_queue, depth)


BODIES: st.SearchStrategy[Body] = st.one_of(
    st.just(task_body),
    st.integers(TOO_DEEP, 40_000).map(nested_body),
    st.binary(max_size=200).map(bytes_body),
    JSON.map(json_body),
    st.dictionaries(
        st.sampled_from(["v", "task", "args", "kwargs", "retries", "expires", "eta"]),
        JSON | TIMES,
        min_size=1,
    ).map(envelope_body),
)
RAW = st.fixed_dictionaries(
    {
        "body": BODIES,
        "headers": st.none() | HEADERS,
        "priority": st.none() | st.integers(0, 255),
        "valid_after": st.integers(0, 2),  # valid tasks published through the API after it
    }
)


class Worker(msgspec.Struct):
    client: Forkq
    worker: WorkerProcess
    amqp_queue: str
    children: list[int]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    if not amqp_reachable():
        pytest.skip("no RabbitMQ on 127.0.0.1:5672")
    app_dir = tmp_path_factory.mktemp("hostile")
    (app_dir / "e2eapp.py").write_text(E2E_APP)
    url = amqp_test_url()
    client = Forkq("e2e", broker=url, backend=results_url_for(url, app_dir))
    queue = client.settings.default_queue
    client.broker.size(queue)  # declares it with forkq's arguments
    prefix = url.split("prefix=")[1].split("&")[0]
    worker = WorkerProcess(app_dir, url, "-c", "4", "-l", "warning")
    try:
        wait_until_serving(client, worker)
        yield Worker(client, worker, f"{prefix}.{queue}", worker.all_children(4))
    finally:
        worker.stop()
        client.close()
        drop_amqp_streams(url)  # its agent's members stream: a stream takes no x-expires


def ran(client: Forkq, task_id: str) -> bool:
    """Its result is stored, and is not a rejection (a rejected one is dead-lettered too)."""
    stored = client.backend.get(task_id)
    if stored is None:
        return False
    return decode_record(stored.payload).exc_type not in ("MessageRejected", "WorkerLost")


@pytest.mark.slow
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(RAW, min_size=1, max_size=4))
def test_hostile_messages_among_valid_tasks(
    running: Worker, messages: list[dict[str, Any]]
) -> None:
    client, queue = running.client, running.client.settings.default_queue
    publisher = raw.RawPublisher(client.settings.broker_url)
    published: dict[bytes, str] = {}  # body -> task id
    valid = []
    try:
        for n, spec in enumerate(messages):
            task_id = uuid.uuid4().hex
            body = spec["body"](client, task_id)
            headers = None if spec["headers"] is None else raw.table(spec["headers"])
            publisher.publish(
                running.amqp_queue, body, raw.RawProperties(headers, spec["priority"])
            )
            published[body] = task_id
            for k in range(spec["valid_after"]):
                valid.append((client.send_task("e2eapp.add", (n, k)), n + k))
    finally:
        publisher.close()
    for result, expected in valid:
        assert result.get(timeout=WAIT) == expected
    deadline = time.monotonic() + WAIT
    while True:
        letters = [d for d in client.broker.dead_letters(limit=10_000) if d.body in published]
        dead = {d.body for d in letters}
        done = {body for body, task_id in published.items() if ran(client, task_id)}
        if dead | done == set(published):
            break
        assert time.monotonic() < deadline, f"not settled: {set(published) - dead - done}"
        client.send_task("e2eapp.add", (0, 0)).get(timeout=WAIT)  # a round trip: an event
    assert not dead & done, "ran and dead-lettered"
    assert all(letter.reason for letter in letters), letters
    # Times print as dates or "an impossible time", never as a run of raw digits.
    expired = [letter.reason for letter in letters if letter.reason.startswith("expired at")]
    assert not any(re.search(r"\d{16}", reason) for reason in expired), expired
    assert len(letters) == len(dead), "a message dead-lettered twice"
    assert client.broker.size(queue) == 0
    assert sorted(running.worker.children()) == running.children
    assert not worker_trouble(running.worker.log()), running.worker.log()
    client.broker.purge_dead()
