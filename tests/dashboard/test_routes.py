"""The dashboard's routes through Starlette's TestClient on a SQLite store: what each page
shows first, and the safety rules (auth everywhere, CSRF on every POST, read-only,
hide-args, escaping, the proxy prefix)."""

from __future__ import annotations

import base64
import html
import re
import time

import pytest

from forkq.app import Forkq
from forkq.dashboard.config import DashboardConfig, parse_credentials
from forkq.events import TaskEventKind
from forkq.exceptions import ConfigurationError
from forkq.result import encode_record, failure_record
from forkq.states import FAILURE
from tests.dashboard.helpers import HOSTILE, dashboard, heartbeat, task_event

TOKEN = "a-token-of-24-characters"


def ids(page: str) -> list[str]:
    """The task ids a task list shows, in order."""
    return re.findall(r'class="id" data-text="task_id">([^<]+)<', page)  # not the template's


def link(page: str, name: str) -> str:
    """The href of the page link with id `name`; "" when it is hidden."""
    found = re.search(rf'<a id="{name}"[^>]*?href="([^"]*)"', page)
    return html.unescape(found.group(1)) if found else ""


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class TestPages:
    def test_every_page_is_painted_from_the_stored_history(self, url: str) -> None:
        bodies = [
            heartbeat("alpha@host"),
            task_event(TaskEventKind.SUCCEEDED, "t-ok", runtime=0.25),
            task_event(TaskEventKind.FAILED, "t-bad", reason="ValueError: no"),
        ]
        with dashboard(url, bodies) as client:
            overview = client.get("/").text
            assert 'id="workers-online" data-text="workers_online">1<' in overview
            assert 'id="succeeded" data-text="succeeded">1<' in overview
            workers = client.get("/workers").text
            assert "alpha@host" in workers and "fork saved" in workers
            assert 'data-text="saved">' in workers and "MiB" in workers
            tasks = client.get("/tasks?state=failed").text
            assert "t-bad" in tasks and "t-ok" not in tasks
            assert "t-ok" in client.get("/tasks?search=t-o").text
            by_host = client.get("/tasks?worker=alpha@host").text  # its events name w1
            assert "t-ok" in by_host and 'data-text="worker">alpha@host<' in by_host
            assert "t-ok" not in client.get("/tasks?worker=beta@host").text
            page = client.get("/tasks/t-bad").text
            assert "ValueError: no" in page and 'data-action="revoke"' in page

    def test_a_restarted_dashboard_shows_what_it_showed(self, url: str) -> None:
        bodies = [heartbeat("alpha@host"), task_event(TaskEventKind.SUCCEEDED, "t-1")]
        with dashboard(url, bodies) as client:
            first = client.get("/tasks").text
            assert "t-1" in first
        with dashboard(url, []) as client:  # a new process: nothing but the store
            assert client.get("/tasks").text.count("t-1") == first.count("t-1")
            assert "alpha@host" in client.get("/workers").text

    def test_a_busy_childs_runtime_against_the_pages_now_and_its_restarts(self, url: str) -> None:
        beat = heartbeat("alpha@host", busy="t-long", started_at=time.time() - 42, restarts=3)
        with dashboard(url, [beat]) as client:
            page = client.get("/workers").text
            assert re.search(r'data-text="running">running for 4[23]\.\ds<', page), page
            assert 'data-text="restarts">3<' in page
            time.sleep(1.1)  # the page's now moves on; the heartbeat's start does not
            later = re.search(r"running for (\d+\.\d)s", client.get("/workers").text)
            assert later is not None and float(later.group(1)) >= 43.0
        with dashboard(url, [heartbeat("idle@host")]) as client:
            page = client.get("/workers").text
            assert 'data-text="running"></span>' in page and 'data-text="restarts">0<' in page

    def test_the_task_pages_go_back_and_forth_keeping_the_filter(self, url: str) -> None:
        start = time.time() - 1000
        bodies = [
            task_event(kind, f"t-{n:03d}", at=start + n)
            for n in range(260)
            for kind in [TaskEventKind.FAILED if n % 2 else TaskEventKind.SUCCEEDED]
        ]
        with dashboard(url, bodies) as client:
            first = client.get("/tasks?state=failed").text
            assert ids(first)[:2] == ["t-259", "t-257"] and len(ids(first)) == 100
            assert not link(first, "newer") and not link(first, "newest")
            second = client.get(link(first, "older")).text
            assert ids(second)[0] == "t-059" and len(ids(second)) == 30
            assert not link(second, "older") and "state=failed" in link(second, "newest")
            assert ids(client.get(link(second, "newer")).text) == ids(first)
            assert "t-058" not in second  # the filter held

    def test_a_cursor_that_is_not_a_number_is_said_and_the_newest_shown(self, url: str) -> None:
        with dashboard(url, [task_event(TaskEventKind.SUCCEEDED, "t-1")]) as client:
            page = client.get("/tasks", params={"before": "<b>x"}).text
            assert "not a page: before=&#39;&lt;b&gt;x&#39;" in page and "t-1" in page

    def test_a_task_page_shows_the_stored_traceback(self, url: str) -> None:
        with dashboard(url, [task_event(TaskEventKind.FAILED, "t1")]) as client:
            record = failure_record("ValueError", "boom", "Traceback: line 1")
            writer = Forkq("w", broker=url)
            writer.backend.store("t1", FAILURE, encode_record(record), 60)
            writer.close()
            page = client.get("/tasks/t1").text
            assert "ValueError: boom" in page and "Traceback: line 1" in page

    def test_hostile_names_are_text(self, url: str) -> None:
        bodies = [heartbeat(HOSTILE), task_event(TaskEventKind.RECEIVED, HOSTILE, name=HOSTILE)]
        with dashboard(url, bodies) as client:
            for path in ("/", "/workers", "/tasks", "/tasks/x"):
                assert "<script>alert" not in client.get(path).text
            assert "&lt;script&gt;" in client.get("/tasks").text

    def test_bodies_that_are_not_events_are_skipped_and_counted(self, url: str) -> None:
        bodies = [b"\xff\x00 not msgpack", b"{}", task_event(TaskEventKind.SUCCEEDED, "t-1")]
        with dashboard(url, bodies) as client:
            page = client.get("/").text
            assert "2 stored bodies were not events of this version" in page
            assert "t-1" in client.get("/tasks").text

    def test_hide_args_shows_neither_arguments_nor_results(self, url: str) -> None:
        bodies = [task_event(TaskEventKind.RECEIVED, "t1", args="('secret@example.com',)")]
        with dashboard(url, bodies) as client:
            assert "secret@example.com" in client.get("/tasks/t1").text
        with dashboard(url, [], hide_args=True) as client:
            page = client.get("/tasks/t1").text
            assert "secret@example.com" not in page and "(hidden)" in page

    def test_without_auth_the_page_says_it_is_open_to_this_host(self, url: str) -> None:
        with dashboard(url, []) as client:
            assert 'id="open-banner"' in client.get("/").text
        with dashboard(url, [], token=TOKEN) as client:
            assert 'id="open-banner"' not in client.get(f"/?token={TOKEN}").text

    def test_security_headers(self, url: str) -> None:
        with dashboard(url, []) as client:
            headers = client.get("/").headers
            assert "script-src 'self'" in headers["content-security-policy"]
            assert headers["x-frame-options"] == "DENY"


