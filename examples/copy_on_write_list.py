"""Each child gets its own copy of module state: a list mutated by tasks in different children.

Run: python examples/copy_on_write_list.py
"""

from __future__ import annotations

import os
from collections import defaultdict

from forkq import Forkq

app = Forkq("copy_on_write_list")  # the module name: task names match in the worker

SEEN: list[int] = []  # module level: the master has it, and each child inherits a copy


@app.task
def append(n: int) -> dict[str, object]:
    SEEN.append(n)
    return {"pid": os.getpid(), "seen": list(SEEN)}


def main() -> None:
    from _harness import running_worker

    with running_worker(app, "copy_on_write_list", concurrency=2):
        replies = [append.delay(n).get(timeout=60) for n in range(8)]
    last_view: dict[int, list[int]] = defaultdict(list)
    for reply in replies:
        last_view[reply["pid"]] = reply["seen"]  # type: ignore[index]
    for pid, seen in sorted(last_view.items()):
        print(f"child pid {pid}: its SEEN is {seen}")
    print(f"this process (pid {os.getpid()}): SEEN is {SEEN}")
    everything = sorted(n for seen in last_view.values() for n in seen)
    assert everything == list(range(8)), "every append lands in exactly one child's copy"
    print("each child saw only its own appends; no child saw another's, the client saw none")


if __name__ == "__main__":
    main()
