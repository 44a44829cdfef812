"""`?wait_replicas=N&wait_timeout=SECONDS`: a publish that returns only once N replicas hold
its messages (Redis `WAIT`, sent in the same round trip as the writes).

Redis replicates asynchronously: a primary acknowledges a write before any replica has it, and
a failover in that moment promotes a replica without it. `WAIT` narrows that window for what
clients publish: the reply says how many replicas acknowledged every write this connection
made so far. Fewer than asked within the timeout is `NotReplicated` (a `BrokerError`): the
messages are on the primary and will run unless it fails before a replica has them.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import msgspec

from forkq.exceptions import ConfigurationError, NotReplicated
from forkq.settings import redacted

REPLICATION_PARAMS = ("wait_replicas", "wait_timeout")
DEFAULT_WAIT_TIMEOUT = 1.0


class Replication(msgspec.Struct, frozen=True):
    """How many replicas a publish waits for (0: none, no `WAIT`), and for how long."""

    replicas: int = 0
    timeout: float = DEFAULT_WAIT_TIMEOUT

    @property
    def wait_command(self) -> tuple[str, int, int]:
        return ("WAIT", self.replicas, max(1, int(self.timeout * 1000)))

    def check(self, acknowledged: int, messages: int) -> None:
        """Raise `NotReplicated` when fewer replicas than asked acknowledged the publish."""
        if acknowledged < self.replicas:
            raise NotReplicated(
                f"{messages} message(s) published to the Redis primary, but only "
                f"{acknowledged} of {self.replicas} replicas (wait_replicas) acknowledged them "
                f"within {self.timeout:g} s: they are queued, and would be lost if the primary "
                "failed before a replica had them"
            )


def replication_from_url(url: str) -> Replication:
    """The URL's `wait_replicas` (default 0) and `wait_timeout` (seconds, default 1)."""
    query = parse_qs(urlsplit(url).query)
    replicas_text = query.get("wait_replicas", ["0"])[-1]
    timeout_text = query.get("wait_timeout", [str(DEFAULT_WAIT_TIMEOUT)])[-1]
    if not (replicas_text.isascii() and replicas_text.isdigit()):
        raise ConfigurationError(
            f"wait_replicas in {redacted(url)!r} must be a whole number of replicas"
        )
    try:
        timeout = float(timeout_text)
    except ValueError:
        timeout = -1.0
    if not 0 < timeout <= 3600:  # NaN and infinity fail too; WAIT 0 would never return
        raise ConfigurationError(
            f"wait_timeout in {redacted(url)!r} must be a number of seconds > 0 and at most 3600"
        )
    return Replication(int(replicas_text), timeout)