class TestAuth:
    @pytest.mark.parametrize("path", ["/", "/workers", "/tasks/x", "/stream/overview",
                                      "/static/dashboard.js"])  # fmt: skip
    def test_every_route_needs_the_password(self, url: str, path: str) -> None:
        with dashboard(url, [], auth=parse_credentials("ann:s3cret")) as client:
            refused = client.get(path)
            assert refused.status_code == 401 and "Basic" in refused.headers["www-authenticate"]
            assert client.get(path, headers=basic("ann", "wrong")).status_code == 401
            if not path.startswith("/stream"):
                assert client.get(path, headers=basic("ann", "s3cret")).status_code == 200

    def test_a_token_once_in_the_url_becomes_a_cookie(self, url: str) -> None:
        with dashboard(url, [], token=TOKEN) as client:
            assert client.get("/tasks").status_code == 401
            login = client.get(f"/tasks?token={TOKEN}&state=failed", follow_redirects=False)
            assert login.status_code == 303 and login.headers["location"] == "/tasks?state=failed"
            assert TOKEN not in login.headers["set-cookie"]  # a digest, not the token
            assert client.get("/tasks").status_code == 200

    def test_a_bearer_token(self, url: str) -> None:
        with dashboard(url, [], token=TOKEN) as client:
            assert client.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
            assert client.get("/", headers={"Authorization": "Bearer nope"}).status_code == 401


