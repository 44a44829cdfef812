"""RabbitMQ: messages published straight into forkq's queues by anyone with access to the
vhost, with any body, headers and properties, among valid tasks on a real worker. Each ends
run (a valid task body with headers forkq can live with) or dead-lettered with a reason that
says what was wrong; no child dies, nothing loops. The dead-letter tools read junk letters.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import msgspec
import pika
import pytest

from forkq import Forkq
from forkq.engines.contract import Broker, Consumer, ConsumerSession, Outgoing, outgoing
from forkq.engines.registry import open_backend, open_broker
from forkq.envelope import make_message
from forkq.exceptions import ConfigurationError
from tests import amqp_raw as raw
from tests.conftest import (
    WorkerProcess,
    amqp_test_url,
    engine_url,
    results_url_for,
    wait_until_serving,
)

pytestmark = pytest.mark.timeout(180)

RUNS = "runs"
YEAR_MS = 31_557_600_000
JUNK = [  # headers forkq does not know: ignored, and dropped when it publishes the message again
    (b"x-trace", raw.nested(100)),
    (b"\xff\xfe", raw.string(b"\xff\x00")),
    (b"money", raw.decimal(255, -(2**31))),
    (b"when", raw.timestamp(2**33)),
    (b"list", raw.array([raw.void(), raw.double(-0.0), raw.raw_bytes(b"\x00")])),
    (b"x-death", raw.long(7)),
]


class Case(msgspec.Struct):
    name: str
    headers: raw.Table | None = None
    priority: int | None = None
    expect: str = RUNS  # or a regular expression the dead letter's reason matches
    redelivered: bool = False  # taken and given back before the worker sees it
    body: bytes | None = None  # None: a task of e2eapp (or named `task`); else this body
    task: str = "e2eapp.add"
    content_type: bytes | None = None


def cases(now_ms: int) -> list[Case]:
    starts, due = b"x-forkq-starts", b"x-forkq-due"
    bad_starts, bad_due = (
        "malformed AMQP header: x-forkq-starts",
        "malformed AMQP header: x-forkq-due",
    )
    unreadable = r"unreadable AMQP properties \((OverflowError|ValueError|RecursionError)"
    return [
        Case("no headers"),
        Case("starts string", [(starts, raw.string(b"many"))], expect=bad_starts),
        Case("starts negative", [(starts, raw.long(-5))], expect=bad_starts),
        Case("starts huge", [(starts, raw.long(2**63 - 1))], expect=bad_starts),
        Case("starts double 1e300", [(starts, raw.double(1e300))], expect=bad_starts),
        Case("starts table", [(starts, raw.field_table([(b"n", raw.long(1))]))], expect=bad_starts),
        Case("starts bool", [(starts, raw.boolean(True))], expect=bad_starts),
        Case("starts decimal", [(starts, raw.decimal(2, 150))], expect=bad_starts),
        Case("starts short", [(starts, raw.short(1))]),
        Case("due string", [(due, raw.string(b"soon"))], expect=bad_due),
        Case("due array", [(due, raw.array([raw.long(1)]))], expect=bad_due),
        Case("due double in the past", [(due, raw.double(1.5))]),
        Case("due negative", [(due, raw.long(-(10**15)))]),
        Case("due huge", [(due, raw.long(2**63 - 1))], expect=r"due 2\.92e\+08 years after 1970"),
        Case(
            "due in 200 years",
            [(due, raw.long(now_ms + 200 * YEAR_MS))],
            expect=r"due 2\d\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00, more than 100 years ahead",
        ),
        Case("due soon, junk", [(due, raw.long(now_ms + 1500)), (starts, raw.long(0)), *JUNK]),
        Case("timestamp past 9999", [(b"sent", raw.timestamp(2**63))], expect=unreadable),
        Case("tables nested 600 deep", [(b"x-trace", raw.nested(600))], expect=unreadable),
        Case("junk headers", JUNK, priority=255),
        Case("priority absent"),
        Case("priority 200", priority=200),
        Case("content type", content_type=b"application/xml\xff"),
        Case("redelivered, junk", JUNK, redelivered=True),
        Case("redelivered, starts string", [(starts, raw.string(b"x"))], 3, bad_starts, True),
        Case("redelivered, unreadable", [(b"t", raw.timestamp(2**63))], 3, unreadable, True),
        Case("not json", body=b"not json", priority=9, expect="malformed message"),
        Case("not utf-8", [(starts, raw.long(1))], body=b"\xff\xfe\x00", expect="malformed"),
        Case("empty", body=b"", expect="malformed message"),
        # A reason longer than an AMQP frame can carry in headers is cut short.
        Case(
            "task name of 300 KB",
            task="x" * 300_000,
            expect=r"^unknown task 'x{900,}\.\.\. \(300,015 characters in all\)$",
        ),
    ]


@pytest.fixture
def url() -> Iterator[str]:
    yield from engine_url("amqp", amqp_test_url())


def child_session(broker: Broker, pid: int = 1) -> ConsumerSession:
    return broker.consumer(Consumer("w", f"w/0/{pid}"), open_backend("memory://amqp-defensive"))


def client_for(url: str, e2e_dir: Path) -> Forkq:
    return Forkq("e2e", broker=url, backend=results_url_for(url, e2e_dir))


def wait_for_letters(client: Forkq, count: int, timeout: float = 60) -> list[object]:
    """Each look follows a task's round trip through the worker: an event, not a sleep."""
    deadline = time.monotonic() + timeout
    while len(letters := client.broker.dead_letters(limit=1000)) < count:
        assert time.monotonic() < deadline, f"{len(letters)} of {count} dead letters: {letters}"
        client.send_task("e2eapp.add", (0, 0)).get(timeout=30)
    return list(letters)


