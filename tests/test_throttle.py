"""Rate and concurrency limit options, checked when a task is defined (their enforcement:
tests/worker/test_admission.py; on every backend: tests/engines/test_limits_conformance.py;
on real workers: tests/e2e/test_throttle_e2e.py)."""

from __future__ import annotations

import uuid

import msgspec
import pytest

from forkq import ConfigurationError, Forkq
from forkq.throttle import DEFAULT_CONCURRENCY_LEASE, Rate, parse_rate


def app() -> Forkq:
    name = uuid.uuid4().hex
    return Forkq(name, broker=f"memory://{name}", backend=f"memory://{name}")


@pytest.mark.parametrize(
    ("given", "interval"),
    [("100/m", 0.6), ("10/s", 0.1), ("5/h", 720.0), ("2", 0.5), (4, 0.25), (0.5, 2.0)],
)
def test_celery_rates_are_read(given: object, interval: float) -> None:
    assert parse_rate(given).interval == pytest.approx(interval)


def test_a_rate_reads_as_it_was_written() -> None:
    assert str(parse_rate("100/m")) == "100/m"
    assert str(Rate(2.5)) == "2.5/s"


@pytest.mark.parametrize("given", ["0", "0/m", "-1/s", "ten/s", "10/d", "", "inf", True, -2, [1]])
def test_a_bad_rate_is_one_line_saying_what_is_allowed(given: object) -> None:
    with pytest.raises(ConfigurationError) as refused:
        app().task(name="proj.t", rate_limit=given)(lambda: None)
    message = str(refused.value)
    assert message.startswith("task proj.t: rate_limit must be") and "\n" not in message
    assert "N/s, N/m or N/h" in message


def test_a_task_without_limits_has_no_throttle() -> None:
    forkq = app()
    assert forkq.task(lambda: None).options.throttle is None
    with pytest.raises(ConfigurationError, match="unknown option throttle"):
        forkq.task(throttle=None)(lambda: None)  # made from the options, not one of them


def test_limits_make_the_throttle() -> None:
    def per_user(user: str) -> str:
        return user

    task = app().task(rate_limit="100/m", rate_limit_key=per_user, concurrency=3)(lambda: None)
    throttle = task.options.throttle
    assert throttle is not None
    assert (throttle.rate, throttle.rate_key, throttle.concurrency) == (
        Rate(100, 60),
        per_user,
        3,
    )
    assert throttle.lease == DEFAULT_CONCURRENCY_LEASE
    replaced = msgspec.structs.replace(task.options, rate_limit=None, rate_limit_key=None)
    assert replaced.throttle is not None and replaced.throttle.rate is None


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"concurrency": 0}, "concurrency must be an int >= 1"),
        ({"concurrency": 1.5}, "concurrency must be an int >= 1"),
        ({"concurrency": 1, "concurrency_lease": 0}, "concurrency_lease must be a number"),
        ({"rate_limit_key": lambda: "k"}, "rate_limit_key needs rate_limit"),
        ({"concurrency_key": lambda: "k"}, "concurrency_key needs concurrency"),
        ({"rate_limit": "1/s", "rate_limit_key": "user"}, "rate_limit_key takes a function"),
    ],
)
def test_bad_limits_are_refused(options: dict[str, object], error: str) -> None:
    with pytest.raises(ConfigurationError, match=error):
        app().task(**options)(lambda: None)


def test_set_rate_limit_checks_the_rate_and_stores_its_interval() -> None:
    forkq = app()
    forkq.set_rate_limit("proj.t", "10/s")
    assert forkq.backend.rate_override("proj.t") == pytest.approx(0.1)
    with pytest.raises(ConfigurationError, match=r"rate limit of proj\.t must be"):
        forkq.set_rate_limit("proj.t", "fast")
    forkq.set_rate_limit("proj.t", None)
    assert forkq.backend.rate_override("proj.t") is None
