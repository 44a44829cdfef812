"""The Redis engine (`redis://`, `rediss://`, `redis+sentinel://`): queues in streams, results
with a TTL, and the result write and ack of a task in one round trip when both live on the
same server."""

from forkq.engines.contract import Engine
from forkq.engines.redis.broker import RedisBroker
from forkq.engines.redis.results import RedisBackend

ENGINE = Engine("Redis", RedisBroker, RedisBackend, control=True)

__all__ = ["ENGINE", "RedisBackend", "RedisBroker"]
