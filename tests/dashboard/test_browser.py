"""The dashboard in a real headless Chromium, with a real `forkq worker` on Redis: each page
opens, live values change without a reload, the buttons act on the cluster, and the safety
rules hold as a browser meets them. More in test_browser_workers.py and test_browser_pages.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from selenium.webdriver.common.by import By

from forkq.app import Forkq
from forkq.events import TaskEventKind
from forkq.exceptions import TaskRevoked
from forkq.revocation import current_revocations
from forkq.states import REVOKED
from tests.conftest import StartedSignal, WorkerProcess
from tests.dashboard.browser import DashboardProcess, click, no_alert, status, text
from tests.dashboard.conftest import Reporter, now, wait_for
from tests.dashboard.helpers import HOSTILE, heartbeat, task_event

pytestmark = pytest.mark.timeout(120)


TOKEN = "browser-test-token-0123456789"


def test_overview_counts_a_finished_task_live_without_a_reload(
    browser: Any, worker: WorkerProcess, redis_client: Forkq, start_dashboard: Any
) -> None:
    dash: DashboardProcess = start_dashboard()
    browser.get(dash.url("/"))
    wait_for(browser, lambda d: text(d, "#workers-online") == "1", "one worker online")
    wait_for(browser, lambda d: text(d, "#succeeded") == "1", "the fixture's ping succeeded")
    browser.execute_script("window.forkqKept = 42")  # gone if the page reloads
    result = redis_client.send_task("e2eapp.add", (2, 3))
    assert result.get(timeout=15) == 5
    wait_for(browser, lambda d: text(d, "#succeeded") == "2", "one more succeeded")
    assert browser.execute_script("return window.forkqKept") == 42
    links = browser.find_elements(By.CSS_SELECTOR, "#recent a")
    assert any(link.get_attribute("href").endswith(f"/tasks/{result.id}") for link in links)


def test_every_page_opens_and_shows_the_worker_and_its_tasks(
    browser: Any, worker: WorkerProcess, redis_client: Forkq,
    worker_name: str, start_dashboard: Any,
) -> None:  # fmt: skip
    result = redis_client.send_task("e2eapp.add", (1, 1))
    assert result.get(timeout=15) == 2
    dash: DashboardProcess = start_dashboard()
    browser.get(dash.url("/workers"))
    card = f'article[data-host="{worker_name}"]'
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, card), "the worker's card")
    assert "fork saved" in text(browser, card)
    assert browser.find_elements(By.CSS_SELECTOR, f"{card} tr.child")
    browser.get(dash.url("/tasks?" + urlencode({"search": result.id})))
    wait_for(browser, lambda d: text(d, "#task-rows") != "", "the task's row")
    assert result.id in text(browser, "#task-rows")
    click(browser, "#task-rows a")
    wait_for(browser, lambda d: text(d, "#stored-state") == "SUCCESS", "the stored state")
    assert text(browser, "#task-result") == "2"
    assert text(browser, "#task-args") == "1, 1"  # from the worker's received event


def test_revoke_a_queued_task_stores_revoked(
    browser: Any, worker: WorkerProcess, redis_client: Forkq, worker_name: str,
    start_dashboard: Any,
) -> None:  # fmt: skip
    parked = redis_client.send_task("e2eapp.add", (1, 2), queue="parked")  # nobody consumes it
    dash: DashboardProcess = start_dashboard()
    browser.get(dash.url(f"/tasks/{parked.id}"))
    click(browser, 'button[data-action="revoke"]')
    wait_for(browser, lambda d: d.find_elements(By.ID, "said"), "what the action did")
    assert text(browser, "#said") == f"{parked.id} revoked"
    assert parked.id in [r.task_id for r in current_revocations(redis_client)]
    added = redis_client.control.broadcast("add-queue", {"queue": "parked"}, [worker_name], 5)
    assert added.complete, added
    assert isinstance(parked.get(timeout=15, propagate=False), TaskRevoked)
    stored = redis_client.backend.get(parked.id)
    assert stored is not None and stored.state == REVOKED


def test_terminate_kills_the_running_task_and_stores_revoked(
    browser: Any, worker: WorkerProcess, redis_client: Forkq, e2e_dir: Path,
    start_dashboard: Any,
) -> None:  # fmt: skip
    started = StartedSignal(e2e_dir)
    running = redis_client.send_task("e2eapp.announce_then_sleep", (started.path, 60))
    child = started.wait(timeout=15)
    dash: DashboardProcess = start_dashboard()
    browser.get(dash.url(f"/tasks/{running.id}"))
    click(browser, 'button[data-action="terminate"]')
    browser.switch_to.alert.accept()  # "terminate?"
    wait_for(browser, lambda d: d.find_elements(By.ID, "said"), "what the action did")
    assert text(browser, "#said") == f"{running.id} revoked and terminated"
    assert isinstance(running.get(timeout=15, propagate=False), TaskRevoked)
    stored = redis_client.backend.get(running.id)
    assert stored is not None and stored.state == REVOKED
    assert child not in worker.all_children(1)


def test_grow_adds_a_child_to_the_pool(
    browser: Any, worker: WorkerProcess, redis_client: Forkq,
    worker_name: str, start_dashboard: Any,
) -> None:  # fmt: skip
    dash: DashboardProcess = start_dashboard()
    browser.get(dash.url("/workers"))
    grow = f'article[data-host="{worker_name}"] button[data-action="grow"]'
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, grow), "the grow button")
    click(browser, grow)
    wait_for(browser, lambda d: d.find_elements(By.ID, "said"), "what the action did")
    assert "grew" in text(browser, "#said"), text(browser, "#said")
    stats = redis_client.control.inspect("stats", [worker_name], timeout=5)
    assert stats.replies[worker_name]["concurrency"] == 2
    worker.all_children(2)


def test_hostile_names_stay_text_painted_and_streamed(
    browser: Any, redis_client: Forkq, reporter: Reporter, start_dashboard: Any
) -> None:
    reporter.publish(task_event(TaskEventKind.FAILED, "hostile-1", name=HOSTILE))
    dash: DashboardProcess = start_dashboard()
    browser.get(dash.url("/tasks"))
    wait_for(browser, lambda d: HOSTILE in text(d, "#task-rows"), "the painted name as text")
    reporter.publish(task_event(TaskEventKind.FAILED, "hostile-2", name=HOSTILE + "2"))
    wait_for(browser, lambda d: "hostile-2" in text(d, "#task-rows"), "the streamed row")
    assert HOSTILE + "2" in text(browser, "#task-rows")
    assert no_alert(browser) and not browser.find_elements(By.CSS_SELECTOR, "#task-rows img")


def test_auth_refuses_every_route_and_a_token_lets_the_browser_in(
    browser: Any, redis_client: Forkq, reporter: Reporter, start_dashboard: Any
) -> None:
    dash: DashboardProcess = start_dashboard("--token", TOKEN)
    for path in ("/", "/tasks", "/stream/overview", "/static/dashboard.js"):
        assert status(dash.url(path))[0] == 401, path
    browser.get(dash.url(f"/?token={TOKEN}"))
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#live[data-state="on"]'),
             "the live stream, authenticated by the cookie")  # fmt: skip
    assert not browser.find_elements(By.ID, "open-banner")
    reporter.publish(heartbeat("someone@host"))
    wait_for(browser, lambda d: text(d, "#workers-online") == "1", "a streamed update")


def test_basic_auth_reaches_the_stream_and_the_static_files(
    browser: Any, redis_client: Forkq, reporter: Reporter, start_dashboard: Any
) -> None:
    dash: DashboardProcess = start_dashboard("--auth", "ann:s3cret")
    assert status(dash.url("/stream/overview"))[0] == 401
    browser.get(dash.url("/").replace("http://", "http://ann:s3cret@"))
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#live[data-state="on"]'),
             "the live stream, with the page's credentials")  # fmt: skip
    styled = browser.execute_script(
        "return getComputedStyle(document.querySelector('body > header')).display"
    )
    assert styled == "flex"  # the stylesheet came, behind the same auth
    reporter.publish(heartbeat("basic@host"))
    wait_for(browser, lambda d: text(d, "#workers-online") == "1", "a streamed update")


def test_a_post_without_the_csrf_token_is_refused(
    redis_client: Forkq, start_dashboard: Any
) -> None:
    dash: DashboardProcess = start_dashboard()
    parked = redis_client.send_task("e2eapp.add", (1, 2), queue="parked")
    code, body = status(dash.url(f"/tasks/{parked.id}/revoke"), "POST", b"terminate=1",
                        {"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert code == 403 and "CSRF" in body
    assert redis_client.backend.get(parked.id) is None


def test_read_only_hides_the_buttons_and_refuses_posts(
    browser: Any, redis_client: Forkq, reporter: Reporter, worker_name: str,
    start_dashboard: Any,
) -> None:  # fmt: skip
    reporter.publish(heartbeat(worker_name, worker=worker_name))
    dash: DashboardProcess = start_dashboard("--read-only")
    for path in ("/workers", "/tasks/some-task"):
        browser.get(dash.url(path))
        assert browser.find_elements(By.ID, "read-only-banner")
        assert not browser.find_elements(By.CSS_SELECTOR, "button[data-action]")
    csrf = browser.get_cookie("forkq_csrf")["value"]
    code, body = status(dash.url("/tasks/some-task/revoke"), "POST", f"csrf={csrf}".encode(),
                        {"Content-Type": "application/x-www-form-urlencoded",
                         "Cookie": f"forkq_csrf={csrf}"})  # fmt: skip
    assert code == 403 and "read-only" in body


def test_hide_args_hides_arguments(
    browser: Any, redis_client: Forkq, reporter: Reporter, start_dashboard: Any
) -> None:
    reporter.publish(task_event(TaskEventKind.RECEIVED, "private-1", args="('ann@example.com',)"))
    dash: DashboardProcess = start_dashboard("--hide-args")
    browser.get(dash.url("/tasks/private-1"))
    assert text(browser, "#task-args") == "(hidden)"
    assert "ann@example.com" not in browser.page_source


def test_a_phone_sized_screen_needs_no_sideways_scrolling(
    browser: Any, redis_client: Forkq, reporter: Reporter, start_dashboard: Any
) -> None:
    reporter.publish(heartbeat("phone@host", busy="p-2", started_at=now() - 3.4, restarts=12),
                     task_event(TaskEventKind.SUCCEEDED, "p-1"))  # fmt: skip
    dash: DashboardProcess = start_dashboard()
    browser.set_window_size(390, 844)
    try:
        for path in ("/", "/workers", "/tasks", "/tasks/p-1", "/queues", "/dead", "/schedules"):
            browser.get(dash.url(path))
            wide = browser.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth"
            )
            assert wide <= 1, f"{path} is {wide}px wider than the screen"
    finally:
        browser.set_window_size(1280, 900)
