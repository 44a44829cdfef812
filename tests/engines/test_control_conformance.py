"""One conformance suite for the control channel (`forkq.engines.contract.control`) of every
engine that carries control: Redis (a plain redis:// URL, and one whose read timeout is far
shorter than the waits) and RabbitMQ. Real servers; agents answer from threads of this test
process, each on channels of its own."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from forkq.control import Control
from forkq.engines.amqp.control import AGENT_PREFETCH, AMQPControl
from forkq.engines.contract import ControlChannel, ControlReply, ControlRequest
from forkq.engines.contract.control import LISTENING_MARGIN, MAX_AGE, encode_control
from forkq.engines.registry import carries_control, open_broker
from forkq.signing import Signer
from tests.conftest import amqp_test_url, engine_url, redis_test_url
from tests.redis_cluster import cluster_test_url

pytestmark = pytest.mark.timeout(60)

ENGINES: dict[str, Callable[[], str]] = {
    "redis": redis_test_url,
    "redis-short-read-timeout": lambda: redis_test_url(socket_timeout=0.5),
    "redis-cluster": cluster_test_url,
    "amqp": amqp_test_url,
}


class Engine:
    """Opens channels on one broker URL; closes them all at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.broker = open_broker(url)
        self.opened: list[ControlChannel] = []

    def channel(self, secret: str | None = None) -> ControlChannel:
        channel = open_broker(self.url).control_channel(secret)
        assert channel is not None
        self.opened.append(channel)
        return channel

    def close(self) -> None:
        for channel in self.opened:
            channel.close()
        self.broker.close()


