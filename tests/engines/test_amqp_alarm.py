"""RabbitMQ in a memory alarm blocks its publishers: `delay()` fails with `BrokerFull` after
the bounded wait (`blocked_connection_timeout`, 30 s unless the URL says), and works again once
the alarm clears. On a private node (tests/rabbit_servers.py): an alarm on the machine's node
would block every other test's publishers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forkq import Forkq
from forkq.engines.amqp.url import BLOCKED_FOR_AT_MOST, connection_parameters, split_url
from forkq.exceptions import BrokerFull, ServerFull, Unavailable
from tests.rabbit_servers import PrivateRabbit, running_rabbit

pytestmark = pytest.mark.timeout(120)

BOUND = 2.0  # seconds, the URL's blocked_connection_timeout in these tests


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRabbit]:
    with running_rabbit(tmp_path_factory.mktemp("rabbitmq-alarm")) as node:
        yield node


def alarmed(rabbit: PrivateRabbit) -> bool:
    return "memory" in rabbit.ctl("eval", "rabbit_alarm:get_alarms().")


def set_watermark(rabbit: PrivateRabbit, fraction: str, alarm: bool, timeout: float = 30) -> None:
    """The node's memory watermark set, and its alarm raised or cleared accordingly: the
    node says so only when asked (polled, with a deadline)."""
    rabbit.ctl("set_vm_memory_high_watermark", fraction)
    deadline = time.monotonic() + timeout
    while alarmed(rabbit) is not alarm:
        assert time.monotonic() < deadline, f"memory alarm not {alarm} after {timeout}s"
        time.sleep(0.1)


def test_delay_fails_after_the_bounded_wait_while_the_node_is_in_a_memory_alarm(
    rabbit: PrivateRabbit, tmp_path: Path
) -> None:
    url = rabbit.url(prefix="alarm", blocked_connection_timeout=f"{BOUND:g}")
    app = Forkq("alarm", broker=url, backend=f"sqlite:///{tmp_path}/results.sqlite3")
    try:
        app.send_task("alarm.before")  # the connection open, the queue declared
        set_watermark(rabbit, "0.0000001", alarm=True)
        try:
            began = time.monotonic()
            with pytest.raises(BrokerFull) as raised:
                app.send_task("alarm.during")
            waited = time.monotonic() - began
        finally:
            set_watermark(rabbit, "0.4", alarm=False)
        error = raised.value
        assert isinstance(error, ServerFull) and not isinstance(error, Unavailable)
        text = str(error)
        assert f"blocked this connection for more than {BOUND:g} s" in text, text
        assert "memory or disk alarm" in text and "?blocked_connection_timeout=" in text
        assert BOUND <= waited < BOUND + 5, waited  # bounded, and not repeated on a new one
        app.send_task("alarm.after")  # the alarm over: a new connection, publishing again
        size = app.broker.size(app.settings.default_queue)
        assert size in (2, 3), size  # the blocked one unconfirmed: it may have gone in after
        print(f"\ndelay() refused after {waited:.2f} s (bound {BOUND:g} s); {size} enqueued")
    finally:
        app.broker.purge(app.settings.default_queue)
        app.close()


def test_the_wait_is_bounded_by_default_and_the_url_can_set_it() -> None:
    base = "amqp://guest:guest@127.0.0.1:5672/%2F"
    assert connection_parameters(*split_url(base)).blocked_connection_timeout == 30.0
    assert BLOCKED_FOR_AT_MOST == 30.0
    chosen = connection_parameters(*split_url(f"{base}?blocked_connection_timeout=7.5"))
    assert chosen.blocked_connection_timeout == 7.5
