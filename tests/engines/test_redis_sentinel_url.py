"""`redis+sentinel://` URLs and the `wait_replicas` option read without a server: what they
name, a one-line `ConfigurationError` for each malformed one, passwords never shown."""

from __future__ import annotations

import time

import pytest

from forkq.engines.contract import outgoing
from forkq.engines.redis.client import client_from_url, close_client, same_server
from forkq.engines.redis.replication import Replication, replication_from_url
from forkq.engines.redis.sentinel import SentinelTarget, parse_sentinel_url
from forkq.engines.registry import open_broker
from forkq.exceptions import BrokerUnavailable, ConfigurationError, NotReplicated
from forkq.settings import redacted
from tests.ports import server_port


def test_the_url_names_the_sentinels_the_master_and_the_database() -> None:
    url = "redis+sentinel://app:p%40ss@s1:26380,s2,[::1]:26381/my%20primary/3?prefix=x"
    assert parse_sentinel_url(url) == SentinelTarget(
        (("s1", 26380), ("s2", 26379), ("::1", 26381)), "my primary", 3, "app", "p@ss"
    )
    assert parse_sentinel_url("redis+sentinel://s1/primary").db == 0
    assert parse_sentinel_url("redis+sentinel://:pw@s1/primary/").password == "pw"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel:///primary/0", "names no Sentinel host"),
        ("redis+sentinel://:secret@/primary/0", "names no Sentinel host"),
        ("redis+sentinel://s1:26379", "names no master"),
        ("redis+sentinel://s1:26379//0", "names no master"),
        ("redis+sentinel://s1:port/primary/0", "Sentinel port 'port'"),
        ("redis+sentinel://s1:0/primary/0", "Sentinel port '0'"),
        ("redis+sentinel://s1:65536/primary/0", "Sentinel port '65536'"),
        ("redis+sentinel://s1:26379,,s2/primary/0", "a Sentinel without a host"),
        ("redis+sentinel://s1/primary/zero", "database 'zero'"),
        ("redis+sentinel://s1/primary/-1", "database '-1'"),
        ("redis+sentinel://s1/primary/0/1", "more than /MASTER_NAME/DB"),
        ("redis+sentinel://s1/primary/0?db=2", "sets 'db' in its query"),
        ("redis+sentinel://s1/primary/0?socket_timeout=soon", "'socket_timeout'"),
    ],
)
def test_a_malformed_url_is_one_line_that_says_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        open_broker(url)
    message = str(error.value)
    assert says in message and "\n" not in message
    assert "redis+sentinel://[user:password@]host:port" in message  # the form to use
    assert "secret" not in message


def test_the_passwords_of_a_sentinel_url_are_never_shown() -> None:
    url = "redis+sentinel://app:s3cret@s1:1,s2:2/primary/0?sentinel_password=t0p&prefix=p"
    shown = redacted(url)
    assert shown == "redis+sentinel://app:***@s1:1,s2:2/primary/0?sentinel_password=***&prefix=p"
    assert redacted("redis://h:6379/0?prefix=p") == "redis://h:6379/0?prefix=p"


def test_connection_options_reach_the_primary_and_the_sentinels_their_own_password() -> None:
    client, prefix = client_from_url(
        "redis+sentinel://app:pw@s1:1/primary/2?socket_timeout=3&prefix=p&sentinel_password=sp"
        "&lease_ttl=5&wait_replicas=1"
    )
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert prefix == "p"
        assert (kwargs["db"], kwargs["username"], kwargs["password"]) == (2, "app", "pw")
        assert kwargs["socket_timeout"] == 3.0
        assert not {"prefix", "lease_ttl", "wait_replicas", "sentinel_password"} & set(kwargs)
        sentinel = client.connection_pool.sentinel_manager.sentinels[0]  # type: ignore[attr-defined]
        own = sentinel.connection_pool.connection_kwargs
        assert (own["host"], own["port"], own["password"]) == ("s1", 1, "sp")
        assert own["socket_timeout"] == 3.0
    finally:
        close_client(client)


def test_clients_of_one_primary_through_the_same_sentinels_share_a_server() -> None:
    """Where they do, a task's result and its ack go in one round trip."""
    made = [
        client_from_url(url)[0]
        for url in (
            "redis+sentinel://s1:1,s2:2/primary/0?prefix=a",
            "redis+sentinel://s2:2,s1:1/primary/0?prefix=b",
            "redis+sentinel://s1:1,s2:2/primary/1",
            "redis+sentinel://s1:1,s2:2/other/0",
            "redis+sentinel://s1:1,s3:3/primary/0",
            "redis://s1:1/0",
        )
    ]
    try:
        first, *others = made
        assert [same_server(first, other) for other in others] == [
            True, False, False, False, False,
        ]  # fmt: skip
    finally:
        for client in made:
            close_client(client)


def test_wait_replicas_and_its_timeout() -> None:
    assert replication_from_url("redis://h/0") == Replication(0, 1.0)
    assert replication_from_url("redis://h/0?wait_replicas=2&wait_timeout=0.25") == Replication(
        2, 0.25
    )
    assert Replication(1, 0.25).wait_command == ("WAIT", 1, 250)
    Replication(1, 1.0).check(2, 1)
    with pytest.raises(NotReplicated, match="only 0 of 1 replicas"):
        Replication(1, 1.0).check(0, 3)


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("wait_replicas=one", "wait_replicas in"),
        ("wait_replicas=-1", "wait_replicas in"),
        ("wait_replicas=1&wait_timeout=0", "wait_timeout in"),
        ("wait_replicas=1&wait_timeout=nan", "wait_timeout in"),
        ("wait_replicas=1&wait_timeout=soon", "wait_timeout in"),
        ("wait_replicas=1&wait_timeout=10", "at most"),  # longer than the 5 s read timeout
    ],
)
def test_a_bad_wait_option_is_a_configuration_error(query: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        open_broker(f"redis://:secret@127.0.0.1:6379/15?{query}")


def test_a_short_socket_timeout_is_fine_without_wait_replicas() -> None:
    open_broker("redis://127.0.0.1:6379/15?socket_timeout=0.5").close()
    with pytest.raises(ConfigurationError, match=r"at most 0\.25 s"):
        open_broker("redis://127.0.0.1:6379/15?socket_timeout=0.5&wait_replicas=1")


def test_sentinels_that_cannot_be_reached_are_an_outage_said_in_one_line() -> None:
    port = server_port()  # nothing listens there
    broker = open_broker(f"redis+sentinel://app:s3cret@127.0.0.1:{port}/primary/0")
    started = time.monotonic()
    try:
        with pytest.raises(BrokerUnavailable) as error:
            broker.publish([outgoing("q", b"x", 0)])
    finally:
        broker.close()
    assert time.monotonic() - started < 1.0  # one attempt, not redis-py's ten with back-off
    message = str(error.value)
    assert f"no Sentinel of 127.0.0.1:{port} names a primary 'primary' that is up" in message
    assert "\n" not in message and "s3cret" not in message and "Redis<" not in message
