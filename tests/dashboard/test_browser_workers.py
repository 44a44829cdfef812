"""The Workers page in a real headless Chromium, with a real `forkq worker` on Redis: shrink,
warm shutdown, a killed child's restart, a running task's time, and the Tasks page's pager."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from forkq.app import Forkq
from forkq.events import TaskEventKind
from tests.conftest import StartedSignal, WorkerProcess
from tests.dashboard.browser import DashboardProcess, click, text
from tests.dashboard.conftest import Reporter, wait_for
from tests.dashboard.helpers import task_event

pytestmark = pytest.mark.timeout(120)


def child_rows(driver: Any, card: str) -> list[dict[str, str]]:
    """The worker card's child rows as the page shows them now (read in one script: the
    stream may replace the rows between two reads of elements)."""
    rows: list[dict[str, str]] = driver.execute_script(
        """return Array.from(document.querySelectorAll(arguments[0] + ' tr.child')).map(r => ({
             index: r.querySelector('[data-text="index"]').textContent,
             pid: r.querySelector('[data-text="pid"]').textContent,
             running: r.querySelector('.running').textContent,
             restarts: r.querySelector('.restarts').textContent}));""",
        f"{card} tbody.child-rows",
    )
    return rows


def pool_stats(client: Forkq, worker_name: str) -> dict[str, Any]:
    """The worker's own account of its pool (inspect stats)."""
    stats = client.control.inspect("stats", [worker_name], timeout=5)
    assert worker_name in stats.replies, stats
    reply: dict[str, Any] = stats.replies[worker_name]
    return reply


@pytest.mark.parametrize("worker_concurrency", ["2"])
def test_shrink_takes_a_child_from_the_pool(
    browser: Any, worker: WorkerProcess, redis_client: Forkq,
    worker_name: str, start_dashboard: Any,
) -> None:  # fmt: skip
    worker.all_children(2)
    dash: DashboardProcess = start_dashboard()
    browser.get(dash.url("/workers"))
    card = f'article[data-host="{worker_name}"]'
    wait_for(browser, lambda d: len(child_rows(d, card)) == 2, "two child rows")
    click(browser, f'{card} button[data-action="shrink"]')
    wait_for(browser, lambda d: d.find_elements(By.ID, "said"), "what the action did")
    assert "shrank" in text(browser, "#said"), text(browser, "#said")
    wait_for(browser, lambda _: len(pool_stats(redis_client, worker_name)["children"]) == 1,
             "the pool down to one child")  # fmt: skip
    after = pool_stats(redis_client, worker_name)
    assert after["concurrency"] == 1 and after["restarts"] == 0  # retired, not replaced
    wait_for(browser, lambda d: len(child_rows(d, card)) == 1, "one child row, live")


def test_shutdown_stops_the_worker_warm_and_the_page_shows_it_offline(
    browser: Any, worker: WorkerProcess, redis_client: Forkq,
    worker_name: str, start_dashboard: Any,
) -> None:  # fmt: skip
    dash: DashboardProcess = start_dashboard()
    browser.get(dash.url("/workers"))
    card = f'article[data-host="{worker_name}"]'
    wait_for(browser, lambda d: text(d, f"{card} .status") == "online", "the worker online")
    click(browser, f'{card} button[data-action="shutdown"]')
    browser.switch_to.alert.accept()  # "shutdown?"
    wait_for(browser, lambda d: d.find_elements(By.ID, "said"), "what the action did")
    assert "shutting down" in text(browser, "#said"), text(browser, "#said")
    assert worker.wait(timeout=30) == 0, worker.log()
    wait_for(browser, lambda d: text(d, f"{card} .status") == "offline", "the worker offline")
    assert child_rows(browser, card) == []


def test_a_killed_child_shows_one_restart_for_its_slot(
    browser: Any, worker: WorkerProcess, redis_client: Forkq,
    worker_name: str, start_dashboard: Any,
) -> None:  # fmt: skip
    dash: DashboardProcess = start_dashboard()
    browser.get(dash.url("/workers"))
    card = f'article[data-host="{worker_name}"]'
    wait_for(browser, lambda d: len(child_rows(d, card)) == 1, "the child's row")
    (child,) = pool_stats(redis_client, worker_name)["children"]
    assert child_rows(browser, card)[0]["restarts"] == "0"
    os.kill(child["pid"], signal.SIGKILL)
    wait_for(
        browser,
        lambda d: (
            [(r["index"], r["restarts"]) for r in child_rows(d, card)]
            == [(str(child["index"]), "1")]
        ),
        "restarts 1 for the killed child's slot",
    )
    (replaced,) = child_rows(browser, card)
    assert replaced["pid"] != str(child["pid"])
    assert pool_stats(redis_client, worker_name)["restarts"] == 1


def test_a_long_tasks_runtime_grows_live(
    browser: Any, worker: WorkerProcess, redis_client: Forkq, e2e_dir: Path,
    worker_name: str, start_dashboard: Any,
) -> None:  # fmt: skip
    started = StartedSignal(e2e_dir)
    running = redis_client.send_task("e2eapp.announce_then_sleep", (started.path, 60))
    started.wait(timeout=15)
    dash: DashboardProcess = start_dashboard()
    browser.get(dash.url("/workers"))
    card = f'article[data-host="{worker_name}"]'

    def runtime(d: Any) -> float | None:
        rows = child_rows(d, card)
        found = re.fullmatch(r"running for (\d+\.\d)s", rows[0]["running"]) if rows else None
        return float(found.group(1)) if found else None

    first = wait_for(browser, runtime, "a running time")
    browser.execute_script("window.forkqKept = 42")  # gone if the page reloads
    seen = {first}

    def grown(d: Any) -> bool:
        seen.add(runtime(d) or first)
        return len(seen) >= 3 and max(seen) >= first + 1.5

    # three values within 6 s, less than a heartbeat interval (10 s): the page reads the clock
    wait_for(browser, grown, "the running time growing each second", timeout=6)
    assert browser.execute_script("return window.forkqKept") == 42
    assert not running.ready()


def test_an_older_page_keeps_its_rows_while_new_tasks_stream_in(
    browser: Any, redis_client: Forkq, reporter: Reporter, start_dashboard: Any
) -> None:
    reporter.publish(*(task_event(TaskEventKind.SUCCEEDED, f"old-{n:03d}") for n in range(120)))
    dash: DashboardProcess = start_dashboard()
    browser.get(dash.url("/tasks?state=succeeded"))
    wait_for(browser, lambda d: "old-119" in text(d, "#task-rows"), "the newest page")
    click(browser, "#older")
    wait_for(browser, lambda d: "old-019" in text(d, "#task-rows"), "the older page")
    assert "state=succeeded" in browser.current_url and "old-020" not in text(browser, "#task-rows")
    reporter.publish(task_event(TaskEventKind.SUCCEEDED, "new-1"))
    wait_for(browser, lambda d: "of 121 known" in text(d, "#shown"), "the streamed count")
    assert "new-1" not in text(browser, "#task-rows") and "old-000" in text(browser, "#task-rows")
    click(browser, "#newest")
    wait_for(browser, lambda d: "new-1" in text(d, "#task-rows"), "the new task on the newest")
