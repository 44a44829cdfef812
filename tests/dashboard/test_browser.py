"""The dashboard in a real headless Chromium, with a real `forkq worker` on Redis: each page
opens, live values change without a reload, the buttons act on the cluster, and the safety
rules hold as a browser meets them."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.common.by import By

from forkq.app import Forkq
from forkq.events import TaskEventKind
from forkq.exceptions import TaskRevoked
from forkq.revocation import current_revocations
from forkq.states import REVOKED
from tests.conftest import StartedSignal, WorkerProcess
from tests.dashboard.browser import DashboardProcess, status
from tests.dashboard.conftest import Reporter, now, wait_for
from tests.dashboard.helpers import HOSTILE, heartbeat, task_event

pytestmark = pytest.mark.timeout(120)
TOKEN = "browser-test-token-0123456789"


def text(driver: Any, css: str) -> str:
    """The element's text, found again if the live stream replaced it while it was read."""
    while True:
        try:
            return str(driver.find_element(By.CSS_SELECTOR, css).text)
        except StaleElementReferenceException:
            continue


def click(driver: Any, css: str) -> None:
    """Click the element, found again if the live stream replaced it before the click."""

    def clicked(d: Any) -> bool:
        try:
            d.find_element(By.CSS_SELECTOR, css).click()
        except StaleElementReferenceException:
            return False
        return True

    wait_for(driver, clicked, f"a click on {css}")


def said(driver: Any) -> str:
    """The line the last action left on the page ("" when none)."""
    found = driver.find_elements(By.ID, "said")
    return text(driver, "#said") if found else ""


def no_alert(driver: Any) -> bool:
    try:
        _ = driver.switch_to.alert
    except NoAlertPresentException:
        return True
    return False


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


def test_queue_depth_and_priority_bands_change_live(
    browser: Any, worker: WorkerProcess, redis_client: Forkq, start_dashboard: Any
) -> None:
    queue = f"parked-{os.getpid()}"  # no worker consumes it
    redis_client.send_task("e2eapp.add", (1, 1), queue=queue, priority=9)
    dash: DashboardProcess = start_dashboard()
    browser.get(dash.url("/queues?" + urlencode({"queue": queue})))
    card = f'article[data-queue="{queue}"]'
    wait_for(browser, lambda d: text(d, f"{card} .messages") == "1", "the first message")
    browser.execute_script("window.forkqKept = 42")  # gone if the page reloads
    for _ in range(2):
        redis_client.send_task("e2eapp.add", (1, 1), queue=queue, priority=0)
    band = f'{card} tr[data-band="0-2"] .count'
    wait_for(browser, lambda d: text(d, f"{card} .messages") == "3", "two more messages")
    wait_for(browser, lambda d: text(d, band) == "2", "the low band")
    assert text(browser, f'{card} tr[data-band="9"] .count') == "1"
    assert redis_client.broker.purge(queue) == 3
    wait_for(browser, lambda d: text(d, f"{card} .messages") == "0", "the purged queue")
    assert browser.execute_script("return window.forkqKept") == 42


def test_a_dead_letter_requeued_then_deleted_from_the_page(
    browser: Any, worker: WorkerProcess, redis_client: Forkq, start_dashboard: Any
) -> None:
    def letters() -> list[Any]:
        return redis_client.broker.dead_letters(None, 10)

    sent = redis_client.send_task("e2eapp.missing", (1,))  # the worker has no such task
    wait_for(None, lambda _: letters(), "the worker's dead letter")
    [first] = letters()
    dash: DashboardProcess = start_dashboard()
    browser.get(dash.url("/dead"))
    row = f'tr.letter[data-receipt="{first.receipt}"]'
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row), "the letter's row")
    assert "unknown task 'e2eapp.missing'" in text(browser, f"{row} .reason")
    assert sent.id in text(browser, row)
    click(browser, f'{row} button[data-action="requeue"]')
    browser.switch_to.alert.accept()  # "requeue?"
    wait_for(browser, lambda d: d.find_elements(By.ID, "said"), "what the action did")
    assert text(browser, "#said") == "requeued 1 dead letter(s)"
    # back in its queue, so the worker fetched it again and dead-lettered it anew
    wait_for(None, lambda _: [d.receipt for d in letters()] not in ([], [first.receipt]),
             "the requeued message dead-lettered again")  # fmt: skip
    [again] = letters()
    assert again.body == first.body
    row = f'tr.letter[data-receipt="{again.receipt}"]'
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row), "the new letter, live")
    click(browser, f'{row} button[data-action="delete"]')
    browser.switch_to.alert.accept()  # "delete?"
    wait_for(browser, lambda d: said(d) == "deleted 1 dead letter(s)", "what the action did")
    assert letters() == [] and redis_client.broker.size("default") == 0
    for _ in range(2):
        redis_client.send_task("e2eapp.missing", (2,))
    wait_for(None, lambda _: len(letters()) == 2, "two more dead letters")
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.letter")) == 2, "both")
    click(browser, 'button[data-action="delete all"]')
    browser.switch_to.alert.accept()  # "delete all?"
    wait_for(browser, lambda d: said(d) == "deleted 2 dead letter(s)", "what the action did")
    assert letters() == []


def test_a_chords_member_progress_advances_live_to_its_body(
    browser: Any, worker: WorkerProcess, redis_client: Forkq, start_dashboard: Any
) -> None:
    from forkq import chord

    header = [redis_client.signature("e2eapp.slow_add", (n, n, 0.4)) for n in range(4)]
    dash: DashboardProcess = start_dashboard()
    result = chord(header)(redis_client.signature("e2eapp.ping", immutable=True))
    chord_id = result.parent.id if result.parent is not None else ""
    browser.get(dash.url(f"/workflows/{chord_id}"))
    wait_for(browser, lambda d: text(d, "#kind") == "chord", "the chord, from its members' events")
    browser.execute_script("window.forkqKept = 42")  # gone if the page reloads
    seen = set()
    while (done := text(browser, '#progress [data-text="succeeded"]')) != "4":
        seen.add(done)
        wait_for(browser, lambda d, done=done: text(d, '#progress [data-text="succeeded"]') != done,
                 "more members succeeded")  # fmt: skip
    assert len(seen) >= 2, seen  # counted up live, not all at once
    assert text(browser, '#progress [data-text="size"]') == "4"
    assert isinstance(result.get(timeout=15), int)  # the pid that ran it
    wait_for(browser, lambda d: text(d, "#body-state") == "succeeded", "the body's state")
    assert browser.execute_script("return window.forkqKept") == 42
