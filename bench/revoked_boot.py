"""What reading the revoked ids costs a pool when its children start, with a large revoked
set: before, each child read the whole set at boot (`revocations(since=0)`); now the master
reads it once before the fork and each child inherits it, reading only what changed since the
master's cursor (worker/revoked.py).

    python bench/revoked_boot.py [--revoked 50000] [--children 4] [--rounds 5]
                                 [--engines redis,sqlite]

Per engine: the median wall time of one whole read and of one child's read since the
master's cursor (nothing changed, and with 10 revocations since), each on a connection of
its own as a child's is, and the bytes each read carries: for Redis, the reply as it is on the
wire (RESP), for SQLite the rows' bytes (ids and expiries). Then what a pool of --children
pays to start: before, children x a whole read; now, one whole read and children x a read
since; and the private memory (USS) a forked child's boot read adds, its set its own before,
inherited from a frozen master now. Redis: database 15 of 127.0.0.1:6379, under a key prefix
of the run's own, deleted after; SQLite: a temporary file.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from limits import broker_url as server_url  # bench/limits.py: the same servers

from forkq.engines.contract import ResultBackend, Revocations
from forkq.engines.registry import open_backend
from forkq.worker.revoked import RevokedIds


def wire_bytes(found: Revocations, engine: str) -> int:
    """The bytes a read carried: Redis's RESP reply, or SQLite's rows."""
    if engine == "sqlite":
        return sum(len(r.task_id.encode()) + 8 for r in found.revoked)

    def bulk(text: str) -> int:
        return len(f"${len(text)}\r\n") + len(text) + 2

    size = len(f"*{2 + 2 * len(found.revoked)}\r\n") + len(f":{found.cursor}\r\n")
    size += bulk(found.epoch)
    return size + sum(bulk(r.task_id) + bulk(f"{r.expires_at * 1000:.0f}") for r in found.revoked)


def private_kib() -> int:
    """This process's private memory (USS), KiB."""
    fields = Path("/proc/self/smaps_rollup").read_text().split("\n")
    return sum(
        int(f.split()[1]) for f in fields if f.startswith(("Private_Clean", "Private_Dirty"))
    )


def child_growth(url: str, boot: Callable[[ResultBackend], RevokedIds]) -> int:
    """KiB of private memory a forked child's boot read adds (a connection of its own)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        backend = open_backend(url)
        backend.revocations(10**12)  # the connection and the script loaded, before measuring
        before = private_kib()
        held = boot(backend)
        os.write(write_end, f"{private_kib() - before} {len(held)}".encode())
        os._exit(0)
    os.close(write_end)
    grown = int(os.read(read_end, 100).split()[0])
    os.close(read_end)
    os.waitpid(pid, 0)
    return grown


def booted(revoked: RevokedIds) -> RevokedIds:
    revoked.refresh()
    return revoked


def timed(read: Callable[[], Revocations], rounds: int) -> tuple[float, Revocations]:
    times, found = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        found = read()
        times.append(time.perf_counter() - started)
    assert found is not None
    return statistics.median(times), found


def run(engine: str, url: str, revoked: int, children: int, rounds: int) -> None:
    writer = open_backend(url)
    for start in range(0, revoked, 1000):
        writer.revoke([str(uuid.uuid4()) for _ in range(min(1000, revoked - start))], 3600)
    master_side, child_side = open_backend(url), open_backend(url)
    master = RevokedIds(master_side)
    whole, found_all = timed(lambda: master_side.revocations(0), rounds)
    master.refresh()
    cursor = found_all.cursor
    since, found_none = timed(lambda: child_side.revocations(cursor), rounds)
    writer.revoke([str(uuid.uuid4()) for _ in range(10)], 3600)
    since10, found_ten = timed(lambda: child_side.revocations(cursor), rounds)
    old_boots = []
    for _ in range(rounds):  # what a child's boot did before: a set of its own, read whole
        started = time.perf_counter()
        RevokedIds(child_side).refresh()
        old_boots.append(time.perf_counter() - started)
    old_boot = statistics.median(old_boots)
    boot = master.inherited(child_side)
    started = time.perf_counter()
    boot.refresh()
    inherit_boot = time.perf_counter() - started
    assert len(boot) == revoked and len(found_all.revoked) == revoked
    full_b, none_b, ten_b = (wire_bytes(f, engine) for f in (found_all, found_none, found_ten))
    print(f"{engine}: {revoked} revoked ids")
    print(f"  a whole read (a child's boot before):  {whole * 1000:8.1f} ms {full_b:>12,} bytes")
    print(f"  a read since, nothing new:             {since * 1000:8.2f} ms {none_b:>12,} bytes")
    print(f"  a read since, 10 new:                  {since10 * 1000:8.2f} ms {ten_b:>12,} bytes")
    print(f"  a child's boot before (read, and held): {old_boot * 1000:8.1f} ms")
    print(f"  an inheriting child's boot (10 new):   {inherit_boot * 1000:8.2f} ms")
    print(
        f"  a pool of {children} starting: before {children * old_boot * 1000:.0f} ms "
        f"{children * full_b:,} bytes; now {(old_boot + children * inherit_boot) * 1000:.0f} ms "
        f"{full_b + children * ten_b:,} bytes (each child 10 new)"
    )
    gc.freeze()  # as the master does before it forks
    own = child_growth(url, lambda backend: booted(RevokedIds(backend)))
    shared = child_growth(url, lambda backend: booted(master.inherited(backend)))
    gc.unfreeze()
    print(f"  a child's private memory for them: before {own:,} KiB, now {shared:,} KiB")
    for backend in (writer, master_side, child_side):
        backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revoked", type=int, default=50_000)
    parser.add_argument("--children", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--engines", default="redis,sqlite")
    options = parser.parse_args()
    for engine in options.engines.split(","):
        with server_url(engine) as url:
            run(engine, url, options.revoked, options.children, options.rounds)


if __name__ == "__main__":
    main()
