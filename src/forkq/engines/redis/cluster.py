"""`redis+cluster://` URLs: a client of a Redis Cluster, which finds the node of each key.

    redis+cluster://[user:password@]host:port[,host:port...][/0][?prefix=...&socket_timeout=...]

The hosts are where the client starts: any reachable one tells it the others and which slots
each serves. A host without a port is on 6379. A cluster has one database, 0. Query parameters
other than forkq's own are read as redis-py reads a `redis://` URL's.

Every key forkq writes is hash-tagged (`keys.py`): a queue's keys share a slot, a task's keys
another, so each script, MULTI/EXEC and multi-key command touches one slot. What spans slots
is split by the `ClusterWire` (`cluster_wire.py`): a publish to several queues is one
MULTI/EXEC per queue's slot, a read of several results one batch of GETs per node, and a
blocking read across queues one XREADGROUP per slot, all in flight at once.

Construction asks the URL's hosts for the cluster's layout: a cluster that none of them
answers for raises `redis.ConnectionError` there.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import msgspec
import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException

from forkq.engines.redis.url_parts import addresses, connection_options, credentials
from forkq.exceptions import ConfigurationError
from forkq.settings import redacted

SCHEME = "redis+cluster"
DEFAULT_PORT = 6379
_FORM = "redis+cluster://[user:password@]host:port[,host:port...][/0]"


class ClusterTarget(msgspec.Struct, frozen=True):
    """What a `redis+cluster://` URL names."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None


def parse_cluster_url(url: str) -> ClusterTarget:
    """The starting nodes and the credentials; a `ConfigurationError` of one line for a URL
    not of the form."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    if parts.path.strip("/") not in ("", "0"):
        raise _bad(url, f"names database {parts.path.strip('/')!r}: a cluster has only 0")
    username, password = credentials(userinfo)
    return ClusterTarget(
        addresses(hosts, DEFAULT_PORT, "node", lambda what: _bad(url, what)), username, password
    )


def _bad(url: str, what: str) -> ConfigurationError:
    return ConfigurationError(f"{redacted(url)!r} {what}: use {_FORM}")


def cluster_client(
    url: str, query: list[tuple[str, str]], identity: dict[str, Any]
) -> RedisCluster:
    """A client of the cluster the URL's nodes belong to; `query`: the URL's parameters forkq
    does not read itself."""
    target = parse_cluster_url(url)
    options = connection_options(query, lambda what: _bad(url, what))
    try:
        return RedisCluster(
            startup_nodes=[_node(host, port) for host, port in target.nodes],
            username=target.username,
            password=target.password,
            **options,
            **identity,
        )
    except RedisClusterException as exc:  # redis-py's, when no node gives the layout
        nodes = ", ".join(f"{host}:{port}" for host, port in target.nodes)
        raise redis.ConnectionError(
            f"no node of {nodes} gives the cluster's layout ({exc})".replace("\n", " ")
        ) from None


def node_clients(client: RedisCluster) -> list[redis.Redis]:
    """The clients of the nodes this cluster client knows (each with its connection pool)."""
    known: Any = client  # redis-py's cluster API is untyped
    return [known.get_redis_connection(node) for node in known.get_nodes()]


def _node(host: str, port: int) -> ClusterNode:
    node: Any = ClusterNode  # untyped in redis-py
    made: ClusterNode = node(host, port)
    return made
