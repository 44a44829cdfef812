"""What every benchmark suite needs: the peers' virtualenv, the systems under test, their
workers as child processes of this one, the CPU time of a process tree, and a Redis MONITOR
that counts the commands clients send.

Each worker runs in its own session and is stopped by signalling that session's process group
only: the harness never touches a process it did not start.
"""

from __future__ import annotations

import compileall
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import redis

HERE = Path(__file__).resolve().parent
# The Redis every suite runs on (flushed before each enqueue): BENCH_REDIS, default database 14
# of the local server; a private server (redis-server --port N) keeps a run off a shared one.
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/14")
DB = int(urlsplit(REDIS).path.strip("/") or 0)
AMQP = "amqp://guest:guest@127.0.0.1:5672/%2F"
APPS = HERE / "apps"
PEERS_VENV = HERE / ".peers-venv"
FORKQ_VENV = HERE / ".forkq-venv"
ROOT = HERE.parent
PEERS_PINS = HERE / "peers.txt"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class System:
    """One system under test: which app module drives it, in which interpreter."""

    label: str
    app: str
    python: str
    env: dict[str, str] = field(default_factory=dict)
    bulk: bool = False  # has a bulk enqueue worth measuring
    tasks_scale: float = 1.0  # slow systems drain a fraction of the tasks
    on_redis: bool = True  # its broker is Redis (else RabbitMQ or SQLite)
    measures_latency: bool = True  # and commands per task, when on Redis

    def environment(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(APPS), **self.env}


@dataclass(frozen=True)
class Interpreters:
    """forkq's and the peers' Pythons, each in a virtualenv of its own."""

    forkq: str
    peers: str


def ensure_interpreters(log: IO[str]) -> Interpreters:
    """Both virtualenvs, each (re)installed when what it is built from changed.

    forkq runs from bench/.forkq-venv: this tree (editable, so the run measures the code as it
    is) with its runtime dependencies only, as `pip install forkq` leaves a user's environment,
    and as the peers run from theirs; the peers' pins constrain it, so that both run the task
    bodies on the same redis-py. Not from .venv: its dev tools change what forkq imports (mypy
    brings typing_extensions, which msgspec then imports)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as constraints:
        # pip takes no extras in a constraint: "redis[hiredis]==8.1.0" becomes "redis==8.1.0"
        lines = PEERS_PINS.read_text().splitlines()
        constraints.write("\n".join(re.sub(r"\[.*?\]", "", line) for line in lines))
        constraints.flush()
        forkq = ["-e", str(ROOT), "-c", constraints.name]
        return Interpreters(
            forkq=_ensure_venv(FORKQ_VENV, forkq, ROOT / "pyproject.toml", log),
            peers=_ensure_venv(PEERS_VENV, ["-r", str(PEERS_PINS)], PEERS_PINS, log),
        )


BASELINES = HERE / ".baseline"


def ensure_baseline(revision: str, log: IO[str]) -> str:
    """The interpreter of a virtualenv running forkq as it was at `revision` (a git revision of
    this repository): its tree exported into bench/.baseline/<commit>, installed editable with
    the same pins as this tree's, so that a change is measured on and off in one run."""
    commit = subprocess.check_output(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{revision}^{{commit}}"], text=True
    ).strip()
    tree = BASELINES / commit
    if not (tree / "pyproject.toml").exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        compileall.compile_dir(tree / "src", quiet=1)  # as compile_bytecode does for this tree
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as constraints:
        lines = PEERS_PINS.read_text().splitlines()
        constraints.write("\n".join(re.sub(r"\[.*?\]", "", line) for line in lines))
        constraints.flush()
        wanted = ["-e", str(tree), "-c", constraints.name]
        return _ensure_venv(BASELINES / f"venv-{commit[:12]}", wanted, tree / "pyproject.toml", log)


def _ensure_venv(path: Path, requirements: list[str], source: Path, log: IO[str]) -> str:
    """The virtualenv's interpreter, made anew when `source`, the pins, this checkout's place
    (an editable install points at it) or the Python version changed."""
    stamp = path / ".pins"
    built_from = [source.read_bytes(), PEERS_PINS.read_bytes(), str(ROOT).encode(),
                  sys.version.encode()]  # fmt: skip
    wanted = hashlib.sha256(b"\0".join(built_from)).hexdigest()
    python = path / "bin" / "python"
    if not python.exists() or not stamp.exists() or stamp.read_text() != wanted:
        venv.create(path, with_pip=True, clear=True)
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, *requirements], check=True, stdout=log, stderr=log)
        stamp.write_text(wanted)
    return str(python)


def compile_bytecode() -> None:
    """forkq runs from its source tree; compile it as pip compiles a package it installs (and
    as the peers were), and the bench apps every system imports. This machine sets
    PYTHONDONTWRITEBYTECODE, so without this forkq alone would compile its modules again at
    every worker start (about 30 ms of its start-up)."""
    import forkq

    for directory in (Path(forkq.__file__).parent, APPS):
        compileall.compile_dir(directory, quiet=1)


