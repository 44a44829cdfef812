"""Driver errors raised as forkq's at an engine's edge, the driver's kept as the cause."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar

import msgspec

E = TypeVar("E", bound=Exception)


class Refusal(msgspec.Struct, Generic[E], frozen=True):
    """A driver error that is a refusal with a known cause (a full server), raised as
    `error` with `hint` (what happened and what to do) rather than the driver's bare text."""

    applies: Callable[[E], bool]
    error: type[Exception]
    hint: str


class DriverErrors(Generic[E]):
    """A driver's error becomes `unavailable` when `is_outage` says it is a connection
    problem (ridden out), else `failed`. No state between uses: an engine makes one and
    enters it around each of its calls, which costs less than a generator per call."""

    __slots__ = ("_driver", "_failed", "_is_outage", "_label", "_refusal", "_unavailable")

    def __init__(
        self,
        driver: type[E],
        is_outage: Callable[[E], bool],
        unavailable: type[Exception],
        failed: type[Exception],
        label: str,
        refusal: Refusal[E] | None = None,
    ) -> None:
        self._driver, self._is_outage = driver, is_outage
        self._unavailable, self._failed, self._label = unavailable, failed, label
        self._refusal = refusal

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, self._driver):
            refusal = self._refusal
            if refusal is not None and refusal.applies(exc):
                raise refusal.error(f"{self._label}: {refusal.hint} ({exc})") from exc
            error = self._unavailable if self._is_outage(exc) else self._failed
            raise error(f"{self._label}: {exc}") from exc
