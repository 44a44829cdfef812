"""How `forkq inspect` and `forkq control` show replies: a reply not of its command's form is
shown as it came, never a crash; a missing worker or an error sets exit status 1."""

from __future__ import annotations

import pytest

from forkq.cli.inspect_render import RENDER
from forkq.cli.reach import report
from forkq.control_replies import Replies


def test_a_reply_of_another_form_is_shown_as_it_came(capsys: pytest.CaptureFixture[str]) -> None:
    odd = Replies("stats", {"w1": {"pong": True}, "w2": {"children": "many"}})
    report(odd, False, RENDER["stats"], 1.0)
    shown = capsys.readouterr().out
    assert 'w1: unexpected reply: {"pong": true}' in shown
    assert 'w2: unexpected reply: {"children": "many"}' in shown


def test_missing_or_refusing_workers_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    pong = {"pong": True, "pid": 1, "title": "forkq: p", "hostname": "w1"}
    for replies in (
        Replies("ping", {"w1": pong}, missing=("w2",)),
        Replies("ping", {"w1": {"error": "unknown command 'ping'"}}),
    ):
        with pytest.raises(SystemExit) as exited:
            report(replies, False, RENDER["ping"], 1.0)
        assert exited.value.code == 1
    out = capsys.readouterr().out
    assert "w2: missing: no reply within 1s" in out
    assert "w1: error: unknown command 'ping'" in out
    report(Replies("ping", {"w1": pong}), False, RENDER["ping"], 1.0)  # all well: no exit
    assert capsys.readouterr().out == "pong from w1 (forkq: p, master pid 1)\n"
