"""Hooks have capacity of their own (issue 13, item 8): hung `authorize` calls cannot
starve other requests, `/readyz` or anything else that needs a thread; a timed-out
call frees its slot; with every slot busy a request is answered 503 at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.e2e.hookutil import wait_until
from tests.support import TUS, TusServer

MODULE = "tests.hooks_hang"


@pytest.fixture
def hang_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "hang"
    folder.mkdir()
    monkeypatch.setenv("HOOKS_HANG_DIR", str(folder))  # the server processes inherit it
    yield folder
    (folder / "release").touch()  # no hook thread outlives the test by more than a moment


def entered(folder: Path) -> int:
    path = folder / "entered"
    return len(path.read_text().splitlines()) if path.exists() else 0


def create(server: TusServer, hang: bool = False, timeout: float = 40) -> requests.Response:
    headers = {**TUS, "Upload-Length": "1", **({"X-Hang": "1"} if hang else {})}
    return requests.post(server.url, headers=headers, timeout=timeout)


def hang_in_background(server: TusServer, count: int) -> tuple[list[threading.Thread], list[requests.Response]]:
    answers: list[requests.Response] = []
    threads = [threading.Thread(target=lambda: answers.append(create(server, hang=True))) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads, answers


def timed(call):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_six_hung_authorize_calls_starve_nothing(make_server, hang_dir: Path) -> None:
    """The issue's case, with the default settings: 6 threads were the whole default pool on 2 cores."""
    server = make_server(hooks_module=MODULE, hooks_timeout=20)
    threads, answers = hang_in_background(server, 6)
    assert wait_until(lambda: entered(hang_dir) == 6, timeout=10)
    ready, took = timed(lambda: requests.get(server.base + "/readyz", timeout=10))
    assert ready.status_code == 200 and took < 2.5, took
    created, took = timed(lambda: create(server, timeout=10))
    assert created.status_code == 201 and took < 2.5, (created.status_code, took)
    (hang_dir / "release").touch()
    for thread in threads:
        thread.join(timeout=30)
    assert [a.status_code for a in answers] == [201] * 6


def test_full_slots_answer_503_at_once_and_a_timeout_frees_its_slot(make_server, hang_dir: Path) -> None:
    server = make_server(hooks_module=MODULE, hooks_concurrency=2, hooks_timeout=2)
    threads, answers = hang_in_background(server, 2)
    assert wait_until(lambda: entered(hang_dir) == 2, timeout=10)
    busy, took = timed(lambda: create(server, timeout=10))
    assert busy.status_code == 503 and busy.text.startswith("ERR_HOOKS_BUSY") and took < 1.0, (busy.status_code, busy.text, took)
    assert busy.headers["Retry-After"] == "1"
    assert requests.get(server.base + "/readyz", timeout=3).status_code == 200
    for thread in threads:
        thread.join(timeout=20)
    assert sorted(a.status_code for a in answers) == [504, 504]
    # Their functions still hang, on their threads, but their slots are free again.
    assert create(server, timeout=10).status_code == 201
    # Two more hung calls: now the 4 hook threads (2 x 2 slots) are all held by hung functions.
    threads, answers = hang_in_background(server, 2)
    for thread in threads:
        thread.join(timeout=20)
    assert sorted(a.status_code for a in answers) == [504, 504] and entered(hang_dir) == 4
    held = create(server, timeout=10)
    assert held.status_code == 503 and held.text.startswith("ERR_HOOKS_BUSY")
    (hang_dir / "release").touch()  # the functions return, their threads are free
    assert wait_until(lambda: create(server, timeout=10).status_code == 201, timeout=10)
    server.stop()
    assert "hook threads are held" in server.log() and "hook slots are busy" in server.log()
