"""Ports for servers a test starts for itself."""

from __future__ import annotations

import random
import socket
from pathlib import Path


def server_port() -> int:
    """A free port for a server of a test's own, below the kernel's range for outgoing
    connections: a server the test stops and starts again must find its port still free, and
    no client reconnecting meanwhile may be given it as its own source port."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.sample(range(max(1024, low - 10_000), low), 100):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")