def test_raw_messages_among_valid_tasks_run_or_are_dead_lettered_with_a_reason(
    url: str, e2e_dir: Path
) -> None:
    client = client_for(url, e2e_dir)
    queue = client.settings.default_queue
    client.broker.purge(queue)  # declares the queue with forkq's arguments (it is empty)
    amqp_queue = f"{url.split('prefix=')[1].split('&')[0]}.{queue}"
    publisher = raw.RawPublisher(url)
    all_cases = cases(int(time.time() * 1000))
    bodies: dict[str, bytes] = {}
    ids: dict[str, str] = {}
    valid = []

    def publish(n: int, case: Case) -> None:
        message = make_message(case.task, [1000, n], {}, queue=queue)
        body = client.codec.encode(message) if case.body is None else case.body
        bodies[case.name], ids[case.name] = body, message.id
        headers = None if case.headers is None else raw.table(case.headers)
        properties = raw.RawProperties(headers, case.priority, content_type=case.content_type)
        publisher.publish(amqp_queue, body, properties)

    redelivered = [c for c in all_cases if c.redelivered]
    for n, case in enumerate(redelivered):  # alone in the queue, to be taken back
        publish(n, case)
    publisher.redeliver(amqp_queue, len(redelivered))
    for n, case in enumerate(all_cases):
        if not case.redelivered:
            publish(n, case)
            valid.append((client.send_task("e2eapp.add", (n, n)), 2 * n))
    publisher.close()
    worker = WorkerProcess(e2e_dir, url, "-c", "2", "-l", "info")
    try:
        wait_until_serving(client, worker)
        children = worker.all_children(2)
        for result, expected in valid:
            assert result.get(timeout=60) == expected
        dead = [c for c in all_cases if c.expect != RUNS]
        letters = wait_for_letters(client, len(dead))
        reasons = {letter.body: letter.reason for letter in letters}  # type: ignore[attr-defined]
        for case in dead:
            assert re.search(case.expect, reasons[bodies[case.name]]), (case.name, reasons)
        for case in all_cases:
            if case.expect == RUNS:
                assert client.AsyncResult(ids[case.name]).get(timeout=60) >= 1000, case.name
        assert len(letters) == len(dead)
        assert sorted(worker.children()) == children, worker.log()  # no child died
        log = worker.log()
        assert "Traceback" not in log and "unreachable" not in log and "exited" not in log, log
    finally:
        worker.stop()
        client.close()


