"""`forkq control revoke` closes the app it opened (its broker and backend connections), when
the revocation is stored and when it fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from forkq import Forkq
from forkq.cli.main import cli


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The app's revoke and close calls, in order (the real methods run)."""
    seen: list[str] = []
    real_close, real_revoke = Forkq.close, Forkq.revoke

    def close(self: Forkq) -> None:
        seen.append("close")
        real_close(self)

    def revoke(self: Forkq, *args: Any, **kwargs: Any) -> Any:
        seen.append("revoke")
        return real_revoke(self, *args, **kwargs)

    monkeypatch.setattr(Forkq, "close", close)
    monkeypatch.setattr(Forkq, "revoke", revoke)
    return seen


def test_revoke_closes_the_app(tmp_path: Path, calls: list[str]) -> None:
    url = f"sqlite:///{tmp_path}/forkq.sqlite3"
    result = CliRunner().invoke(cli, ["--broker", url, "control", "revoke", "a-task-id"])
    assert result.exit_code == 0, result.output
    assert "revoked 1 task(s)" in result.output
    assert calls[calls.index("revoke") :] == ["revoke", "close"]


def test_a_failed_revoke_closes_the_app_too(tmp_path: Path, calls: list[str]) -> None:
    url = f"sqlite:///{tmp_path}/forkq.sqlite3"
    result = CliRunner().invoke(
        cli, ["--broker", url, "control", "revoke", "a-task-id", "--terminate", "--signal", "NOPE"]
    )
    assert result.exit_code != 0
    assert calls[calls.index("revoke") :] == ["revoke", "close"]
