"""The app the benchmarks run: tasks that do as little as possible."""

from forkq import Forkq

app = Forkq("noop_app")


@app.task
def noop() -> None:
    return None
