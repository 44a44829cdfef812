"""The Queues, Dead letters and Workflows pages in a real headless Chromium, with a real
`forkq worker` on Redis: values change live, and the buttons act on the broker."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlencode

import pytest
from selenium.webdriver.common.by import By

from forkq.app import Forkq
from tests.conftest import WorkerProcess
from tests.dashboard.browser import DashboardProcess, click, said, text
from tests.dashboard.conftest import wait_for

pytestmark = pytest.mark.timeout(120)


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

    header = [redis_client.signature("e2eapp.slow_add", (n, n, 1.0)) for n in range(4)]
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
