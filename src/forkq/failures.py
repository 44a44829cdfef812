"""Which type a failed task's error may also be, on the caller's side.

A result record names the remote exception's type by module and qualified name, as text;
nothing is unpickled and no module is imported to find it. The caller's `TaskFailed` is also
an instance of that type when the type is safe to name here:

- a built-in exception (module `builtins`, a subclass of `Exception`: never `SystemExit` or
  `KeyboardInterrupt`, which a caller's `except Exception:` would let through);
- one of forkq's own errors (`WorkerLost`, `SoftTimeLimitExceeded`, ...);
- a type the app registered with `app.register_exception(MyError)`.

It stays a plain `TaskFailed` when no instance of both can be made (`ExceptionGroup`, whose
own `__new__` wants the group's exceptions, which a record does not hold): see `failure_of`.

Records written before the module was stored (and forkq's own failures, which name a bare
type) carry no module: their name is looked up among forkq's errors, then the built-ins.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping

from forkq import exceptions
from forkq.exceptions import TaskFailed, failure_of

TypeKey = tuple[str, str]  # (module, qualified name)

_FORKQ_ERRORS: dict[str, type[Exception]] = {
    cls.__name__: cls
    for cls in vars(exceptions).values()
    if isinstance(cls, type)
    and issubclass(cls, exceptions.ForkqError)
    and cls.__module__ == exceptions.__name__
    and not issubclass(cls, TaskFailed)
}


def type_key(cls: type[BaseException]) -> TypeKey:
    return cls.__module__, cls.__qualname__


def safe_type(
    module: str | None, qualname: str, registered: Mapping[TypeKey, type[Exception]]
) -> type[Exception] | None:
    """The type a record names, if it is one the caller may see; None otherwise."""
    if module is None or module == "builtins":
        found = _FORKQ_ERRORS.get(qualname) if module is None else None
        if found is None:
            candidate = vars(builtins).get(qualname)
            if isinstance(candidate, type) and issubclass(candidate, Exception):
                found = candidate
        return found
    if module == exceptions.__name__:
        return _FORKQ_ERRORS.get(qualname)
    return registered.get((module, qualname))


def task_failure(
    task_id: str,
    exc_module: str | None,
    exc_type: str,
    exc_message: str,
    traceback: str,
    registered: Mapping[TypeKey, type[Exception]],
) -> TaskFailed:
    """The error `get()` raises for a failed task."""
    original = safe_type(exc_module, exc_type, registered)
    return failure_of(original, task_id, exc_type, exc_message, traceback, exc_module)
