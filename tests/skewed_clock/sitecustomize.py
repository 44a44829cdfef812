"""A wall clock off by SKEWED_CLOCK_SECONDS, for the processes of a test host that plays a
machine whose clock is wrong (a network namespace shares the machine's clock). Put this
directory first on PYTHONPATH with the variable set: Python imports this module at start-up,
before any of forkq, so `time.time()` and `time.time_ns()` are offset in the worker's master
and in every child it forks. Monotonic clocks are left alone, as a wrong wall clock leaves
them. Test-only: nothing under src/ imports it."""

import os
import time

_offset = float(os.environ.get("SKEWED_CLOCK_SECONDS", "0"))
if _offset:
    _time, _time_ns = time.time, time.time_ns
    time.time = lambda: _time() + _offset
    time.time_ns = lambda: _time_ns() + int(_offset * 1e9)
