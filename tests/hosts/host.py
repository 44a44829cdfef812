"""Hosts and the cluster that makes and removes them (the package docstring says how to use
them; netns.py holds the kernel side, link.py the proxy)."""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

from tests.hosts import netns
from tests.hosts.link import Direction, Link, ProxyLoop
from tests.hosts.process import HostProcess, in_host

REDIS_PORT, AMQP_PORT = 6379, 5672
DEFAULT_PORTS = {"redis": REDIS_PORT, "amqp": AMQP_PORT}
MAX_HOSTS = 64  # /30s in a run's /24
RUN_TIMEOUT = 30.0


class Host:
    """A network namespace playing one machine: its own loopback, address and host name; it
    reaches the root namespace's side of its veth (`gateway`) and nothing else, and the
    servers on 127.0.0.1 through the links forwarded there."""

    def __init__(self, wiring: netns.Wiring, name: str, directory: Path, loop: ProxyLoop):
        self.wiring = wiring
        self.name = name  # its host name (socket.gethostname() inside)
        self.directory = directory  # files of its own: FORKQ_CONTROL_DIR is under it
        directory.mkdir(parents=True, exist_ok=True)
        self._loop = loop
        self._links: dict[tuple[str, int], Link] = {}
        self._processes: list[HostProcess] = []

    def __repr__(self) -> str:
        return f"<Host {self.name} {self.address} ({self.namespace})>"

    @property
    def namespace(self) -> str:
        return self.wiring.namespace

    @property
    def address(self) -> str:
        """The host's own address: where the root namespace reaches a server it runs."""
        return self.wiring.address

    @property
    def gateway(self) -> str:
        """The root side's address: where the host reaches its links."""
        return self.wiring.gateway

    # -- links to the servers ---------------------------------------------------------------

    def forward(self, port: int, target: str = "127.0.0.1") -> Link:
        """The host's link to `target:port` (a server in the root namespace), made on first
        use; it listens on the gateway, on a port of its own."""
        key = (target, port)
        if key not in self._links:
            self._links[key] = Link(self._loop, (self.gateway, 0), key, seed=port)
        return self._links[key]

    def link(self, port: int, target: str = "127.0.0.1") -> Link:
        try:
            return self._links[(target, port)]
        except KeyError:
            raise ValueError(
                f"{self.name} has no link to {target}:{port}; Host.forward({port}) makes one"
            ) from None

    @property
    def redis(self) -> Link:
        return self.link(REDIS_PORT)

    @property
    def amqp(self) -> Link:
        return self.link(AMQP_PORT)

    @property
    def links(self) -> list[Link]:
        return list(self._links.values())

    def redis_url(self, db: int = 15, **params: object) -> str:
        """The shared Redis as this host reaches it: redis://GATEWAY:PORT/db?params."""
        return _with_query(f"redis://{self.redis.address}:{self.redis.port}/{db}", params)

    def amqp_url(self, **params: object) -> str:
        """The shared RabbitMQ (guest/guest, vhost /) as this host reaches it. RabbitMQ lets
        guest in from loopback only: through the link, its connections come from 127.0.0.1."""
        netloc = f"guest:guest@{self.amqp.address}:{self.amqp.port}"
        return _with_query(f"amqp://{netloc}/%2F", params)

    def reach(self, url: str) -> str:
        """`url` (of a server on 127.0.0.1, as the root namespace reaches it) rewritten to go
        through this host's link to it; user, path and query are kept."""
        parts = urllib.parse.urlsplit(url)
        host = "127.0.0.1" if parts.hostname == "localhost" else parts.hostname or ""
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
        link = self.link(port, host)
        userinfo, at, _ = parts.netloc.rpartition("@")
        return urllib.parse.urlunsplit(
            parts._replace(netloc=f"{userinfo}{at}{link.address}:{link.port}")
        )

    def delay(self, ms: float, direction: Direction = Direction.BOTH) -> None:
        """Every link of the host delays each chunk `ms` milliseconds that way."""
        for link in self._links.values():
            link.delay(ms, direction)

    # -- the network as a whole ---------------------------------------------------------------

    def partition(self) -> None:
        """Cut the host off, both ways, from everything: what either side sends is dropped
        without a word (no reset, no ICMP), so reads and connects time out, both from the host
        and to it; no connection is closed, and its links keep their settings."""
        netns.set_neighbours(self.wiring, connected=False)

    def heal(self) -> None:
        """The host connected again (at once: no queue to reactivate), and every one of its
        links healed: no delay, loss or blackhole, what they held delivered."""
        netns.set_neighbours(self.wiring, connected=True)
        for link in self._links.values():
            link.heal()

    # -- processes -------------------------------------------------------------------------

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The test's environment without FORKQ_ settings (the host is another machine), with
        a control directory of the host's own and unbuffered Python output."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("FORKQ_")}
        own = {"FORKQ_CONTROL_DIR": str(self.directory / "control"), "PYTHONUNBUFFERED": "1"}
        return {**base, **own, **(extra or {})}

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = RUN_TIMEOUT,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Runs `argv` in the host to its end (at most `timeout` seconds, then it is killed
        and TimeoutExpired raised); its output captured as text."""
        return subprocess.run(
            in_host(self.namespace, self.name, argv),
            cwd=cwd,
            env=self.env(env),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
        )

    def python(
        self, code: str, *, timeout: float = RUN_TIMEOUT, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`code` run by this interpreter (the project's venv: redis, pika, forkq) in the host."""
        return self.run([sys.executable, "-c", code], timeout=timeout, env=env)

    def forkq(
        self, cwd: Path, *args: str, timeout: float = RUN_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """`forkq ARGS` run in the host from `cwd` (where the app module is), to its end:
        `host.forkq(app_dir, "inspect", "ping", "-A", "e2eapp", "--broker", host.reach(url))`."""
        return self.run([sys.executable, "-m", "forkq", *args], cwd=cwd, timeout=timeout)

    def spawn(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        stdin: bool = False,
    ) -> HostProcess:
        """Starts `argv` in the host and returns at once; killed when the host is removed."""
        process = HostProcess(in_host(self.namespace, self.name, argv), cwd, self.env(env), stdin)
        self._processes.append(process)
        return process

    def worker(
        self,
        app_dir: Path,
        broker: str,
        *args: str,
        backend: str | None = None,
        app: str = "e2eapp",
        env: dict[str, str] | None = None,
    ) -> HostProcess:
        """`forkq worker -A app --broker BROKER [--backend BACKEND] ARGS` in the host, from
        `app_dir`. Give it URLs the host reaches (`reach()`, `redis_url()`)."""
        backend_args = ["--backend", backend] if backend else []
        argv = [sys.executable, "-m", "forkq", "worker", "-A", app, "--broker", broker]
        return self.spawn([*argv, *backend_args, *args], cwd=app_dir, env=env)

    def close(self) -> None:
        """Its processes killed, its links closed, its veth pair and namespace removed (those
        last whatever failed before)."""
        try:
            for process in self._processes:
                process.stop()
            for link in self._links.values():
                link.close()
        finally:
            netns.remove(self.namespace, self.wiring.veth)


class Cluster:
    """`count` hosts, made at once and removed together: `close()` (or leaving `with`)
    removes everything, whether the test passed, failed or was interrupted. Namespaces left
    by a run that was killed are removed when the next one starts."""

    def __init__(
        self, count: int, directory: Path, forward: Sequence[int] = (REDIS_PORT, AMQP_PORT)
    ) -> None:
        if not 1 <= count <= MAX_HOSTS:
            raise ValueError(f"{count} hosts: give 1 to {MAX_HOSTS}")
        self.hosts: list[Host] = []
        self.loop = ProxyLoop()
        self.swept: list[str] = []  # leftovers of dead runs this one removed
        self._closed = False
        _LIVE.append(self)
        try:
            self._create(count, directory, forward)
        except BaseException:
            self.close()
            raise

    def _create(self, count: int, directory: Path, forward: Sequence[int]) -> None:
        token = secrets.token_hex(3)
        run = f"{netns.Owner.me().prefix()}-{token}"
        with netns.locked():
            self.swept = netns.sweep_leftovers()
            subnet = netns.free_subnet()
            for i in range(count):
                wiring = netns.Wiring.plan(f"{run}-{i}", f"fq{token}h{i}", subnet, i)
                host = Host(wiring, f"host{i}", directory / f"{token}-host{i}", self.loop)
                self.hosts.append(host)  # first: a failure below is undone by close()
                netns.create(wiring)
        for host in self.hosts:
            for port in forward:
                host.forward(port)

    def __iter__(self) -> Iterator[Host]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    def __getitem__(self, index: int) -> Host:
        return self.hosts[index]

    def close(self) -> None:
        """Every host removed (an error in one does not keep the others), then the proxy's
        loop stopped; the first error is raised at the end."""
        if self._closed:
            return
        self._closed = True
        errors: list[Exception] = []
        for host in self.hosts:
            try:
                host.close()
            except Exception as error:
                errors.append(error)
        self.loop.close()
        with contextlib.suppress(ValueError):
            _LIVE.remove(self)
        if errors:
            raise errors[0]

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _with_query(url: str, params: dict[str, object]) -> str:
    return f"{url}?{urllib.parse.urlencode(params)}" if params else url


_LIVE: list[Cluster] = []


@atexit.register
def _close_live() -> None:
    """A cluster still open when the interpreter exits (its test process ends without the
    fixture's teardown) is removed all the same."""
    for cluster in list(_LIVE):
        with contextlib.suppress(Exception):
            cluster.close()
