"""An engine as the registry sees it: how to open its broker and its result backend."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from forkq.engines.contract.broker import Broker
from forkq.engines.contract.results import ResultBackend
from forkq.engines.contract.values import DeadLetterCaps


class Engine(msgspec.Struct, frozen=True):
    name: str  # as people know it: "Redis", "RabbitMQ"
    broker: Callable[[str, DeadLetterCaps], Broker]
    results: Callable[[str], ResultBackend] | None  # None: the engine keeps no results
    control: bool = False  # its brokers carry control requests (`Broker.control_channel`)
