"""What a control request to the workers got back (`forkq.control`): one value for both ways
of reaching them, over the broker or through this host's control sockets."""

from __future__ import annotations

import enum
from typing import Any

import msgspec


class Route(enum.Enum):
    BROKER = "broker"  # every worker on every host, through its agent
    LOCAL = "local"  # the workers of this host, through their masters' control sockets


class Replies(msgspec.Struct, frozen=True):
    """Each worker's reply body by worker name (`{"error": ...}` when it refused the command:
    an unknown command, bad arguments), and the workers expected that did not answer."""

    command: str
    replies: dict[str, dict[str, Any]]
    missing: tuple[str, ...] = ()
    last_seen: dict[str, float] = {}  # of the missing: when each last announced itself
    route: Route = Route.BROKER
    warnings: tuple[str, ...] = ()  # sockets skipped or silent (local), names answered twice

    @property
    def errors(self) -> dict[str, str]:
        """The workers that answered with an error, and what it said."""
        return {name: str(body["error"]) for name, body in self.replies.items() if "error" in body}

    @property
    def complete(self) -> bool:
        """Some worker answered, none is missing, and none refused."""
        return bool(self.replies) and not self.missing and not self.errors
