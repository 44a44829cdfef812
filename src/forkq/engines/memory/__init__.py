"""The in-process engine: queues and results in this process's memory, for tests and eager
mode (`memory://NAME`). Not shared across processes."""

from forkq.engines.contract import Engine
from forkq.engines.memory.broker import MemoryBroker
from forkq.engines.memory.results import MemoryBackend

ENGINE = Engine("memory", MemoryBroker, MemoryBackend)

__all__ = ["ENGINE", "MemoryBackend", "MemoryBroker"]
