"""Fixtures shared by the e2e hook tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def hook_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file the test hook modules (`tests/hooks_recorder.py`, `tests/hooks_owner.py`) append events to."""
    path = tmp_path / "hooks.jsonl"
    monkeypatch.setenv("HOOKS_TEST_LOG", str(path))  # the server processes inherit it
    return path
