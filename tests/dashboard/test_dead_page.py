"""The Dead letters page on a SQLite store: letters with their reasons, shown as text; requeue
and delete, one or all (of a queue or of every queue), each checked in the broker; the rules
every action keeps (CSRF, read-only)."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from forkq.app import Forkq
from forkq.dashboard import feed as feed_module
from forkq.engines.contract import Consumer, outgoing
from tests.dashboard.helpers import HOSTILE, dashboard, page_showing


def bury(url: str, *letters: tuple[str, bytes, str]) -> None:
    """Each (queue, body, reason) published, fetched and dead-lettered."""
    app = Forkq("bury", broker=url)
    session = app.broker.consumer(Consumer("w", "w/0"), app.backend)
    for queue, body, reason in letters:
        app.broker.publish([outgoing(queue, body)])
        [held] = session.fetch([queue], 1, 5.0)
        session.dead_letter(held, reason)
    app.close()


def post(client: TestClient, path: str, **form: str) -> str:
    """The action's line, from the page it redirects to."""
    client.get("/dead")  # the CSRF cookie
    answer = client.post(path, data={"csrf": client.cookies["forkq_csrf"], **form})
    assert answer.status_code == 200, answer.text  # followed the redirect
    return answer.text.split('id="said">', 1)[1].split("<", 1)[0]


def broker_letters(url: str) -> list[tuple[str, bytes]]:
    app = Forkq("look", broker=url)
    try:
        return sorted((d.queue, d.body) for d in app.broker.dead_letters(None, 100))
    finally:
        app.close()


def queue_size(url: str, queue: str) -> int:
    app = Forkq("look", broker=url)
    try:
        return app.broker.size(queue)
    finally:
        app.close()


def test_letters_are_listed_with_their_reasons_as_text(url: str) -> None:
    bury(url, ("q", HOSTILE.encode() + b"\x1b[2J", HOSTILE))
    with dashboard(url, []) as client:
        page = page_showing(client, "/dead", "1 shown: all")
        assert "<script>alert" not in page and "&lt;script&gt;" in page
        assert "\\x1b[2J" in page and "\x1b" not in page  # the body's ESC as its escape
        assert "1 shown: all" in page


def test_requeue_one_and_delete_one_act_on_that_letter_only(url: str) -> None:
    bury(url, ("q", b"one", "r1"), ("q", b"two", "r2"), ("q", b"three", "r3"))
    app = Forkq("look", broker=url)
    receipts = {d.body: d.receipt for d in app.broker.dead_letters(None, 10)}
    app.close()
    with dashboard(url, []) as client:
        assert "3 shown" in page_showing(client, "/dead", "3 shown")
        assert (
            post(client, "/dead/requeue", receipt=receipts[b"one"]) == "requeued 1 dead letter(s)"
        )
        assert broker_letters(url) == [("q", b"three"), ("q", b"two")]
        assert queue_size(url, "q") == 1  # back in its queue
        assert post(client, "/dead/delete", receipt=receipts[b"two"]) == "deleted 1 dead letter(s)"
        assert broker_letters(url) == [("q", b"three")]
        assert queue_size(url, "q") == 1  # deleted, not requeued
        assert "1 shown: all" in client.get("/dead").text  # read again after the action


def test_all_of_one_queue_or_of_every_queue(url: str) -> None:
    bury(url, ("a", b"a1", "r"), ("a", b"a2", "r"), ("b", b"b1", "r"), ("c", b"c1", "r"))
    with dashboard(url, []) as client:
        assert "4 shown" in page_showing(client, "/dead", "4 shown")
        assert post(client, "/dead/requeue", all="1", queue="a") == "requeued 2 dead letter(s)"
        assert broker_letters(url) == [("b", b"b1"), ("c", b"c1")]
        assert queue_size(url, "a") == 2
        assert post(client, "/dead/delete", all="1", queue="b") == "deleted 1 dead letter(s)"
        assert broker_letters(url) == [("c", b"c1")]
        assert post(client, "/dead/requeue", all="1") == "requeued 1 dead letter(s)"
        bury(url, ("d", b"d1", "r"))
        assert post(client, "/dead/delete", all="1", queue="") == "deleted 1 dead letter(s)"
        assert broker_letters(url) == []
        assert "No dead letters." in client.get("/dead").text


def test_actions_need_the_csrf_token_and_are_refused_read_only(url: str) -> None:
    bury(url, ("q", b"one", "r"))
    with dashboard(url, []) as client:
        client.get("/dead")
        assert client.post("/dead/delete", data={"all": "1"}).status_code == 403
        assert (
            client.post("/dead/purge", data={"csrf": client.cookies["forkq_csrf"]}).status_code
            == 404
        )
    with dashboard(url, [], read_only=True) as client:
        page = client.get("/dead").text
        assert "data-action=" not in page
        assert (
            client.post(
                "/dead/delete", data={"csrf": client.cookies["forkq_csrf"], "all": "1"}
            ).status_code
            == 403
        )
    assert broker_letters(url) == [("q", b"one")]


def test_a_queue_filter_reads_that_queues_letters_and_its_forms_act_on_them(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed_module, "DEAD_READ", 2)  # fewer than queue a's letters
    bury(url, ("a", b"a1", "r"), ("a", b"a2", "r"), ("a", b"a3", "r"), ("b", b"b1", "r"))
    with dashboard(url, []) as client:
        page = page_showing(client, "/dead?queue=b", "1 shown: all of queue b")
        assert "1 shown: all of queue b" in page  # not hidden behind a's older letters
        everything = page_showing(client, "/dead", "2 shown: the oldest 2")
        assert "2 shown: the oldest 2" in everything and "No dead letters." not in everything
        fields = dict(re.findall(r'name="(all|queue)" value="([^"]*)"', page))
        assert fields == {"all": "1", "queue": "b"}  # what the page's "delete all" posts
        assert post(client, "/dead/delete", **fields) == "deleted 1 dead letter(s)"
        assert broker_letters(url) == [("a", b"a1"), ("a", b"a2"), ("a", b"a3")]
