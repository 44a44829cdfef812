"""The Redis client forkq opens: what it strips from the URL, and what it costs to connect."""

from __future__ import annotations

from importlib import metadata

import pytest

from forkq.redisclient import client_from_url
from tests.conftest import redis_test_url


def test_forkq_parameters_stay_out_of_the_client_and_the_prefix_comes_back() -> None:
    client, prefix = client_from_url(redis_test_url(lease_ttl=5).replace("prefix=", "prefix=p-"))
    assert prefix.startswith("p-forkq-test-")
    assert not {"prefix", "lease_ttl"} & set(client.connection_pool.connection_kwargs)
    client.close()


def test_a_new_connection_reads_no_package_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    """redis-py looks its own version up on disk for each connection unless given it: about
    1 ms of a child's start-up, per connection."""
    lookups: list[str] = []
    real_version = metadata.version
    monkeypatch.setattr(
        metadata, "version", lambda name: lookups.append(name) or real_version(name)
    )
    client, _ = client_from_url(redis_test_url())
    assert client.ping()
    client.close()
    assert lookups == []