@pytest.fixture(params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    url = ENGINES[request.param]()
    server = request.param if request.param == "redis-cluster" else request.param.split("-")[0]
    for _ in engine_url(server, url):
        opened = Engine(url)
        yield opened
        opened.close()


class Agent:
    """A listening channel answering in a thread: each request's args echoed, with its name."""

    def __init__(self, channel: ControlChannel, name: str, answer: bool = True) -> None:
        self.channel, self.name = channel, name
        self.answer = answer  # False: receives but never replies (a frozen worker)
        self.handled: list[ControlRequest] = []
        self._stop = threading.Event()
        channel.listen(name, f"{name}.1234.abcdef")
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            request = self.channel.receive(0.2)
            if request is None:
                continue
            self.handled.append(request)
            if self.answer:
                self.channel.reply(request, {"name": self.name, "args": request.args})

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.fixture
def agents() -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for agent in started:
        agent.stop()


class TestControlChannel:
    def test_only_engines_with_a_channel_carry_control(self, tmp_path: Path) -> None:
        assert carries_control("redis://127.0.0.1:6379/15")
        assert carries_control("amqp://guest:guest@127.0.0.1:5672/%2F")
        assert not carries_control(f"sqlite:///{tmp_path}/x.sqlite3")
        assert not carries_control("memory://control")
        assert open_broker("memory://control").control_channel(None) is None

    def test_every_member_answers_with_its_args(self, engine: Engine, agents: list[Agent]) -> None:
        agents += [Agent(engine.channel(), "w1"), Agent(engine.channel(), "w2")]
        client = engine.channel()
        assert [m.name for m in client.members()] == ["w1", "w2"]
        got = client.ask("ping", {"n": 2, "ids": ["a"]}, timeout=10)
        assert sorted(got.replies) == ["w1", "w2"] and got.missing == ()
        assert got.replies["w1"].body == {"name": "w1", "args": {"n": 2, "ids": ["a"]}}
        assert got.replies["w2"].worker_id == "w2.1234.abcdef"
        again = client.ask("stats", timeout=10)  # the inbox is kept: a second request
        assert sorted(again.replies) == ["w1", "w2"] and again.request.id != got.request.id

    def test_a_destination_reaches_only_the_workers_named(
        self, engine: Engine, agents: list[Agent]
    ) -> None:
        one, two = Agent(engine.channel(), "w1"), Agent(engine.channel(), "w2")
        agents += [one, two]
        got = engine.channel().ask("ping", destination=["w2", "w9"], timeout=1.0)
        assert list(got.replies) == ["w2"]
        assert got.missing == ("w9",)  # named, never seen: missing all the same
        assert [r.command for r in two.handled] == ["ping"] and one.handled == []

    def test_a_member_that_does_not_answer_is_missing_until_it_withdraws(
        self, engine: Engine, agents: list[Agent]
    ) -> None:
        silent = Agent(engine.channel(), "frozen", answer=False)
        agents += [Agent(engine.channel(), "w1"), silent]
        client = engine.channel()
        started = time.monotonic()
        got = client.ask("ping", timeout=1.0)
        assert time.monotonic() - started >= 1.0  # waited for the silent one to the end
        assert list(got.replies) == ["w1"] and got.missing == ("frozen",)
        assert time.time() - got.last_seen["frozen"] < 30
        silent.stop()
        silent.channel.withdraw()
        assert [m.name for m in client.members()] == ["w1"]
        started = time.monotonic()
        assert client.ask("ping", timeout=10).missing == ()
        assert time.monotonic() - started < 5  # every member answered: no wait to the end

    def test_a_name_announced_again_is_one_member(self, engine: Engine) -> None:
        first = engine.channel()
        first.listen("w1", "w1.1.aaaaaa")
        later = engine.channel()
        later.listen("w1", "w1.2.bbbbbb")  # the worker restarted; its old entry not withdrawn
        [member] = engine.channel().members()
        assert (member.name, member.worker_id) == ("w1", "w1.2.bbbbbb")

    def test_with_no_member_the_client_waits_out_its_timeout(self, engine: Engine) -> None:
        started = time.monotonic()
        got = engine.channel().ask("ping", timeout=0.5)
        assert got.replies == {} and got.missing == ()
        assert time.monotonic() - started >= 0.5

    def test_a_wait_longer_than_the_clients_read_timeout_returns_nothing(
        self, engine: Engine
    ) -> None:
        agent = engine.channel()
        agent.listen("w1", "w1.1.aaaaaa")
        started = time.monotonic()
        assert agent.receive(1.5) is None  # past redis-short-read-timeout's 0.5 s
        assert time.monotonic() - started >= 1.5
        client = engine.channel()
        client._send_request(encode_control(_request(client, "ping")))
        request = agent.receive(10)
        assert request is not None and request.command == "ping"

    def test_signed_requests_and_replies_with_the_secret_only(
        self, engine: Engine, agents: list[Agent]
    ) -> None:
        signed = Agent(engine.channel(secret="s3cret"), "w1")
        agents.append(signed)
        assert list(engine.channel(secret="s3cret").ask("ping", timeout=10).replies) == ["w1"]
        for client in (engine.channel(), engine.channel(secret="other")):
            got = client.ask("ping", timeout=0.5)
            assert got.replies == {} and got.missing == ("w1",)
        assert signed.channel.refused == 2 and len(signed.handled) == 1
        # A reply signed with another secret is refused by the client, as a request is.
        client = engine.channel(secret="s3cret")
        request = _request(client, "ping")
        forged = ControlReply(request_id=request.id, worker="w1", body={"pong": True})
        engine.channel()._send_reply(request.reply_to, Signer("other").sign(encode_control(forged)))
        replies, _ = client._collect(request, {"w1"}, time.monotonic() + 1.0)
        assert replies == {} and client.refused == 1

    def test_junk_stale_and_repeated_requests_are_refused_and_the_agent_goes_on(
        self, engine: Engine
    ) -> None:
        agent = engine.channel(secret="s3cret")
        agent.listen("w1", "w1.1.aaaaaa")
        client = engine.channel(secret="s3cret")
        signer = Signer("s3cret")
        fresh = encode_control(_request(client, "fresh"))
        stale = _request(client, "stale", sent_at=time.time() - MAX_AGE - 5)
        for raw in (
            b"\xff not json at all",
            signer.sign(b'{"id": 1}'),  # signed, not a request
            signer.sign(b"[" * 100_000 + b"]" * 100_000),  # nested past any recursion limit
            signer.sign(encode_control(stale)),
            fresh,  # unsigned
            signer.sign(fresh),
            signer.sign(fresh),  # the same request again: acted on once
            signer.sign(encode_control(_request(client, "last"))),
        ):
            client._send_request(raw)
        taken = [agent.receive(5), agent.receive(5), agent.receive(0.5)]
        assert [r.command if r else None for r in taken] == ["fresh", "last", None]
        assert agent.refused == 6

    def test_a_request_sent_before_the_agent_listened_is_refused_as_a_replay(
        self, engine: Engine
    ) -> None:
        """An agent restarted within MAX_AGE must not act again on a request its predecessor
        acted on: one dated before it listened (past the margin for clocks) is refused, a
        fresh one answered."""
        agent = engine.channel(secret="s3cret")
        agent.listen("w1", "w1.1.aaaaaa")
        client = engine.channel(secret="s3cret")
        signer = Signer("s3cret")
        before = time.time() - LISTENING_MARGIN - 5  # within MAX_AGE: only the listening check
        assert before > time.time() - MAX_AGE
        for request in (_request(client, "replayed", sent_at=before), _request(client, "fresh")):
            client._send_request(signer.sign(encode_control(request)))
        taken = [agent.receive(5), agent.receive(0.5)]
        assert [r.command if r else None for r in taken] == ["fresh", None]
        assert agent.refused == 1

    def test_a_reply_goes_only_to_a_client_inbox(self, engine: Engine) -> None:
        agent = engine.channel()
        agent.listen("w1", "w1.1.aaaaaa")
        client = engine.channel()
        request = msgspec.structs.replace(_request(client, "ping"), reply_to="elsewhere")
        client._send_request(encode_control(request))
        got = agent.receive(5)
        assert got is not None
        agent.reply(got, {"pong": True})  # refused: not published anywhere
        assert agent.refused == 1


def _request(client: ControlChannel, command: str, **fields: Any) -> ControlRequest:
    values: dict[str, Any] = {
        "id": f"{command}-{time.monotonic_ns()}",
        "command": command,
        "reply_to": client._inbox(),
        "sent_at": time.time(),
        "timeout": 1.0,
        **fields,
    }
    return ControlRequest(**values)


@pytest.fixture
def redis_engine() -> Iterator[Engine]:
    url = redis_test_url()
    for _ in engine_url("redis", url):
        opened = Engine(url)
        yield opened
        opened.close()


def test_app_control_from_two_threads_at_once_gets_each_its_own_replies(
    redis_engine: Engine, agents: list[Agent]
) -> None:
    """`app.control` is shared by a process's threads (a dashboard's): one request and its
    replies at a time on its channel, so no thread reads another's replies."""
    agents += [Agent(redis_engine.channel(), "w1"), Agent(redis_engine.channel(), "w2")]
    control = Control(redis_engine.url, lambda: redis_engine.broker, None)
    start, got, failed = threading.Barrier(2), {}, []

    def ask(n: int) -> None:
        start.wait(timeout=10)
        try:
            for i in range(10):
                replies = control.broadcast("echo", {"n": n, "i": i}, timeout=10)
                got[(n, i)] = {name: body["args"] for name, body in replies.replies.items()}
        except Exception as exc:  # shown by the assertion below, not lost in the thread
            failed.append(repr(exc))

    threads = [threading.Thread(target=ask, args=(n,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    control.close()
    assert failed == []
    assert got == {
        (n, i): {"w1": {"n": n, "i": i}, "w2": {"n": n, "i": i}} for n in (1, 2) for i in range(10)
    }


def test_a_rabbitmq_agent_holds_at_most_its_prefetch_of_a_flood() -> None:
    """Requests published faster than an agent answers wait in its queue on the server: the
    agent's process holds `AGENT_PREFETCH` of them, and every one is still taken in turn."""
    url = amqp_test_url()
    for _ in engine_url("amqp", url):
        engine = Engine(url)
        try:
            agent = engine.channel()
            assert isinstance(agent, AMQPControl)
            agent.listen("w1", "w1.1234.abcdef")
            client = engine.channel()
            flood = AGENT_PREFETCH * 4
            for _ in range(flood):
                client._send_request(encode_control(_request(client, "ping")))
            taken = [agent.receive(10)]
            assert len(agent._requests) <= AGENT_PREFETCH  # the rest wait on the server
            while len(taken) < flood:
                taken.append(agent.receive(10))
            assert all(r is not None and r.command == "ping" for r in taken)
            assert agent.receive(0.3) is None
        finally:
            engine.close()
