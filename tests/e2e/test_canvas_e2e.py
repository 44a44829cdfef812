"""Workflows end to end: a real `forkq worker` on SQLite, Redis and RabbitMQ (results in
SQLite), sent by a client that names the tasks (`client.signature`), as `send_task` does."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from forkq import Forkq, GroupResult, Signature, TaskFailed, chain, chord, group
from forkq.engines.contract import outgoing
from forkq.envelope import make_message
from forkq.flow import Flow, GroupNode, Node, TaskNode
from tests.conftest import E2E_APP, wait_until_serving

pytestmark = pytest.mark.timeout(180)

CANVAS_TASKS = """

@app.task
def tsum(values):
    return sum(values)

@app.task
def boom(*args):
    raise KeyError("boom")

@app.task
def note(*args):
    return list(args)

@app.task
def body_once(values, path):
    with open(path, "a") as runs:  # one line per run: the test counts them
        runs.write(f"{os.getpid()}\\n")
    return sum(values)
"""


@pytest.fixture
def e2e_dir(tmp_path: Path) -> Path:
    (tmp_path / "e2eapp.py").write_text(E2E_APP + CANVAS_TASKS)
    return tmp_path


@pytest.fixture
def broker_url(every_broker_url: str) -> str:
    return every_broker_url


def sig(client: Forkq, name: str, *args: Any) -> Signature:
    return client.signature(f"e2eapp.{name}", args)


def test_chains_groups_chords_and_their_nesting(client: Forkq, start_worker: Any) -> None:
    worker = start_worker("-c", "2", "-l", "warning")
    wait_until_serving(client, worker)

    def add(*args: Any) -> Signature:
        return sig(client, "add", *args)

    done = (add(1, 2) | add(10) | add(100)).delay()
    assert done.get(timeout=30) == 113 and done.parent.get(timeout=1) == 13  # type: ignore[union-attr]
    fanned = group(add(i, i) for i in range(20)).delay()
    assert fanned.get(timeout=30) == [2 * i for i in range(20)] and fanned.completed_count() == 20
    summed = chord((add(i, i) for i in range(20)), sig(client, "tsum")).delay()
    assert summed.get(timeout=30) == 380 and isinstance(summed.parent, GroupResult)
    nested = chain(add(1, 1), group(add(1), add(2)), sig(client, "tsum"), add(1000)).delay()
    assert nested.get(timeout=30) == 1007
    body_chain = chord([add(1, 1), add(2, 2)], sig(client, "tsum") | add(1)).delay()
    assert body_chain.get(timeout=30) == 7
    inner = chord([add(1, 1), add(2, 2)], sig(client, "tsum"))
    in_header = chord([inner, group(add(5, 5), add(6, 6))], sig(client, "note")).delay()
    assert in_header.get(timeout=30) == [[6, [10, 12]]]
    chunks = client.gather(
        [client.signature("forkq.starmap", ("e2eapp.add", [[1, 2], [3, 4]])).delay()]
    )
    assert chunks == [[3, 7]]


def test_links_and_a_failing_chain_and_chord(client: Forkq, start_worker: Any) -> None:
    worker = start_worker("-c", "2", "-l", "warning")
    wait_until_serving(client, worker)
    linked = sig(client, "add", 1, 2)
    linked.link(sig(client, "note", "then").set(task_id="link-1"))
    linked.link_error(sig(client, "note").set(task_id="never-1"))
    assert linked.delay().get(timeout=30) == 3
    assert client.AsyncResult("link-1").get(timeout=30) == [3, "then"]

    started = time.monotonic()
    failing = chain(sig(client, "add", 1, 1), sig(client, "boom"), sig(client, "add", 1))
    failing.link_error(sig(client, "note").set(task_id="errback-1"))
    result = failing.delay()
    with pytest.raises(KeyError) as failed:
        result.get(timeout=30)
    assert isinstance(failed.value, TaskFailed) and time.monotonic() - started < 10
    boom = result.parent
    assert client.AsyncResult("errback-1").get(timeout=30) == [boom.id]  # type: ignore[union-attr]

    header = [sig(client, "add", i, i) for i in range(10)] + [sig(client, "boom", 5)]
    failing_chord = chord(header, sig(client, "tsum") | sig(client, "add", 1))
    failing_chord.link_error(sig(client, "note").set(task_id="errback-2"))
    body = failing_chord.delay()
    with pytest.raises(KeyError, match="boom"):
        body.get(timeout=30)
    members = body.parent.parent  # type: ignore[union-attr]
    assert isinstance(members, GroupResult)
    assert client.AsyncResult("errback-2").get(timeout=30) == [members.results[-1].id]
    assert members.failed() and members.completed_count() == 10
    assert client.AsyncResult("never-1").state == "PENDING"


def test_a_message_nested_too_deep_is_dead_lettered(client: Forkq, start_worker: Any) -> None:
    worker = start_worker("-c", "1", "-l", "warning")
    wait_until_serving(client, worker)
    queue = client.settings.default_queue
    node: Node = TaskNode(id="leaf", task="e2eapp.add", queue=queue)
    for i in range(40):
        node = GroupNode(id=f"g{i}", members=(node,))
    message = make_message("e2eapp.add", (1, 2), {}, queue=queue)
    hostile = msgspec.structs.replace(message, flow=Flow(chain=(node,)))
    client.broker.publish([outgoing(queue, client.codec.encode(hostile))])
    with pytest.raises(TaskFailed, match="nested more than 16 levels"):
        client.AsyncResult(message.id).get(timeout=30)
    assert sig(client, "add", 1, 1).delay().get(timeout=30) == 2  # the worker goes on
    assert worker.proc.poll() is None


def test_a_chords_body_runs_once_when_children_are_killed_in_its_header(
    client: Forkq, start_worker: Any, e2e_dir: Path
) -> None:
    worker = start_worker("-c", "4", "-l", "warning")
    wait_until_serving(client, worker)
    runs = e2e_dir / "body-runs.txt"
    size = 200
    header = [sig(client, "slow_add", i, 1, 0.01) for i in range(size)]
    body = chord(header, sig(client, "body_once", str(runs))).delay()
    members = body.parent
    assert isinstance(members, GroupResult)
    for at in (20, 90):  # twice in the middle of the header, every child at once
        members.results[at].get(timeout=60)
        for child in worker.children():
            os.kill(child, signal.SIGKILL)
    assert body.get(timeout=120) == sum(i + 1 for i in range(size))
    assert members.get(timeout=10) == [i + 1 for i in range(size)]
    assert len(runs.read_text().splitlines()) == 1
    assert worker.log().count("killed by SIGKILL") >= 4