PEERS = ("celery", "dramatiq", "huey", "rq", "redis")
FORKQ_DEPENDENCIES = ("redis", "hiredis", "msgspec", "pika")


def peer_versions(python: str, packages: tuple[str, ...] = PEERS) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys;"
        "print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))"
    )
    return dict(json.loads(subprocess.check_output([python, "-c", code, *packages], text=True)))


def drive(system: System, *args: str, timeout: float = 600) -> Any:
    """Run bench/driver.py for `system` and return what it printed (JSON)."""
    return run_script(system, HERE / "driver.py", system.app, *args, timeout=timeout)


def run_script(system: System, script: Path, *args: str, timeout: float = 600) -> Any:
    """Run `script` in `system`'s interpreter and environment; the JSON of its last line."""
    out = subprocess.run(
        [system.python, str(script), *args],
        env=system.environment(),
        cwd=APPS,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{system.label}: {script.name} {' '.join(args)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextmanager
def worker(
    system: System, concurrency: int, log: IO[bytes], env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """The system's worker in a session of its own; `env` goes to the worker only (not to the
    driver that computes its command line)."""
    command = drive(system, "command", str(concurrency))
    launched = time.perf_counter()
    process = subprocess.Popen(
        command,
        env={**system.environment(), **(env or {})},
        cwd=APPS,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    process.launched_at = launched  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        stop_group(process)


FORKQ_APPS = ("forkq_app", "fan_forkq")


def clear(system: System) -> None:
    """An empty broker and counter before an enqueue: flush the Redis database (the counter,
    and the queues of the Redis brokers), delete forkq's SQLite file, and purge forkq's
    RabbitMQ queue (which outlives a round: a bulk pass's tasks would stay ahead of the next)."""
    client = redis.Redis.from_url(REDIS)
    client.flushdb()
    client.close()
    url = system.env.get("BENCH_BROKER_URL", REDIS)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
    elif url.startswith("amqp") and system.app in FORKQ_APPS:
        subprocess.run(
            [system.python, "-m", "forkq", "--broker", url, "purge", "--yes"],
            env=system.environment(),
            check=True,
            capture_output=True,
            timeout=60,
        )


def stop_group(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM to the worker's own process group, SIGKILL to it after `grace` seconds."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # stragglers of the group, if any
    process.wait()


def _proc_stats() -> dict[int, list[str]]:
    """/proc/PID/stat of every process, as fields after the command name (which may hold
    spaces): [state, ppid, ...]."""
    stats = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        stats[int(entry)] = stat.rsplit(")", 1)[1].split()
    return stats


def process_tree(root: int, stats: dict[int, list[str]] | None = None) -> dict[int, int]:
    """`root` and its live descendants, each mapped to its parent's pid."""
    stats = _proc_stats() if stats is None else stats
    parents = {pid: int(fields[1]) for pid, fields in stats.items()}
    tree, frontier = {root: parents.get(root, 0)}, [root]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in tree]
        tree.update((child, parent) for child in children)
        frontier.extend(children)
    return tree


def server_cpu(client: redis.Redis) -> float:
    """CPU seconds the Redis server has used (its main thread and the others)."""
    info: Any = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of `root` and its live descendants, plus what each of them reaped (a
    process that has exited counts in its parent's, once that parent has waited for it: RQ's
    work horses, forkq's task processes)."""
    stats = _proc_stats()
    times = {pid: (int(f[11]) + int(f[12]), int(f[13]) + int(f[14])) for pid, f in stats.items()}
    return sum(sum(times[p]) for p in process_tree(root, stats) if p in times) / TICKS


@contextmanager
def redis_monitor(path: Path) -> Iterator[None]:
    """Every command the server receives, written to `path` while inside the block."""
    with path.open("wb") as out:
        process = subprocess.Popen(["redis-cli", "-u", REDIS, "monitor"], stdout=out)
        try:
            deadline = time.monotonic() + 10
            while path.stat().st_size == 0:  # "OK" once MONITOR is on
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-cli monitor did not start")
                time.sleep(0.01)
            yield
        finally:
            process.terminate()
            process.wait(timeout=10)


def count_commands(path: Path, db: int, ignore: tuple[str, ...]) -> tuple[int, int]:
    """(commands clients sent, commands Lua scripts ran) in `db`, without lines that contain
    any of `ignore` (the harness's own reads and the tasks' bodies)."""
    sent = scripted = 0
    for line in path.read_text(errors="replace").splitlines():
        if f"[{db} " not in line or any(marker in line for marker in ignore):
            continue
        if f"[{db} lua]" in line:
            scripted += 1
        else:
            sent += 1
    return sent, scripted
