"""Revoked task ids on the Redis result backend's server: each revocation is one call of
revoke.lua, each read one call of revocations.lua (the rules:
`forkq.engines.contract.revocations`). Keys: `forkq.engines.redis.keys` (`revoked_keys`).
Expiries are the caller's clock, as on the other backends, in milliseconds."""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Sequence
from importlib import resources
from typing import Any

from forkq.engines.contract import (
    REVOKED_MAX,
    Revocation,
    Revocations,
    check_revocation,
)
from forkq.engines.redis.keys import revoked_keys


@functools.cache
def _script(name: str) -> str:
    """A script's text, read once per process tree."""
    return resources.files("forkq.engines.redis.lua").joinpath(name).read_text()


class RedisRevoked:
    """The backend's revocations, on its client and prefix."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.keys = revoked_keys(prefix)
        self._revoke = client.register_script(_script("revoke.lua"))
        self._read = client.register_script(_script("revocations.lua"))

    def revoke(self, task_ids: Sequence[str], ttl: float) -> None:
        check_revocation(task_ids, ttl)
        now = time.time()
        args = [_ms(now), _ms(now + ttl), REVOKED_MAX, uuid.uuid4().hex, *task_ids]
        self._revoke(keys=self.keys, args=args)

    def revocations(self, since: int) -> Revocations:
        reply = self._read(keys=self.keys, args=[int(since), _ms(time.time())])
        cursor, epoch, pairs = int(reply[0]), bytes(reply[1]).decode(errors="replace"), reply[2:]
        found = tuple(
            Revocation(bytes(pairs[i]).decode(errors="replace"), float(pairs[i + 1]) / 1000)
            for i in range(0, len(pairs) - 1, 2)
        )
        return Revocations(found, cursor, epoch)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
