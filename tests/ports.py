"""Ports for servers a test starts for itself."""

from __future__ import annotations

import random
import socket
from pathlib import Path

_GIVEN: set[int] = set()  # a port is handed out once per run: servers not started yet hold none


def server_port() -> int:
    """A free port for a server of a test's own, below the kernel's range for outgoing
    connections: a server the test stops and starts again must find its port still free, and
    no client reconnecting meanwhile may be given it as its own source port. Never the same
    port twice in a run, so that servers chosen together (a cluster's nodes and their buses)
    do not collide before they bind."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.sample(range(max(1024, low - 10_000), low), 100):
        if port in _GIVEN:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            _GIVEN.add(port)
            return port
    raise RuntimeError("no free port below the ephemeral range")
