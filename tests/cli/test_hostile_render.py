"""Strings any writer of the broker chooses (worker names, task names, ids, queues, settings,
errors) are shown by `forkq inspect` and `forkq control` as themselves: Rich markup in them is
neither obeyed nor a crash."""

from __future__ import annotations

from typing import Any

import pytest

from forkq.cli.control import _queues, raw_reply
from forkq.cli.inspect_render import RENDER
from forkq.cli.reach import report
from forkq.control_replies import Replies

HOSTILE = ("[bold", "[/]", "[link=x]y", "[red]z[/red]")


def _child(text: str) -> dict[str, Any]:
    return {
        "index": 0, "pid": 7, "state": text, "task": text, "task_id": text, "runtime": 1.0,
        "done": 1, "failed": 0, "restarts": 0, "reserved": 0,
    }  # fmt: skip


def _replies(text: str) -> dict[str, dict[str, Any]]:
    who = {"title": text, "pid": 1, "hostname": text}
    return {
        "ping": {**who, "pong": True},
        "stats": {
            **who, "uptime": 1.0, "concurrency": 1, "queues": [text], "done": 1, "failed": 0,
            "restarts": 0, "children": [_child(text)],
        },
        "active": {**who, "active": [_child(text)]},
        "memory": {**who, "processes": [
            {"role": text, "pid": 1, "rss": 1, "pss": 1, "uss": 1, "shared": 0}
        ]},
        "reserved": {**who, "reserved": 1, "children": [_child(text)]},
        "registered": {**who, "tasks": {text: {text: text}}},
        "conf": {**who, "settings": {text: text}},
        "scheduled": {**who, "scheduled": [
            {"due_at": 0.0, "queue": text, "task": text, "id": text, "priority": 0}
        ]},
        "revoked": {**who, "revoked": [{"id": text}]},
    }  # fmt: skip


@pytest.mark.parametrize("text", HOSTILE)
def test_every_inspect_rendering_shows_markup_as_text(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for command, body in _replies(text).items():
        report(Replies(command, {text: body}), False, RENDER[command], 1.0)
        shown = capsys.readouterr().out
        assert "unexpected reply" not in shown, command
        assert text in shown, command


@pytest.mark.parametrize("text", HOSTILE)
def test_errors_missing_and_control_replies_show_markup_as_text(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        report(Replies("ping", {text: {"error": text}}, missing=(text,)), False, raw_reply, 1.0)
    shown = capsys.readouterr().out
    assert f"{text}: error: {text}" in shown
    assert f"{text}: missing: no reply" in shown
    report(Replies("add-queue", {text: {"changed": True, "queues": [text]}}), False, _queues, 1)
    assert capsys.readouterr().out == f"{text}: queues now: {text}\n"


def test_control_characters_reach_no_terminal_from_any_rendering(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = "app\x1b[2J\x1b]0;owned\x07"
    for command, body in _replies(text).items():
        report(Replies(command, {text: body}), False, RENDER[command], 1.0)
        shown = capsys.readouterr().out
        assert "\x1b" not in shown and "\x07" not in shown, command
        assert "unexpected reply" not in shown, command
    with pytest.raises(SystemExit):
        report(Replies("ping", {text: {"error": text}}, missing=(text,)), False, raw_reply, 1.0)
    shown = capsys.readouterr().out
    assert "\x1b" not in shown
    assert "app\\x1b[2J" in shown
