"""The kernel side of test hosts: network namespaces joined to the root namespace by veth
pairs, made and removed through iproute2's `ip`.

What holds:
- Every name carries its owner (the pid and start time of the test process that made it), so
  a namespace left by a run that was killed is recognised by a later run and removed, and one
  whose owner still runs (a parallel run) is never touched.
- A run's addresses come from one /24 of 10.128.0.0/9 that overlaps no route or address the
  machine has; each host gets a /30 of it (`.4i+1` on the root side, `.4i+2` inside). Only
  the root side of our own veths gets an address in the root namespace.
- Both ends know each other's MAC as a permanent neighbour entry (no ARP); a partition
  replaces them with a MAC no one has, so each end drops the other's frames, silently.
- The choice of subnet and the creation run under one file lock, so parallel runs never pick
  the same subnet.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PREFIX = "forkqtest"  # namespace names: forkqtest-<owner pid>-<owner start>-<rest>
NAME = re.compile(rf"^{PREFIX}-(\d+)-(\d+)-\S+$")
POOL = ipaddress.ip_network("10.128.0.0/9")
LOCK = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")
IP_TIMEOUT = 10.0
NOWHERE = "02:00:00:00:00:00"  # a MAC no interface of ours has (theirs hold an address)


class NetnsError(RuntimeError):
    """An `ip` command failed; the message is the command and what it printed."""


@dataclass(frozen=True)
class Owner:
    """A process, told apart from a later one given the same pid by its start time."""

    pid: int
    start: int  # clock ticks after boot (/proc/PID/stat, field 22)

    @classmethod
    def me(cls) -> Owner:
        pid = os.getpid()
        start = process_start(pid)
        assert start is not None
        return cls(pid, start)

    def alive(self) -> bool:
        return process_start(self.pid) == self.start

    def prefix(self) -> str:
        return f"{PREFIX}-{self.pid}-{self.start}"


def process_start(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[19])  # fields from the 3rd on


def owner_of(namespace: str) -> Owner | None:
    match = NAME.match(namespace)
    return Owner(int(match[1]), int(match[2])) if match else None


@dataclass(frozen=True)
class Wiring:
    """One host's namespace and veth pair: names, addresses and MACs."""

    namespace: str
    veth: str  # the root side's name; inside, the other end is eth0
    gateway: str  # the root side's address: what the host reaches
    address: str  # the host's own address, on eth0
    gateway_mac: str
    address_mac: str

    @classmethod
    def plan(cls, namespace: str, veth: str, subnet: ipaddress.IPv4Network, index: int) -> Wiring:
        base = subnet.network_address + 4 * index
        gateway, address = base + 1, base + 2
        return cls(namespace, veth, str(gateway), str(address), _mac(gateway), _mac(address))


def _mac(address: ipaddress.IPv4Address) -> str:
    """A locally administered unicast MAC holding the address: unique wherever it is."""
    return "02:00:" + ":".join(f"{byte:02x}" for byte in address.packed)


def ip(*args: str, batch: str | None = None, check: bool = True) -> str:
    """`ip ARGS` (with `batch`: `ip ARGS -batch -`, one command a line, on stdin)."""
    argv = ["ip", *args, *(["-batch", "-"] if batch is not None else [])]
    done = subprocess.run(argv, input=batch, capture_output=True, text=True, timeout=IP_TIMEOUT)
    if check and done.returncode != 0:
        command = " ".join(argv) + (f" <<< {batch!r}" if batch else "")
        raise NetnsError(f"{command}: {done.stderr.strip() or done.returncode}")
    return done.stdout


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Held while a run sweeps, picks its subnet and creates its hosts."""
    with open(LOCK / "forkq-test-hosts.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def sweep_leftovers() -> list[str]:
    """Remove the namespaces of runs whose test process is gone, with whatever still runs in
    them (started there by that run); returns their names."""
    swept = []
    for namespace in namespaces():
        owner = owner_of(namespace)
        if owner is not None and not owner.alive():
            remove(namespace, veth=None)
            swept.append(namespace)
    return swept


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 of POOL that overlaps no route (any table) and no address of the root namespace."""
    used = _used_networks()
    rng, first, count = random.Random(), int(POOL.network_address), POOL.num_addresses // 256
    for _ in range(1000):
        candidate = ipaddress.IPv4Network((first + 256 * rng.randrange(count), 24))
        if not any(candidate.overlaps(network) for network in used):
            return candidate
    raise NetnsError(f"no free /24 in {POOL}")


