"""Process exit codes of `forkq worker` (documented in the README)."""

from __future__ import annotations

from typing import Final

OK: Final = 0
USAGE: Final = 2  # a bad argument or setting; the message says which
APP_LOAD_FAILED: Final = 3  # -A could not be imported, or a before-fork hook raised
CHILDREN_CANNOT_BOOT: Final = 4  # children kept failing while starting (after-fork hook, broker)
