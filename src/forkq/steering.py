"""The app's hold on work already sent and on the workers running it: `app.revoke`,
`app.set_rate_limit` and `app.control`, each forwarding to the module that does it
(forkq/revocation.py, the result backend's rate overrides, forkq/control.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from forkq.control import Control
from forkq.revocation import TELL_TIMEOUT, Told, revoke
from forkq.throttle import Rate, parse_rate

if TYPE_CHECKING:
    from forkq.app import Forkq


class Steering:
    """Mixed into `Forkq`: its control client (`Forkq.close` closes it)."""

    _control: Control | None

    @property
    def _app(self) -> Forkq:
        """The app this is mixed into (`Forkq` returns itself)."""
        raise NotImplementedError

    def revoke(
        self,
        task_ids: str | Iterable[str],
        *,
        terminate: bool = False,
        signal: str = "SIGTERM",
        ttl: float | None = None,
        timeout: float = TELL_TIMEOUT,
    ) -> Told:
        """Revoke tasks by id, stored first (workers down or started later honour it), then
        running workers told; `terminate` sends `signal` to the child running one. A revoked
        task is REVOKED and its `get()` raises `TaskRevoked` (forkq/revocation.py)."""
        app = self._app
        return revoke(app, task_ids, terminate=terminate, signal=signal, ttl=ttl, timeout=timeout)

    def set_rate_limit(self, task: str, rate: Rate | str | float | None) -> None:
        """Make `rate` ("10/s", "100/m", as the `rate_limit` option takes it) the limit in
        force for the task named `task` on every worker, from their next take on, without a
        restart; None puts back the task's own. Kept in the result backend until changed.
        Only tasks defined with a `rate_limit` are limited: this changes their rate."""
        interval = None if rate is None else parse_rate(rate, f"rate limit of {task}").interval
        self._app.backend.set_rate_override(task, interval)

    @property
    def control(self) -> Control:
        """Inspect and control this app's workers, on every host (`forkq.control`)."""
        if self._control is None:
            app = self._app
            url, secret = app.settings.broker_url, app.settings.secret
            self._control = Control(url, lambda: app.broker, secret)
        return self._control
