"""The Schedules page on a SQLite store: the app's periodic tasks with their next due time and
last fire as the broker records them, the leader, names shown as text; an app without any."""

from __future__ import annotations

import time

from forkq.app import Forkq
from forkq.engines.contract import Fire, schedule_store
from tests.dashboard.helpers import HOSTILE, dashboard, page_showing


def scheduled_app(url: str) -> Forkq:
    app = Forkq("sched", broker=url)
    app.add_periodic("sched.report", every=3600, name="hourly")
    app.add_periodic("sched.report", cron="0 0 1 1 *", name=HOSTILE)
    return app


def test_next_due_last_fire_and_leader_as_the_broker_records_them(url: str) -> None:
    scheduler = scheduled_app(url)  # a scheduler's: its connection is its thread's
    store = schedule_store(scheduler.broker, scheduler.backend)
    fired_due = int(time.time() // 3600 * 3600 * 1000)
    assert store.fire([Fire("hourly", "default", fired_due, "fire-task-1")]) == [True]
    assert store.hold("scheduler:sched", "host-1.42.abc", 30)
    scheduler.close()
    with dashboard(url, [], app=scheduled_app(url)) as client:
        page = page_showing(client, "/schedules", "fire-task-1")
        hourly = page.split('data-schedule="hourly">', 1)[1].split("</tr>", 1)[0]
        assert "every 3600s" in hourly or "3600" in hourly
        assert 'href="/tasks/fire-task-1"' in hourly and " ago" in hourly  # the last fire
        assert "in " in hourly.split('class="next-due"', 1)[1]  # due within the hour
        assert "host-1.42.abc, its lease for" in page
        assert "<script>alert" not in page and "&lt;script&gt;" in page
        assert page.count('class="schedule"') == 3  # two, and the template's row


def test_an_app_without_schedules_says_so(url: str) -> None:
    with dashboard(url, []) as client:
        page = client.get("/schedules").text
        assert "has no periodic tasks" in page and 'id="no-schedules" data-show' in page