def _used_networks() -> list[ipaddress.IPv4Network]:
    used = []
    for route in json.loads(ip("-4", "-json", "route", "show", "table", "all") or "[]"):
        if route.get("dst", "default") != "default":
            used.append(ipaddress.IPv4Network(route["dst"], strict=False))
    for link in json.loads(ip("-4", "-json", "addr", "show") or "[]"):
        for info in link.get("addr_info", []):
            used.append(ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False))
    return used


def create(wiring: Wiring) -> None:
    """The namespace with loopback up, and the veth pair addressed and up at both ends."""
    w = wiring
    ip(
        batch=f"netns add {w.namespace}\n"
        f"link add {w.veth} address {w.gateway_mac} type veth"
        f" peer name eth0 address {w.address_mac} netns {w.namespace}\n"
        f"addr add {w.gateway}/30 dev {w.veth}\n"
        f"link set {w.veth} up\n"
    )
    ip("-netns", w.namespace, batch=f"link set lo up\naddr add {w.address}/30 dev eth0\n")
    set_neighbours(w, connected=True)
    ip("-netns", w.namespace, "link", "set", "eth0", "up")
    wait_operational(w)


def set_neighbours(wiring: Wiring, connected: bool) -> None:
    """Each end's permanent neighbour entry for the other: its real MAC (connected), or one
    no interface has (a partition). Then frames still leave each end, but the other drops them
    as addressed to another host: nothing passes either way, and no one hears of it (no reset,
    no ICMP, no failed ARP), while links, addresses and routes stay as they are."""
    w = wiring
    to_host, to_gateway = (w.address_mac, w.gateway_mac) if connected else (NOWHERE, NOWHERE)
    ip("neigh", "replace", w.address, "lladdr", to_host, "dev", w.veth, "nud", "permanent")
    ip("-netns", w.namespace, "neigh", "replace", w.gateway, "lladdr", to_gateway, "dev", "eth0",
       "nud", "permanent")  # fmt: skip


def wait_operational(wiring: Wiring, timeout: float = 5.0) -> None:
    """Until both ends report carrier and are up. The kernel activates a veth's queue after
    the carrier comes asynchronously; a packet sent before that is dropped (and a SYN then
    waits a second for its retransmission). It leaves no event to wait on but its state."""
    deadline = time.monotonic() + timeout
    while not (_root_side_up(wiring) and _host_side_up(wiring)):
        if time.monotonic() > deadline:
            raise NetnsError(f"{wiring.veth} <-> {wiring.namespace}/eth0 not up in {timeout}s")
        time.sleep(0.005)


def _root_side_up(wiring: Wiring) -> bool:
    try:
        return Path(f"/sys/class/net/{wiring.veth}/operstate").read_text().strip() == "up"
    except OSError:
        return False


def _host_side_up(wiring: Wiring) -> bool:
    [link] = json.loads(ip("-netns", wiring.namespace, "-json", "link", "show", "dev", "eth0"))
    return bool(link.get("operstate") == "UP")


def pids(namespace: str) -> list[int]:
    out = ip("netns", "pids", namespace, check=False)
    return [int(word) for word in out.split()]


def kill_all(namespace: str, timeout: float = 10.0) -> list[int]:
    """SIGKILL every process in the namespace (all of them were started there by the harness)
    and wait until none is left; returns the pids killed."""
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while left := pids(namespace):
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if pid not in killed:
                killed.append(pid)
        if time.monotonic() > deadline:
            raise NetnsError(f"processes {left} still in {namespace} after {timeout}s")
        time.sleep(0.01)  # a killed process leaves the namespace when it is reaped: no event
    return killed


def remove(namespace: str, veth: str | None) -> None:
    """The processes inside killed, the veth pair deleted (at once, both ends; found from
    inside when not given) and the namespace unmounted; each step is skipped when done."""
    if namespace in namespaces():
        kill_all(namespace)
        veth = veth or _root_side(namespace)
    if veth is not None and Path(f"/sys/class/net/{veth}").exists():
        ip("link", "del", veth)
    if namespace in namespaces():
        ip("netns", "del", namespace)


def _root_side(namespace: str) -> str | None:
    """The root namespace's end of the namespace's eth0, by its interface index."""
    links = json.loads(ip("-netns", namespace, "-json", "link", "show", check=False) or "[]")
    for link in links:
        if link.get("ifname") == "eth0" and "link_index" in link:
            for device in Path("/sys/class/net").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    if int((device / "ifindex").read_text()) == link["link_index"]:
                        return device.name
    return None


def netns_inode(namespace: str) -> int:
    """The namespace's identity, as /proc/PID/ns/net of a process inside shows it."""
    return os.stat(f"/run/netns/{namespace}").st_ino
