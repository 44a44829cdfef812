"""What every engine provides and the worker relies on: the typed interfaces (broker, consumer
session, result backend), the values that cross them, and the helpers every engine shares."""

from forkq.engines.contract.broker import Broker
from forkq.engines.contract.engine import Engine
from forkq.engines.contract.fetching import Claimed, RecoveryClock, fetch_until
from forkq.engines.contract.results import ResultBackend, ResultWrite, StoredResult
from forkq.engines.contract.session import ConsumerSession, check_fetch_args
from forkq.engines.contract.values import (
    DEFAULT_DEAD_CAPS,
    DEFAULT_LEASE_TTL,
    LAST_MOMENT,
    MAX_DELAY,
    MAX_LEASE_TTL,
    MAX_PRIORITY,
    MIN_PRIORITY,
    SIGHTINGS_KEPT,
    Burial,
    Capabilities,
    Consumer,
    DeadLetter,
    DeadLetterCaps,
    Delivery,
    Leftovers,
    Outgoing,
    Recovery,
    Sighting,
    check_delay,
    clamp_priority,
    lease_ttl_from_url,
    outgoing,
)

__all__ = [
    "DEFAULT_DEAD_CAPS",
    "DEFAULT_LEASE_TTL",
    "LAST_MOMENT",
    "MAX_DELAY",
    "MAX_LEASE_TTL",
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "SIGHTINGS_KEPT",
    "Broker",
    "Burial",
    "Capabilities",
    "Claimed",
    "Consumer",
    "ConsumerSession",
    "DeadLetter",
    "DeadLetterCaps",
    "Delivery",
    "Engine",
    "Leftovers",
    "Outgoing",
    "Recovery",
    "RecoveryClock",
    "ResultBackend",
    "ResultWrite",
    "Sighting",
    "StoredResult",
    "check_delay",
    "check_fetch_args",
    "clamp_priority",
    "fetch_until",
    "lease_ttl_from_url",
    "outgoing",
]
