"""The fork half of the app's API: `@app.on_before_fork` and `@app.on_after_fork`, the hooks
the worker runs in its master before any child forks and in each child right after."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

from forkq.exceptions import ConfigurationError

Hook = Callable[[], None]
H = TypeVar("H", bound=Hook)
# After fork, a hook may be `async def`: it runs on the child's event loop (forkq/aio.py).
AfterForkHook = Callable[[], None] | Callable[[], Awaitable[None]]
AH = TypeVar("AH", bound=AfterForkHook)


class ForkHooks:
    """Mixed into `Forkq`: its fork hooks, in the order they were given."""

    before_fork_hooks: list[Hook]
    after_fork_hooks: list[AfterForkHook]

    def on_before_fork(self, fn: H) -> H:
        """Run `fn()` in the worker's master once the app is loaded, before any child forks:
        the place to preload data children will share copy-on-write. It must be a plain
        function: the master runs no event loop (async set-up belongs in an after-fork hook)."""
        if inspect.iscoroutinefunction(fn):
            raise ConfigurationError(
                f"before-fork hook {fn.__qualname__} is `async def`, but before-fork hooks run"
                " in the master, which has no event loop: make it a plain function, or do the"
                " async set-up in an `async def` @app.on_after_fork hook (run on each child's loop)"
            )
        self.before_fork_hooks.append(fn)
        return fn

    def on_after_fork(self, fn: AH) -> AH:
        """Run `fn()` in every child right after fork: the place to open DB engines and clients.
        An `async def` hook runs on the child's event loop, the one its async tasks run on."""
        self.after_fork_hooks.append(fn)
        return fn
