"""The Queues page on a SQLite store: what the broker holds (due, delayed, by priority band),
the rates from the events, and the queue a link from the overview chooses."""

from __future__ import annotations

from forkq.app import Forkq
from forkq.engines.contract import outgoing
from forkq.events import TaskEventKind
from tests.dashboard.helpers import HOSTILE, dashboard, heartbeat, page_showing, task_event


def test_depth_delayed_bands_and_rates_of_each_queue(url: str) -> None:
    publisher = Forkq("p", broker=url)
    publisher.broker.publish(
        [outgoing("default", b"m", priority) for priority in (0, 1, 5, 9, 9, 9)]
        + [outgoing("default", b"later", 0, 600)]
    )
    publisher.close()
    bodies = [heartbeat("alpha@host")]
    bodies += [task_event(TaskEventKind.RECEIVED, f"t{n}") for n in range(6)]
    bodies += [task_event(TaskEventKind.SUCCEEDED, f"t{n}") for n in range(3)]
    with dashboard(url, bodies) as client:
        page = page_showing(client, "/queues", 'data-text="messages">7<')
        assert 'data-text="messages">7<' in page and 'data-text="delayed">1<' in page
        assert 'data-band="9"' in page
        bands = {
            label: page.split(f'data-band="{label}">', 1)[1].split('data-text="count">')[1]
            .split("<")[0]
            for label in ("0-2", "3-5", "6-8", "9")
        }  # fmt: skip
        assert bands == {"0-2": "2", "3-5": "1", "6-8": "0", "9": "3"}
        rate = {k: float(page.split(f'data-text="{k}">', 2)[2].split("/s<")[0])
                for k in ("in_rate", "out_rate")}  # fmt: skip  # [1]: the template's row
        assert 6 / 60 <= rate["in_rate"] <= 6 / 50 + 0.005  # six received, the newest 10 s filling
        assert 3 / 60 - 0.005 <= rate["out_rate"] <= 3 / 50 + 0.005
        assert "received by workers" in page and "alpha@host" in page


def test_a_queue_named_only_by_events_is_shown_as_text_and_chosen_by_its_link(
    url: str,
) -> None:
    bodies = [task_event(TaskEventKind.SENT, "t1", queue=HOSTILE)]
    with dashboard(url, bodies) as client:
        overview = page_showing(client, "/", "%3Cscript%3E")
        assert "<script>alert" not in overview and "%3Cscript%3E" in overview  # its link
        page = client.get("/queues", params={"queue": HOSTILE}).text
        assert "&lt;script&gt;" in page and "<script>alert" not in page
        assert 'id="queue-count" data-text="count">1<' in page
        assert "sent by clients" in page
