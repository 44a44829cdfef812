"""What only a Redis Cluster asks of the Redis engine (the conformance suites run on one too):
queues on different nodes fetched by one consumer, blocking on all at once; work spread over
several slots in one call; the URL's form; a cluster that no node answers for."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from forkq.engines.contract import Broker, ResultWrite, outgoing
from forkq.engines.redis.cluster import parse_cluster_url
from forkq.engines.redis.keys import QueueKeys
from forkq.engines.registry import open_backend, open_broker
from forkq.exceptions import BrokerUnavailable, ConfigurationError, NotReplicated
from forkq.states import SUCCESS
from tests.engines.test_conformance import consumers_in_processes, session
from tests.redis_cluster import PrivateCluster, clean_shared, shared_cluster

pytestmark = [pytest.mark.timeout(60), pytest.mark.redis_cluster]


@pytest.fixture
def nodes() -> PrivateCluster:
    """The run's shared cluster."""
    return shared_cluster()


@pytest.fixture
def url(nodes: PrivateCluster) -> Iterator[str]:
    made = nodes.test_url(lease_ttl=1)
    yield made
    clean_shared(made)


@pytest.fixture
def broker(url: str) -> Iterator[Broker]:
    opened = open_broker(url)
    yield opened
    opened.close()


def queues_on_different_nodes(nodes: PrivateCluster, url: str, count: int) -> list[str]:
    """`count` queue names whose keys are on `count` different primaries."""
    prefix = url.split("prefix=")[1].split("&")[0]
    chosen: dict[int, str] = {}
    for n in range(1000):
        name = f"q{n}"
        port = nodes.primary_of(QueueKeys(prefix, name).band(0)).port
        chosen.setdefault(port, name)
        if len(chosen) == count:
            return list(chosen.values())
    raise AssertionError("no queues on different nodes")


def test_one_fetch_across_queues_on_three_nodes_wakes_for_any_of_them(
    nodes: PrivateCluster, url: str, broker: Broker
) -> None:
    queues = queues_on_different_nodes(nodes, url, 3)
    consumer = session(broker)
    for queue in queues:  # the last one is the one the publish below wakes
        assert consumer.fetch(queues, 1, 0) == []
        later = open_broker(url)
        message = [outgoing(queue, queue.encode())]
        timer = threading.Timer(0.3, later.publish, (message,))
        timer.start()
        try:
            started = time.monotonic()
            got = consumer.fetch(queues, 1, 10.0)
            waited = time.monotonic() - started
        finally:
            timer.join()
            later.close()
        assert [(d.queue, d.body) for d in got] == [(queue, queue.encode())]
        assert waited < 3.0  # woken by the publish, not the end of another node's wait
        consumer.finish(got[0], None)


def test_consumers_blocking_across_nodes_take_every_message_once(
    nodes: PrivateCluster,
) -> None:
    """Messages land on two nodes at the same moments while consumers of a live worker block
    on both: a read cut short after another node answered may have taken entries; they are
    read again by its consumer (and taken by no one else), never left pending."""
    url = nodes.test_url(lease_ttl=30)  # no takeover: the worker is alive
    broker = open_broker(url)
    broker.heartbeat("w1")
    queues = queues_on_different_nodes(nodes, url, 2)
    total = 200
    # Not closed at the end: what a consumer left pending would not go back to the others.
    collected = consumers_in_processes(url, queues, 2, 1.5, close=False)
    for i in range(0, total, 2):  # one to each node at once, a pause for the blocks
        broker.publish([outgoing(queues[0], b"a%d" % i)])
        broker.publish([outgoing(queues[1], b"b%d" % (i + 1))])
        time.sleep(0.005)  # let consumers block again between pairs
    seen = collected()
    broker.close()
    clean_shared(url)
    assert len(seen) == total and len(set(seen)) == total


def test_results_of_tasks_on_every_node_in_one_call(url: str) -> None:
    backend = open_backend(url)
    try:
        ids = [f"task-{n}" for n in range(40)]  # their keys spread over every slot range
        backend.store_all([ResultWrite(t, SUCCESS, t.encode(), 60) for t in ids])
        got = backend.get_many(ids)
        assert [r.payload if r else None for r in got] == [t.encode() for t in ids]
    finally:
        backend.close()


def test_one_publish_to_queues_on_every_node(
    nodes: PrivateCluster, url: str, broker: Broker
) -> None:
    queues = queues_on_different_nodes(nodes, url, 3)
    broker.publish([outgoing(q, f"{q}-{n}".encode()) for n in range(3) for q in queues])
    broker.publish([outgoing(q, b"later", delay=0.2) for q in queues])
    assert [broker.size(q) for q in queues] == [4, 4, 4]


def test_a_url_with_only_one_node_finds_the_others(nodes: PrivateCluster) -> None:
    """As a user writes it: one node, nothing else."""
    one = f"redis+cluster://127.0.0.1:{nodes.nodes[0].port}"
    broker = open_broker(one + "?prefix=forkq-test-one-node")
    try:
        queues = queues_on_different_nodes(nodes, one + "?prefix=forkq-test-one-node", 3)
        broker.publish([outgoing(q, b"x") for q in queues])
        got = session(broker).fetch(queues, 10, 1.0)
        assert sorted(d.queue for d in got) == sorted(queues)
    finally:
        broker.close()
        clean_shared(one + "?prefix=forkq-test-one-node")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+cluster://", "names no node host"),
        ("redis+cluster://h:notaport", "has node port 'notaport', not a port number"),
        ("redis+cluster://h:7000/1", "names database '1': a cluster has only 0"),
        ("redis+cluster://h:7000?db=2", "sets 'db' in its query"),
    ],
)
def test_a_url_not_of_the_form_says_what_to_fix_in_one_line(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_cluster_url(url) if "?" not in url else open_broker(url)
    assert says in str(raised.value)
    assert "redis+cluster://[user:password@]host:port[,host:port...]" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_url_form(nodes: PrivateCluster) -> None:
    target = parse_cluster_url("redis+cluster://u:p%40ss@a:7000,b,[::1]:7002/0")
    assert target.nodes == (("a", 7000), ("b", 6379), ("::1", 7002))
    assert (target.username, target.password) == ("u", "p@ss")


def test_a_cluster_no_node_answers_for_is_unavailable() -> None:
    with pytest.raises(BrokerUnavailable, match=r"no node of 127\.0\.0\.1:1 gives the cluster"):
        open_broker("redis+cluster://127.0.0.1:1")


def test_a_waited_publish_to_several_nodes_waits_for_each_ones_replica(
    redis_cluster: PrivateCluster,
) -> None:
    url = redis_cluster.url(prefix="forkq-test-wait", wait_replicas=1, wait_timeout=2)
    broker = open_broker(url)
    try:
        queues = queues_on_different_nodes(redis_cluster, url, 3)
        broker.publish([outgoing(q, b"x") for q in queues])  # no NotReplicated: each has one
        assert [broker.size(q) for q in queues] == [1, 1, 1]
    finally:
        broker.close()


def test_a_waited_publish_without_replicas_is_queued_and_says_so(
    nodes: PrivateCluster,
) -> None:
    url = nodes.test_url(wait_replicas=1, wait_timeout=0.2)
    broker = open_broker(url)
    try:
        queues = queues_on_different_nodes(nodes, url, 3)
        with pytest.raises(NotReplicated, match="only 0 of 1 replicas"):
            broker.publish([outgoing(q, b"x") for q in queues])
        assert [broker.size(q) for q in queues] == [1, 1, 1]
    finally:
        broker.close()
        clean_shared(url)
