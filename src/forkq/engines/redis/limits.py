"""Rate and concurrency limits on the Redis result backend's server: each take is one script
call (rate.lua, slots.lua; the rules: `forkq.engines.contract.limits`), on the server's clock.
Keys: `forkq.engines.redis.keys`."""

from __future__ import annotations

import functools
import random
from importlib import resources
from typing import Any

from forkq.engines.contract import RATE_TOLERANCE, Backoff, check_interval
from forkq.engines.redis.keys import rate_keys, slot_keys

_US = 1_000_000  # microseconds a second: the scripts' unit of time


@functools.cache
def _script(name: str) -> str:
    """A script's text after clock.lua (the helpers both share), read once per process tree."""
    scripts = resources.files("forkq.engines.redis.lua")
    return scripts.joinpath("clock.lua").read_text() + scripts.joinpath(name).read_text()


def _us(seconds: float) -> int:
    return max(1, round(seconds * _US))


class RedisLimits:
    """The backend's limits, on its client and prefix."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client, self.prefix = client, prefix
        self._rate = client.register_script(_script("rate.lua"))
        self._slots = client.register_script(_script("slots.lua"))

    def take_rate(self, task: str, key: str, interval: float, holder: str, keep: float) -> float:
        check_interval(interval)
        keys = rate_keys(self.prefix, task, key, holder)
        args = [_us(interval), max(1, round(keep * 1000)), _us(RATE_TOLERANCE)]
        return int(self._rate(keys=keys, args=args)) / _US

    def set_rate_override(self, task: str, interval: float | None) -> None:
        override = rate_keys(self.prefix, task, "", "")[0]
        if interval is None:
            self.client.delete(override)
            return
        check_interval(interval)
        self.client.set(override, _us(interval))

    def rate_override(self, task: str) -> float | None:
        raw = self.client.get(rate_keys(self.prefix, task, "", "")[0])
        text = b"" if raw is None else bytes(raw)
        return int(text) / _US if text.isdigit() and int(text) > 0 else None

    def take_slot(
        self, task: str, key: str, holder: str, limit: int, lease: float, backoff: Backoff
    ) -> float:
        keys = slot_keys(self.prefix, task, key, holder)
        args = [holder, limit, _us(lease), _us(backoff.first), _us(backoff.most)]
        args += [repr(random.random()), max(1, round(backoff.kept * 1000))]
        return int(self._slots(keys=keys, args=args)) / _US

    def release_slot(self, task: str, key: str, holder: str) -> None:
        held, backoff = slot_keys(self.prefix, task, key, holder)
        pipe = self.client.pipeline(transaction=False)  # one round trip
        pipe.zrem(held, holder)
        pipe.delete(backoff)
        pipe.execute()
