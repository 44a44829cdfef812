"""What a Redis server's `maxmemory-policy` means for forkq's keys, said once by the worker at
start (`RedisBroker.server_warnings`).

Over `maxmemory`, `noeviction` refuses writes (publish then raises `BrokerFull`; nothing is
lost). The other policies make room by deleting keys instead: `allkeys-*` any key, a queue's
streams and delayed set included (their messages lost without a trace); `volatile-*` only keys
with an expiry, which in forkq are the liveness and lease keys (`prefix:worker:W`, the
scheduler's lease) and results: a worker whose key is evicted is taken for dead and its tasks
run again elsewhere, two schedulers may lead at once, and results vanish before their TTL.
INFO, not CONFIG GET: CONFIG is often renamed or refused (managed services, ACLs); INFO
memory carries the policy too."""

from __future__ import annotations

import enum
import logging

import redis
from redis.cluster import RedisCluster

from forkq.engines.redis.client import Client
from forkq.engines.redis.cluster import node_clients

log = logging.getLogger("forkq.engines.redis")


class Evicts(enum.Enum):
    """Which keys a policy may delete to make room."""

    NOTHING = "nothing"
    WITH_EXPIRY = "keys with an expiry"
    ANY = "any key"


def evicts(policy: str) -> Evicts:
    """The keys `policy` (a `maxmemory-policy` value) may delete; an unknown one, as any."""
    if policy == "noeviction":
        return Evicts.NOTHING
    if policy.startswith("volatile-"):
        return Evicts.WITH_EXPIRY
    return Evicts.ANY


_CONSEQUENCES = {
    Evicts.WITH_EXPIRY: (
        "it may delete forkq's keys that have an expiry (a worker's liveness key, the "
        "scheduler's lease, results) before they expire: a live worker's tasks would be taken "
        "for a dead worker's and run again, two schedulers could fire, results vanish early"
    ),
    Evicts.ANY: (
        "it may delete any key, a queue's streams and delayed set included: their messages "
        "would be lost without a trace"
    ),
}


def eviction_warning(client: Client, label: str) -> str | None:
    """A sentence for the worker to log when the server's policy can delete forkq's keys (on
    a cluster, any node's); None when it cannot (noeviction), or when INFO cannot be read
    (said at debug level)."""
    servers = node_clients(client) if isinstance(client, RedisCluster) else [client]
    for server in servers:
        warning = _server_warning(server, label)
        if warning is not None:
            return warning
    return None


def _server_warning(client: redis.Redis, label: str) -> str | None:
    try:
        info = client.info("memory")
    except redis.RedisError as exc:
        log.debug("%s: could not read its maxmemory-policy (INFO memory): %s", label, exc)
        return None
    policy, limit = str(info.get("maxmemory_policy", "")), info.get("maxmemory", 0)
    if not policy:
        log.debug("%s: INFO memory has no maxmemory_policy: not checked", label)
        return None
    kind = evicts(policy)
    if kind is Evicts.NOTHING:
        return None
    return (
        f"{label}: maxmemory-policy is {policy} (maxmemory {limit} bytes; 0: no limit yet), "
        f"so when the server fills up {_CONSEQUENCES[kind]}. Use noeviction (publish then "
        "fails with a clear error when full, and nothing is lost): "
        "CONFIG SET maxmemory-policy noeviction, or maxmemory-policy in redis.conf"
    )