def test_the_dead_letter_tools_read_junk_letters(url: str, tmp_path: Path) -> None:
    """Letters published straight to P.dead, or moved there by RabbitMQ itself (a message
    expired in its queue): listed with what can be read, requeued when their queue is known,
    purged; `forkq dead list` prints them."""
    prefix = url.split("prefix=")[1].split("&")[0]
    broker = open_broker(url)
    broker.purge("q")  # declares P.q and P.dead (both empty: nothing purged)
    publisher = raw.RawPublisher(url)
    dead = f"{prefix}.dead"
    letters = {
        b"no headers": raw.RawProperties(None, None),
        b"junk": raw.RawProperties(
            raw.table(
                [
                    (b"x-forkq-queue", raw.field_table([(b"a", raw.void())])),
                    (b"x-forkq-reason", raw.long(5)),
                    (b"x-forkq-failed-at", raw.string(b"yesterday")),
                    (b"x-death", raw.array([raw.long(1)])),
                ]
            ),
            255,
            message_id=b"\xff\xfe",
        ),
        b"queue too long": raw.RawProperties(
            raw.table([(b"x-forkq-queue", raw.string(b"q" * 300))]), 3
        ),
        b"far in time": raw.RawProperties(
            raw.table(
                [
                    (b"x-forkq-queue", raw.string(b"q")),
                    (b"x-forkq-reason", raw.string(b"\xff bad")),
                    (b"x-forkq-failed-at", raw.long(2**63 - 1)),
                ]
            ),
            200,
            message_id=b"far",
        ),
        b"unreadable": raw.RawProperties(
            raw.table([(b"x-forkq-queue", raw.string(b"q")), (b"t", raw.timestamp(2**63))])
        ),
    }
    for body, properties in letters.items():
        publisher.publish(dead, body, properties)
    expiring = pika.BasicProperties(expiration="0")  # RabbitMQ dead-letters it, with x-death
    publisher.channel.basic_publish("", f"{prefix}.q", b"expired", expiring)
    publisher.close()
    try:
        deadline = time.monotonic() + 30
        while len(listed := broker.dead_letters()) < len(letters) + 1:
            assert time.monotonic() < deadline, listed  # RabbitMQ expires it on its own
            time.sleep(0.05)
        by_body = {letter.body: letter for letter in listed}
        assert by_body[b"no headers"].reason == "dead-lettered by RabbitMQ"
        assert by_body[b"no headers"].queue == ""
        assert by_body[b"junk"].queue == "" and by_body[b"junk"].priority == 9
        assert by_body[b"junk"].receipt == "\ufffd\ufffd" and by_body[b"junk"].failed_at == 0
        assert by_body[b"queue too long"].queue == ""
        far = by_body[b"far in time"]
        assert (far.queue, far.reason, far.failed_at, far.priority) == ("q", "\ufffd bad", 0, 9)
        assert by_body[b"unreadable"].reason.startswith("unreadable AMQP properties")
        assert by_body[b"expired"].queue == "q"
        assert by_body[b"expired"].reason == "dead-lettered by RabbitMQ (expired)"
        assert all(datetime.fromtimestamp(letter.failed_at, timezone.utc) for letter in listed)
        from click.testing import CliRunner

        from forkq.cli.main import cli

        backend = f"sqlite:///{tmp_path}/results.sqlite3"
        shown = CliRunner().invoke(cli, ["dead", "list", "--broker", url, "--backend", backend])
        assert shown.exit_code == 0, shown.output
        header, *rows = shown.output.splitlines()  # a header, then one line per letter
        assert header.split()[0] == "RECEIPT"
        assert len(rows) == len(listed), shown.output
        pairs = zip(rows, listed, strict=True)
        assert all(row.endswith(letter.reason) for row, letter in pairs), shown.output
        # Requeued: the two whose queue is known and readable. The rest stay, to be purged.
        assert broker.requeue_dead() == 2
        assert broker.size("q") == 2
        assert sorted(letter.body for letter in broker.dead_letters()) == sorted(
            [b"no headers", b"junk", b"queue too long", b"unreadable"]
        )
        assert broker.purge_dead() == 4 and broker.dead_letters() == []
    finally:
        broker.close()


