"""A process running inside a test host, its output collected as it comes.

It is a tests.processes.CollectedProcess, as tests.conftest.WorkerProcess is (`proc`, `pid`,
`log()`, `wait_for_log()`, `children()`, `signal()`, `wait()`, `stop()`), so the helpers
written for local workers (`wait_until_serving`, ...) take a worker started in a host as well.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.processes import CollectedProcess

# `ip netns exec` joins the namespace and execs `unshare`, which gives the process a UTS
# namespace of its own, where sh sets the host's name and execs the command: one pid
# throughout, the one Popen returns.
SET_HOSTNAME = 'hostname "$0" && exec "$@"'


def in_host(namespace: str, hostname: str, argv: Sequence[str]) -> list[str]:
    """`argv` as run inside the host: its network and its host name."""
    return [
        "ip", "netns", "exec", namespace,
        "unshare", "--uts", "--",
        "sh", "-c", SET_HOSTNAME, hostname, *argv,
    ]  # fmt: skip


class HostProcess(CollectedProcess):
    """Started in a session (process group) of its own; `stop()` kills that group."""

    def __init__(
        self, argv: list[str], cwd: Path | None, env: dict[str, str], stdin: bool = False
    ) -> None:
        super().__init__(argv, cwd, env, subprocess.PIPE if stdin else subprocess.DEVNULL)

    def write(self, line: str) -> None:
        """A line to its standard input (started with `stdin=True`)."""
        assert self.proc.stdin is not None, "started without stdin=True"
        self.proc.stdin.write(f"{line}\n".encode())
        self.proc.stdin.flush()
