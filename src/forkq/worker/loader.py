"""Finding the user's app from `-A module[:attribute]`, then importing its task modules.

`-A proj:attr` is that attribute. `-A proj` is the Forkq app defined or imported at the top
level of `proj` (when there are several, the one named `app`); if `proj` is a package with
none, the first of `proj.app`, `proj.forkq`, `proj.celery` and `proj.tasks` that exists and
holds one (SUBMODULES). Once found, the modules named by the app's `include=` and
`autodiscover_tasks` are imported.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

from forkq.app import Forkq
from forkq.exceptions import ConfigurationError
from forkq.task_modules import TaskModuleError, module_exists, raised

# Where `-A proj` looks in a package that holds no app itself, in this order.
SUBMODULES = ("app", "forkq", "celery", "tasks")


class AppLoadError(Exception):
    """The app could not be imported; the message is one line for the user."""


def load_app(spec: str) -> Forkq:
    module_name, _, attribute = spec.partition(":")
    if not module_name:
        raise ConfigurationError(f"-A {spec!r}: expected module[:attribute], e.g. proj.tasks:app")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # `forkq -A proj` finds ./proj like `python -m` would
    module = _import(module_name)
    app = _named_app(module, attribute) if attribute else _search(module)
    try:
        app.import_task_modules()
    except TaskModuleError as exc:
        raise AppLoadError(str(exc)) from exc
    return app


def _import(module_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise AppLoadError(
                f"cannot import {module_name!r}: no module named {exc.name!r} in "
                f"{os.getcwd()} or on sys.path (run forkq where the package is, or set PYTHONPATH)"
            ) from exc
        raise AppLoadError(f"importing {module_name!r} {raised(exc)}") from exc
    except Exception as exc:
        raise AppLoadError(f"importing {module_name!r} {raised(exc)}") from exc


def _named_app(module: ModuleType, attribute: str) -> Forkq:
    app = getattr(module, attribute, None)
    if not isinstance(app, Forkq):
        found = ", ".join(_apps_in(module)) or "none"
        raise AppLoadError(
            f"{module.__name__}:{attribute} is not a Forkq app (Forkq apps there: {found})"
        )
    return app


def _search(module: ModuleType) -> Forkq:
    """The app in `module`, else in the first of its SUBMODULES that exists and holds one."""
    tried = [module.__name__]
    missing = []
    if (app := _only_app(module)) is not None:
        return app
    if hasattr(module, "__path__"):  # a package
        for name in (f"{module.__name__}.{sub}" for sub in SUBMODULES):
            if not module_exists(name):
                missing.append(name)
                continue
            tried.append(name)
            if (app := _only_app(_import(name))) is not None:
                return app
    hint = f" ({', '.join(missing)}: no such module)" if missing else ""
    raise AppLoadError(
        f"no Forkq app in {', '.join(tried)}{hint}; "
        "give the module that makes it: -A MODULE[:ATTRIBUTE]"
    )


def _only_app(module: ModuleType) -> Forkq | None:
    """The app `module` holds at its top level: the only one, else the one named `app`."""
    apps = _apps_in(module)
    distinct = {id(app): app for app in apps.values()}
    if len(distinct) == 1:
        return next(iter(distinct.values()))
    if not distinct:
        return None
    if "app" in apps:
        return apps["app"]
    names = ", ".join(apps)
    raise AppLoadError(
        f"{module.__name__} has {len(distinct)} Forkq apps ({names}); "
        f"name one with -A {module.__name__}:ATTRIBUTE"
    )


def _apps_in(module: ModuleType) -> dict[str, Forkq]:
    return {name: value for name, value in vars(module).items() if isinstance(value, Forkq)}
