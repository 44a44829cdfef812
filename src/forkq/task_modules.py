"""Importing the modules that define an app's tasks: `include=` and `autodiscover_tasks`.

Both name modules in the app's own source, never in a message. They are imported when the
worker loads the app (and by `app.import_task_modules()` in other processes), not when the
app is made: a tasks module usually imports the app's module itself, which is then still
being executed. A named module that cannot be imported, or raises while it is, is an error
naming it; autodiscovery only skips a package that has no `tasks` module at all.
"""

from __future__ import annotations

import importlib
import importlib.util
import traceback
from collections.abc import Iterable
from types import ModuleType

from forkq.exceptions import ForkqError


class TaskModuleError(ForkqError):
    """A module the app named could not be imported; the message is one line naming it."""


def import_included(names: Iterable[str]) -> list[ModuleType]:
    """`include=[...]`: each module, which must exist."""
    return [import_named(name, "include") for name in names]


def import_discovered(packages: Iterable[tuple[str, str]]) -> list[ModuleType]:
    """`autodiscover_tasks([...])`: `<package>.tasks` (or the related name given) for each
    package that has one."""
    found = []
    for package, related_name in packages:
        import_named(package, "autodiscover_tasks")
        if module_exists(f"{package}.{related_name}"):
            found.append(import_named(f"{package}.{related_name}", "autodiscover_tasks"))
    return found


def module_exists(name: str) -> bool:
    """Whether `name` can be found, its parent package being importable."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def import_named(name: str, where: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(f"{exc.name}.")):
            raise TaskModuleError(f"{where}: no module named {name!r}") from exc
        raise TaskModuleError(f"{where}: importing {name!r} {raised(exc)}") from exc
    except Exception as exc:
        raise TaskModuleError(f"{where}: importing {name!r} {raised(exc)}") from exc


def raised(exc: BaseException) -> str:
    """`raised NameError: name 'x' is not defined (proj/tasks.py, line 4)`: the exception and
    the innermost frame it came from, so a one-line error still says where to look."""
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if "<frozen importlib" not in f.filename]
    where = f" ({user[-1].filename}, line {user[-1].lineno})" if user else ""
    if isinstance(exc, SyntaxError):
        where = ""  # its message names the file and line already
    return f"raised {type(exc).__name__}: {exc}{where}"
