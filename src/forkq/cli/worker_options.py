"""Values of `forkq worker` options that click's types cannot read alone: memory sizes with
units, the worker's name with `%h`-style expansion, and the metrics port (from its option or
its variable)."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import click

# A unit's bytes; a number without a unit is MiB.
UNITS = {
    "": 2**20,
    "b": 1,
    "k": 2**10,
    "kib": 2**10,
    "kb": 10**3,
    "m": 2**20,
    "mib": 2**20,
    "mb": 10**6,
    "g": 2**30,
    "gib": 2**30,
    "gb": 10**9,
    "t": 2**40,
    "tib": 2**40,
    "tb": 10**12,
}
SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", re.IGNORECASE)
MEMINFO = Path("/proc/meminfo")

# What a worker's name may hold: it becomes part of consumer names and broker keys.
HOSTNAME = re.compile(r"[A-Za-z0-9._@+-]{1,200}")


def memory_size(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    """`--max-memory-per-child`: bytes, from `200MB`, `1.5GiB`, `512MiB` or a bare number of
    MiB. A bare number larger than the machine's memory is refused: it is most likely a
    limit written for Celery, whose unit is KiB."""
    if value is None:
        return None
    number, unit = _split_size(value)
    size = int(number * UNITS[unit.lower()])
    if size < 1:
        raise click.BadParameter(f"{value!r}: give a size above 0")
    total = machine_memory()
    if not unit and total is not None and size > total:
        raise click.BadParameter(
            f"a bare {value} is MiB here: {size / 2**30:.1f} GiB, more than this machine's "
            f"{total / 2**30:.1f} GiB; Celery's unit is KiB: for its {value}, write "
            f"{number / 1024:.0f}MiB",
        )
    return size


def _split_size(value: str) -> tuple[float, str]:
    match = SIZE.fullmatch(value)
    if match is None or match[2].lower() not in UNITS:
        raise click.BadParameter(
            f"{value!r}: give a size such as 200MB, 1.5GiB or 512MiB (a bare number is MiB)",
        )
    return float(match[1]), match[2]


def machine_memory() -> int | None:
    """MemTotal from /proc/meminfo, in bytes; None where it cannot be read."""
    try:
        text = MEMINFO.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if key == "MemTotal" and fields and fields[0].isdigit():
            return int(fields[0]) * 1024  # the kernel's "kB" is KiB
    return None


def hostname(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str:
    """`-n/--hostname`: the worker's name, with `%h` (this host's name), `%n` (its part
    before the first dot), `%d` (the part after it) and `%%` expanded, as Celery does."""
    full = socket.gethostname()
    if value is None:
        return full
    short, _, domain = full.partition(".")
    fields = {"h": full, "n": short, "d": domain, "%": "%"}

    def expand(found: re.Match[str]) -> str:
        if found[1] not in fields:
            raise click.BadParameter(f"{value!r}: unknown %{found[1]} (use %h, %n, %d or %%)")
        return fields[found[1]]

    name = re.sub(r"%(.?)", expand, value)
    if not HOSTNAME.fullmatch(name):
        raise click.BadParameter(
            f"{name!r}: give 1 to 200 letters, digits or . _ @ + - (e.g. worker1@%h)",
        )
    return name


def port_number(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """`--metrics-port` (or FORKQ_METRICS_PORT): a TCP port from 1 to 65535."""
    if value is None or value == "":
        return None
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise click.BadParameter(f"{_given(ctx, param, value)}: give a TCP port from 1 to 65535")
    return port


def listen_host(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """`--metrics-host` (or FORKQ_METRICS_HOST): an address or name to listen on."""
    if not value.strip() or any(c.isspace() for c in value):
        raise click.BadParameter(
            f"{_given(ctx, param, value)}: give an address to listen on, such as 0.0.0.0 (every "
            "IPv4 interface), :: (every interface) or 127.0.0.1 (this host only)"
        )
    return value.strip("[]")


def _given(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """How the value is named in an error: by its variable when it came from one."""
    source = ctx.get_parameter_source(param.name or "")
    if source is click.core.ParameterSource.ENVIRONMENT and isinstance(param, click.Option):
        return f"{param.envvar}={value!r}"
    return repr(value)
