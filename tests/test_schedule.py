"""Periodic schedules: definitions checked when made, due times (cron and DST by cronsim), and
the catch-up policies."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from forkq import ConfigurationError, Forkq
from forkq.schedule import (
    LATE_AFTER_MS,
    MAX_CATCH_UP,
    CatchUp,
    Cron,
    Every,
    define,
    fire_id,
)

PARIS = ZoneInfo("Europe/Paris")


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def paris(*fields: int) -> int:
    return ms(datetime(*fields, tzinfo=PARIS))  # type: ignore[misc]


def dues(timing: Cron | Every, start: int, end: int) -> list[datetime]:
    """The due times in (start, end], as UTC datetimes."""
    return [
        datetime.fromtimestamp(d / 1000, timezone.utc)
        for d in timing.between(start, end, MAX_CATCH_UP)
    ]


class TestEvery:
    def test_due_at_multiples_of_the_period_since_the_epoch(self) -> None:
        every = Every(30_000)
        assert every.after(0) == 30_000
        assert every.after(29_999) == 30_000
        assert every.after(30_000) == 60_000
        assert every.between(10_000, 100_000, 10) == [30_000, 60_000, 90_000]
        assert every.between(30_000, 30_000, 10) == []

    def test_between_keeps_the_newest(self) -> None:
        assert Every(1000).between(0, 10_000, 3) == [8000, 9000, 10_000]


class TestCron:
    def test_in_its_time_zone(self) -> None:
        cron = Cron("0 7 * * *", "Europe/Paris")
        start = paris(2026, 1, 10, 12, 0)
        assert cron.after(start) == paris(2026, 1, 11, 7, 0)
        assert cron.after(paris(2026, 1, 11, 7, 0)) == paris(2026, 1, 12, 7, 0)  # strictly after

    def test_a_daily_time_in_the_spring_gap_fires_once_when_it_ends(self) -> None:
        # 2026-03-29, Europe/Paris: 02:00 CET becomes 03:00 CEST; 02:30 does not exist.
        cron = Cron("30 2 * * *", "Europe/Paris")
        found = dues(cron, paris(2026, 3, 28, 12), paris(2026, 3, 30, 12))
        assert [d.astimezone(PARIS).isoformat() for d in found] == [
            "2026-03-29T03:00:00+02:00",
            "2026-03-30T02:30:00+02:00",
        ]

    def test_a_daily_time_in_the_autumn_repeat_fires_once(self) -> None:
        # 2026-10-25, Europe/Paris: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
        cron = Cron("30 2 * * *", "Europe/Paris")
        found = dues(cron, paris(2026, 10, 24, 12), paris(2026, 10, 26, 12))
        assert [d.isoformat() for d in found] == [
            "2026-10-25T00:30:00+00:00",  # 02:30 CEST, the first of the two
            "2026-10-26T01:30:00+00:00",  # 02:30 CET
        ]

    def test_an_hourly_job_follows_the_clock_through_both_changes(self) -> None:
        cron = Cron("0 * * * *", "Europe/Paris")
        spring = dues(cron, paris(2026, 3, 29, 0, 30), paris(2026, 3, 29, 4, 30))
        assert [d.astimezone(PARIS).hour for d in spring] == [1, 3, 4]  # 02:00 never happens
        autumn = dues(cron, paris(2026, 10, 25, 0, 30), paris(2026, 10, 25, 3, 30))
        assert [d.hour for d in autumn] == [23, 0, 1, 2]  # UTC: the repeated 02:00 is two moments

    def test_between_many_due_times_keeps_the_newest_in_order(self) -> None:
        cron = Cron("* * * * *", "UTC")
        start = ms(datetime(2026, 1, 1, tzinfo=timezone.utc))
        found = cron.between(start, start + 5000 * 60_000, 1000)
        assert len(found) == 1000
        assert found[-1] == start + 5000 * 60_000
        assert found == sorted(found) and found[1] - found[0] == 60_000


class TestCatchUp:
    NOW = 1_000_000_000

    def pending(self, *late_seconds: float) -> list[int]:
        return [self.NOW - int(s * 1000) for s in late_seconds]

    def test_due_times_found_in_time_always_fire(self) -> None:
        pending = self.pending(1.5, 0.5, 0)
        for policy in CatchUp:
            assert policy.choose(pending, self.NOW) == pending

    def test_one_fires_once_for_the_missed(self) -> None:
        assert CatchUp.ONE.choose(self.pending(300, 200, 100), self.NOW) == self.pending(100)
        in_time = self.pending(300, 200, 1)
        assert CatchUp.ONE.choose(in_time, self.NOW) == self.pending(1)  # it stands for them

    def test_all_fires_each_missed(self) -> None:
        pending = self.pending(300, 200, 100, 0)
        assert CatchUp.ALL.choose(pending, self.NOW) == pending

    def test_none_skips_the_missed(self) -> None:
        assert CatchUp.NONE.choose(self.pending(300, 200, 100), self.NOW) == []
        late = LATE_AFTER_MS / 1000
        assert CatchUp.NONE.choose(self.pending(late + 1, late), self.NOW) == self.pending(late)


def test_fire_ids_are_the_same_everywhere_and_differ_by_due_time() -> None:
    assert fire_id("s", 1000) == fire_id("s", 1000)
    assert len({fire_id("s", 1000), fire_id("s", 2000), fire_id("t", 1000)}) == 3


class TestDefinitions:
    def test_periodic_over_a_task_and_over_a_function(self) -> None:
        app = Forkq("proj", broker="memory://defs")

        @app.periodic(every=30)
        @app.task
        def cleanup() -> None: ...

        @app.periodic(cron="*/5 * * * *", tz="Europe/Paris", name="report", catch_up="all")
        def report() -> int:
            return 1

        assert cleanup.name in app.tasks and report.name in app.tasks and report() == 1
        assert app.schedules[cleanup.name].timing == Every(30_000)
        schedule = app.schedules["report"]
        assert (schedule.task, schedule.catch_up) == (report.name, CatchUp.ALL)
        assert schedule.timing == Cron("*/5 * * * *", "Europe/Paris")

    def test_add_periodic_with_arguments(self) -> None:
        app = Forkq("proj", broker="memory://defs")

        @app.task
        def add(x: int, y: int) -> int:
            return x + y

        a = app.add_periodic((add, (1, 2), {}), every=timedelta(minutes=1), name="add-1-2")
        b = app.add_periodic(("proj.other", [3], {"z": 4}), every=60, name="other")
        assert (a.task, a.args, a.timing) == (add.name, (1, 2), Every(60_000))
        assert (b.task, b.args, b.kwargs) == ("proj.other", (3,), {"z": 4})

    def test_two_schedules_of_one_name_are_an_error(self) -> None:
        app = Forkq("proj", broker="memory://defs")
        app.add_periodic("proj.a", every=10)
        app.add_periodic("proj.a", every=10)  # the same one again (a module imported twice)
        with pytest.raises(ConfigurationError, match=r"periodic proj\.a: a schedule of that name"):
            app.add_periodic("proj.a", every=20)
        app.add_periodic("proj.a", every=20, name="proj.a-slow")

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"cron": "61 * * * *"}, "bad cron expression '61 \\* \\* \\* \\*': Bad minute"),
            ({"cron": "* * *"}, "bad cron expression .*five fields"),
            ({"cron": "* * */20 * 1L"}, "cron .* is never due in the next 50 years"),
            (
                {"cron": "* * * * *", "tz": "Europe/Nowhere"},
                "unknown time zone tz='Europe/Nowhere'",
            ),
            ({"every": 0}, "every must be a number of seconds > 0, not 0"),
            ({"every": -5}, "every must be a number of seconds > 0"),
            ({"every": float("nan")}, "every must be a number of seconds > 0"),
            ({"every": "5"}, "every must be a number of seconds > 0, not '5'"),
            ({"every": 10, "tz": "UTC"}, "tz= applies to cron= only"),
            ({}, "give cron= .* or every="),
            ({"every": 1, "cron": "* * * * *"}, "give cron= .* or every="),
            ({"every": 1, "catch_up": "some"}, "catch_up must be 'one', 'all', 'none', not 'some'"),
            ({"every": 1, "args": (object(),)}, "arguments JSON cannot hold"),
        ],
    )
    def test_a_bad_argument_is_one_line_naming_it(
        self, kwargs: dict[str, object], message: str
    ) -> None:
        arguments = {"cron": None, "every": None, "tz": None, "catch_up": "one", **kwargs}
        with pytest.raises(ConfigurationError, match=f"^periodic s: {message}") as raised:
            define("s", "proj.task", **arguments)  # type: ignore[arg-type]
        assert "\n" not in str(raised.value)

    def test_the_decorator_checks_at_definition(self) -> None:
        app = Forkq("proj", broker="memory://defs")
        with pytest.raises(ConfigurationError, match=r"tests\.test_schedule\.t: every must"):

            @app.periodic(every=0)
            @app.task
            def t() -> None: ...
