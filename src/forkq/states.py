"""Task states, as a result backend records them.

PENDING is never stored: it is what an unknown or not-yet-started task id reads as.
"""

from __future__ import annotations

from typing import Final

PENDING: Final = "PENDING"
STARTED: Final = "STARTED"
RETRY: Final = "RETRY"
SUCCESS: Final = "SUCCESS"
FAILURE: Final = "FAILURE"
#: The task was revoked: discarded without running, or its process terminated while it ran
#: (`AsyncResult.revoke`); `get()` raises `TaskRevoked`.
REVOKED: Final = "REVOKED"

#: States after which a task will not change again; `AsyncResult.get()` waits for one of these.
READY_STATES: Final = frozenset({SUCCESS, FAILURE, REVOKED})
