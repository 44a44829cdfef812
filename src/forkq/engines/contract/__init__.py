"""What every engine provides and the worker relies on: the typed interfaces (broker, result
backend), the values that cross them, and the helpers every engine shares."""

from forkq.engines.contract.broker import (
    DEFAULT_DEAD_CAPS,
    DEFAULT_LEASE_TTL,
    LAST_MOMENT,
    MAX_DELAY,
    MAX_LEASE_TTL,
    SIGHTINGS_KEPT,
    Broker,
    Consumer,
    DeadLetter,
    DeadLetterCaps,
    Delivery,
    Sighting,
    check_delay,
    check_fetch_args,
    lease_ttl_from_url,
)
from forkq.engines.contract.engine import Engine
from forkq.engines.contract.results import ResultBackend, ResultWrite, StoredResult

__all__ = [
    "DEFAULT_DEAD_CAPS",
    "DEFAULT_LEASE_TTL",
    "LAST_MOMENT",
    "MAX_DELAY",
    "MAX_LEASE_TTL",
    "SIGHTINGS_KEPT",
    "Broker",
    "Consumer",
    "DeadLetter",
    "DeadLetterCaps",
    "Delivery",
    "Engine",
    "ResultBackend",
    "ResultWrite",
    "Sighting",
    "StoredResult",
    "check_delay",
    "check_fetch_args",
    "lease_ttl_from_url",
]