class TestCsrf:
    def test_a_post_without_the_token_is_refused(self, url: str) -> None:
        with dashboard(url, []) as client:
            client.get("/")  # the CSRF cookie
            assert client.post("/tasks/t1/revoke", data={}).status_code == 403
            assert client.post("/tasks/t1/revoke", data={"csrf": "x" * 40}).status_code == 403
            assert client.post("/workers/h/grow", data={}).status_code == 403

    def test_a_post_without_the_cookie_is_refused(self, url: str) -> None:
        with dashboard(url, []) as client:
            assert client.post("/tasks/t1/revoke", data={"csrf": "x" * 43}).status_code == 403

    def test_a_post_from_another_origin_is_refused(self, url: str) -> None:
        with dashboard(url, []) as client:
            client.get("/")
            token = client.cookies["forkq_csrf"]
            other = {"Origin": "http://evil.example"}
            refused = client.post("/tasks/t1/revoke", data={"csrf": token}, headers=other)
            assert refused.status_code == 403

    def test_read_only_hides_actions_and_refuses_them(self, url: str) -> None:
        with dashboard(url, [heartbeat("alpha@host")], read_only=True) as client:
            for path in ("/workers", "/tasks/t1"):
                assert "data-action=" not in client.get(path).text
            token = client.cookies["forkq_csrf"]
            for path in ("/tasks/t1/revoke", "/workers/alpha@host/grow"):
                assert client.post(path, data={"csrf": token}).status_code == 403


class TestPrefix:
    @pytest.mark.parametrize("path", ["/forkq/tasks", "/tasks"])
    def test_served_whether_the_proxy_strips_the_prefix_or_not(self, url: str, path: str) -> None:
        with dashboard(url, [], url_prefix="/forkq") as client:
            page = client.get(path)
            assert page.status_code == 200
            assert 'href="/forkq/static/dashboard.css"' in page.text
            assert 'data-stream="/forkq/stream/tasks"' in page.text

    def test_x_forwarded_prefix_is_honoured_when_it_is_a_plain_path(self, url: str) -> None:
        with dashboard(url, []) as client:
            page = client.get("/", headers={"X-Forwarded-Prefix": "/ops/forkq"}).text
            assert 'href="/ops/forkq/workers"' in page
            page = client.get("/", headers={"X-Forwarded-Prefix": '/x"><script>'}).text
            assert 'href="/workers"' in page


class TestConfig:
    def test_a_non_loopback_host_needs_auth(self) -> None:
        with pytest.raises(ConfigurationError, match="--auth"):
            DashboardConfig(host="0.0.0.0")
        DashboardConfig(host="0.0.0.0", token=TOKEN)
        DashboardConfig(host="::1")

    @pytest.mark.parametrize("raw", ["nopassword", ":x", "user:"])
    def test_auth_is_user_colon_password(self, raw: str) -> None:
        with pytest.raises(ConfigurationError):
            parse_credentials(raw)


class TestTrouble:
    def test_an_unreachable_event_store_is_said_on_the_page(self, url: str) -> None:
        from starlette.testclient import TestClient

        from forkq.dashboard.app import build
        from forkq.dashboard.feed import Feed

        nowhere = "redis://127.0.0.1:1/0"  # nothing listens on port 1
        app = Forkq("dash", broker=url, backend=nowhere)
        with TestClient(build(DashboardConfig(), Feed(app, nowhere))) as client:
            page = client.get("/").text
            assert "the event store cannot be read" in page
            assert client.get("/workers").status_code == 200
            assert "the result backend cannot be read" in client.get("/tasks/t1").text


def test_a_token_link_under_a_prefix_redirects_under_it(url: str) -> None:
    with dashboard(url, [], token=TOKEN, url_prefix="/forkq") as client:
        login = client.get(f"/forkq/workers?token={TOKEN}", follow_redirects=False)
        assert login.headers["location"] == "/forkq/workers"
        assert "Path=/forkq" in login.headers["set-cookie"]
