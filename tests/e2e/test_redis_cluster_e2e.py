"""A worker and its clients on `redis+cluster://`, with the URL a user writes (one node, no
options): a worker consuming queues whose keys are on three different primaries runs what is
sent to each, its children blocking on all three at once; results, control and the clients'
`get()` find their keys' nodes too."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from forkq import Forkq
from tests.conftest import WorkerProcess, wait_until_serving
from tests.engines.test_redis_cluster import queues_on_different_nodes
from tests.redis_cluster import PrivateCluster, clean_shared, shared_cluster

pytestmark = [pytest.mark.timeout(120), pytest.mark.redis_cluster]


@pytest.fixture
def cluster_url() -> Iterator[str]:
    node = shared_cluster().nodes[0]
    url = f"redis+cluster://127.0.0.1:{node.port}?prefix=forkq-test-{uuid.uuid4().hex[:10]}"
    yield url
    clean_shared(url)


def test_a_worker_serves_queues_on_three_nodes(cluster_url: str, e2e_dir: Path) -> None:
    cluster: PrivateCluster = shared_cluster()
    queues = queues_on_different_nodes(cluster, cluster_url, 3)
    client = Forkq("e2e", broker=cluster_url)
    default = client.settings.default_queue
    worker = WorkerProcess(e2e_dir, cluster_url, "-c", "2", "-Q", ",".join([default, *queues]))
    try:
        wait_until_serving(client, worker)
        sent = [client.send_task("e2eapp.add", (n, 1), queue=queues[n % 3]) for n in range(30)]
        assert [r.get(timeout=30) for r in sent] == [n + 1 for n in range(30)]
        for queue in queues:  # the children idle, blocked on every node: each one wakes them
            started = time.monotonic()
            assert client.send_task("e2eapp.add", (2, 2), queue=queue).get(timeout=30) == 4
            assert time.monotonic() - started < 3.0, f"{queue}: not woken by its publish"
        spread = client.gather([client.send_task("e2eapp.add", (n, n)) for n in range(20)])
        assert spread == [2 * n for n in range(20)]  # results on every node, read at once
        pings = client.control.inspect("ping", timeout=10)
        assert len(pings.replies) == 1 and pings.complete, worker.log()
        assert worker.proc.poll() is None, worker.log()
        assert "Traceback" not in worker.log()
    finally:
        worker.stop()
        client.close()
