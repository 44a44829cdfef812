"""The `cluster` fixture (tests/conftest.py imports it, so every test can ask for it)."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import pytest

from tests.hosts import netns
from tests.hosts.host import AMQP_PORT, REDIS_PORT, Cluster

NEEDED = {"ip": "iproute2", "unshare": "util-linux", "hostname": "hostname"}


class MakeCluster(Protocol):
    def __call__(self, count: int = 2, forward: Sequence[int] = (REDIS_PORT, AMQP_PORT)) -> Cluster:
        """`count` hosts, each with a link to each port on 127.0.0.1 in `forward`."""
        ...


@functools.lru_cache(maxsize=1)
def missing_capability() -> str | None:
    """Why this machine cannot make test hosts, or None: the programs, root, and one network
    namespace made and removed (a container without CAP_SYS_ADMIN fails there)."""
    for program, package in NEEDED.items():
        if shutil.which(program) is None:
            return f"`{program}` is not installed (package {package})"
    if os.geteuid() != 0:
        return "test hosts are network namespaces: they need root"
    probe = f"{netns.Owner.me().prefix()}-probe"  # swept like any leftover if this dies here
    try:
        netns.ip("netns", "add", probe)
        netns.ip("netns", "del", probe)
    except (netns.NetnsError, subprocess.TimeoutExpired) as error:
        return f"cannot make a network namespace: {error}"
    return None


def require_hosts() -> None:
    """Skips the test when hosts cannot be made; with CI=true that fails it instead."""
    if (problem := missing_capability()) is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem} (CI=true: no skipping)")
        pytest.skip(problem)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[MakeCluster]:
    """Makes clusters of hosts for the test (`a, b = cluster(2)`); all are removed after it,
    however it ends."""
    require_hosts()
    with contextlib.ExitStack() as made:

        def make(count: int = 2, forward: Sequence[int] = (REDIS_PORT, AMQP_PORT)) -> Cluster:
            return made.enter_context(Cluster(count, tmp_path / "hosts", forward))

        yield make