@pytest.mark.parametrize("delay", [float("inf"), float("nan"), 1e300, 101 * 365.25 * 86400])
def test_a_delay_rabbitmq_cannot_hold_is_refused_before_anything_is_sent(
    url: str, delay: float
) -> None:
    broker = open_broker(url)
    try:
        with pytest.raises(ConfigurationError, match=r"at most .* s \(100 years\)"):
            outgoing("q", b"later", delay=delay)
        with pytest.raises(ValueError, match="out of range"):  # nor can one be built directly
            Outgoing("q", b"later", 0, delay)
        broker.publish([outgoing("q", b"in 99 years", delay=99 * 365.25 * 86400)])
        broker.publish([outgoing("q", b"now")])
        assert broker.size("q") == 1  # the delayed one waits in a delay queue
    finally:
        broker.close()


def test_a_requeue_with_a_delay_rabbitmq_cannot_hold_is_dead_lettered(url: str) -> None:
    broker = open_broker(url)
    child = child_session(broker)
    try:
        broker.publish([outgoing("q", b"retried")])
        (delivery,) = child.fetch(["q"], 1, 5.0)
        child.requeue(delivery, delay=float("inf"))
        (letter,) = broker.dead_letters()
        assert letter.body == b"retried"
        assert letter.reason == "requeued with a delay of inf s: RabbitMQ takes at most 100 years"
    finally:
        broker.close()


STOPPED_WHILE_READING = textwrap.dedent(
    """
    import signal, sys
    import pika.spec
    from forkq.engines.contract import Consumer
    from forkq.engines.registry import open_backend, open_broker
    from forkq.pool.child import Stopping, StopSignal

    broker, stop = open_broker(sys.argv[1]), StopSignal()
    child = broker.consumer(Consumer("w", "w/0/1"), open_backend("memory://"))
    decode = pika.spec.BasicProperties.decode.__code__

    def term_inside_decode(frame, event, arg):
        if event == "call" and frame.f_code is decode:
            sys.settrace(None)
            signal.raise_signal(signal.SIGTERM)  # handled at once: while it decodes

    sys.settrace(term_inside_decode)
    try:
        with stop.interruptible():
            child.fetch(["q"], 1, 3.0)
    except Stopping:
        sys.settrace(None)
        child.release()  # as a child that stops does
        broker.close()
        print("stopped")
    """
)


def test_a_stop_while_a_message_is_read_leaves_it_in_its_queue(url: str) -> None:
    """SIGTERM in a waiting child raises `Stopping` wherever the wait is, also inside pika's
    decoding of a message's properties, which reads a publisher's bytes defensively: the child
    stops cleanly, and the message goes back to its queue, not to the dead letters."""
    broker = open_broker(url)
    try:
        broker.publish([outgoing("q", b"good")])
        stopped = subprocess.run(
            [sys.executable, "-c", STOPPED_WHILE_READING, url],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert (stopped.returncode, stopped.stdout, stopped.stderr) == (0, "stopped\n", "")
        assert broker.dead_letters() == []
        [again] = child_session(broker, 2).fetch(["q"], 1, 5.0)
        assert again.body == b"good"
    finally:
        broker.close()
