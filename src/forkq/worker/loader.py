"""Finding the user's app from `-A module[:attribute]`."""

from __future__ import annotations

import importlib
import os
import sys

from forkq.app import Forkq
from forkq.exceptions import ConfigurationError


class AppLoadError(Exception):
    """The app could not be imported; the message is one line for the user."""


def load_app(spec: str) -> Forkq:
    module_name, _, attribute = spec.partition(":")
    if not module_name:
        raise ConfigurationError(f"-A {spec!r}: expected module[:attribute], e.g. proj.tasks:app")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # `forkq -A proj` finds ./proj like `python -m` would
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppLoadError(f"cannot import {module_name!r}: {exc}") from exc
    except Exception as exc:
        raise AppLoadError(f"importing {module_name!r} raised {type(exc).__name__}: {exc}") from exc
    if attribute:
        app = getattr(module, attribute, None)
        if not isinstance(app, Forkq):
            raise AppLoadError(f"{module_name}:{attribute} is not a Forkq app")
        return app
    apps = [value for value in vars(module).values() if isinstance(value, Forkq)]
    if len(apps) != 1:
        found = "no Forkq app" if not apps else f"{len(apps)} Forkq apps"
        raise AppLoadError(f"{module_name} has {found}; name one with -A {module_name}:ATTRIBUTE")
    return apps[0]
