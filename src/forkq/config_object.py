"""Settings read from a module, a class, an object or a mapping: `app.config_from_object`.

Names are forkq's setting names (the fields of `Settings`), or Celery's lowercase names where
they mean the same thing. Public attributes that are modules, classes or functions are not
settings (a settings module's imports); upper-case names are not either (a Django settings
module holds many), unless `namespace` picks them: `namespace="CELERY"` reads `CELERY_BROKER_URL`
as `broker_url`. Every other name must be understood, so a typo is an error, not a default:

- Celery settings for what forkq always does are accepted when they ask for it
  (`task_serializer="json"`, `task_acks_late=True`) and refused otherwise;
- Celery's tuning settings that forkq sets another way (`worker_concurrency`: `forkq worker -c`)
  are ignored with a `ForkqWarning` saying where the setting lives;
- Celery settings that change what runs or where (`task_routes`, `beat_schedule`) are refused:
  ignoring them would be a silent failure.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from forkq.exceptions import ConfigurationError, ForkqWarning

ALIASES: dict[str, str] = {  # another name -> forkq's
    "broker": "broker_url",
    "backend": "result_backend",
    "task_default_queue": "default_queue",
    "task_ignore_result": "ignore_result",
    "task_track_started": "track_started",
    "result_expires": "result_ttl",
    "task_always_eager": "eager",  # when the app has that setting
    "worker_send_task_events": "events",  # forkq worker -E
    "task_send_sent_event": "events_sent",
}

_JSON = "forkq always sends and stores JSON"
FIXED: dict[str, tuple[tuple[Any, ...], str]] = {  # accepted values, and why only those
    "task_serializer": (("json",), _JSON),
    "result_serializer": (("json",), _JSON),
    "accept_content": ((["json"], ("json",), {"json"}), _JSON),
    "result_accept_content": ((["json"], ("json",), {"json"}, None), _JSON),
    "task_acks_late": ((True,), "forkq acks a task only once its result is stored"),
    "task_reject_on_worker_lost": (
        (True,),
        "forkq runs a task whose process died again, up to the max_deliveries setting "
        "(max_deliveries=1: never)",
    ),
    "enable_utc": ((True,), "forkq keeps times as Unix times and aware datetimes"),
    # Either value: forkq's eager get() raises a failure as it would from a worker's (True's
    # effect, at get() rather than at the call), and get(propagate=False) returns it.
    "task_eager_propagates": ((True, False), "it is True or False"),
}

IGNORED: dict[str, str] = {  # Celery tuning that forkq sets elsewhere or decides itself
    "worker_prefetch_multiplier": "forkq sizes prefetch itself (forkq worker --prefetch)",
    "worker_concurrency": "use forkq worker -c N",
    "worker_max_tasks_per_child": "use forkq worker --max-tasks-per-child N",
    "worker_max_memory_per_child": "use forkq worker --max-memory-per-child (USS, not KiB)",
    "task_time_limit": "use forkq worker --time-limit or the task's time_limit",
    "task_soft_time_limit": "use forkq worker --soft-time-limit or the task's soft_time_limit",
    "timezone": "forkq takes aware datetimes and Unix times",
    "result_extended": "forkq always stores the task's name",
    "broker_connection_retry": "forkq always rides out a broker outage",
    "broker_connection_retry_on_startup": "forkq always rides out a broker outage",
    "task_create_missing_queues": "forkq creates queues on first use",
}

REFUSED: dict[str, str] = {  # ignoring these would change what runs, or where
    "task_routes": "forkq has no router: give the task a queue= (or apply_async(queue=...))",
    "task_queues": "forkq declares queues on first use: give tasks a queue= and run "
    "forkq worker -Q",
    "beat_schedule": "declare periodic tasks with @app.periodic(cron=... or every=...) or "
    "app.add_periodic(task, ...)",
    "task_annotations": "set options on the task itself",
}


def settings_from_object(
    source: object, fields: Iterable[str], namespace: str | None = None
) -> dict[str, Any]:
    """The settings `source` holds, by forkq's names (`fields`); see the module's doc."""
    known = set(fields)
    where = _describe(source)
    values: dict[str, Any] = {}
    for raw_name, value in _items(_resolve(source) if isinstance(source, str) else source):
        name = _setting_name(raw_name, namespace, known)
        if name is None:
            continue
        target = ALIASES.get(name, name)
        if target in known:
            values[target] = value.total_seconds() if isinstance(value, timedelta) else value
        elif name in FIXED:
            accepted, why = FIXED[name]
            if not any(value == ok and type(value) is type(ok) for ok in accepted):
                raise ConfigurationError(f"setting {raw_name}={value!r} is not supported: {why}")
        elif name in IGNORED:
            warnings.warn(
                f"setting {raw_name} ignored: {IGNORED[name]}", ForkqWarning, stacklevel=3
            )
        elif name in REFUSED:
            raise ConfigurationError(f"setting {raw_name} is not supported: {REFUSED[name]}")
        else:
            other = sorted(alias for alias, target in ALIASES.items() if target in known)
            raise ConfigurationError(
                f"unknown setting {raw_name} in {where}; forkq's settings: "
                f"{', '.join(sorted(known))}; also read: {', '.join(other)}"
            )
    return values


def _setting_name(raw: str, namespace: str | None, known: set[str]) -> str | None:
    """The lowercase name of an attribute that is a setting; None for one that is not."""
    if namespace is not None:
        prefix = f"{namespace}_"
        return raw[len(prefix) :].lower() if raw.startswith(prefix) else None
    if raw.startswith("_"):
        return None
    if raw != raw.lower():
        lower = raw.lower()
        for candidate in (lower, lower.removeprefix("celery_")):
            if _understood(candidate, known):
                raise ConfigurationError(
                    f"setting {raw}: forkq reads lowercase names, as Celery 4 and later do "
                    f"({candidate}), or upper-case ones with a namespace "
                    "(config_from_object(..., namespace='CELERY') reads CELERY_BROKER_URL)"
                )
        return None
    return raw


def _understood(name: str, known: set[str]) -> bool:
    return ALIASES.get(name, name) in known or any(name in t for t in (FIXED, IGNORED, REFUSED))


def _describe(source: object) -> str:
    if isinstance(source, str):
        return source
    if inspect.ismodule(source) or inspect.isclass(source):
        return source.__name__
    return type(source).__name__


def _items(source: object) -> Iterable[tuple[str, Any]]:
    if isinstance(source, Mapping):
        return [(str(name), value) for name, value in source.items()]
    pairs = [(name, getattr(source, name)) for name in dir(source)]
    return [
        (name, value)
        for name, value in pairs
        if not (inspect.ismodule(value) or inspect.isclass(value) or inspect.isroutine(value))
    ]


def _resolve(dotted: str) -> object:
    """`pkg.module`, `pkg.module:attr` or `pkg.module.attr`, imported."""
    module_name, _, attribute = dotted.partition(":")
    try:
        try:
            found: object = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if attribute or exc.name != module_name or "." not in module_name:
                raise
            module_name, attribute = module_name.rsplit(".", 1)
            found = importlib.import_module(module_name)
        return getattr(found, attribute) if attribute else found
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"config_from_object({dotted!r}): {exc}") from exc
