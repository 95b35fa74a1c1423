"""Notifications of outcomes (post-finish, post-terminate) never wait behind progress
events (post-create, post-receive) nor get dropped; progress past the queue's size is
dropped and counted in /metrics (issue 13, item 10)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.hookutil import wait_until
from tests.e2e.test_operations import scrape, value
from tests.support import TUS, create

MODULE = "tests.hooks_queues"


@pytest.fixture
def delivered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    path = tmp_path / "delivered.txt"
    monkeypatch.setenv("HOOKS_TEST_LOG", str(path))  # the server processes inherit these

    def lines(event_type: str) -> list[str]:
        if not path.exists():
            return []
        return [line.split(" ", 1)[1] for line in path.read_text().splitlines() if line.startswith(event_type + " ")]

    return lines


def test_post_finish_and_post_terminate_overtake_a_backlog_of_progress(make_server, delivered, monkeypatch) -> None:
    monkeypatch.setenv("HOOKS_PROGRESS_DELAY", "0.5")
    server = make_server(hooks_module=MODULE)
    for _ in range(40):  # 40 post-create events: 20 s of work for the progress receiver
        create(server.url, 1)
    finished = create(server.url, 0).rsplit("/", 1)[-1]  # complete at creation: post-finish
    terminated = create(server.url, 5)
    assert requests.delete(terminated, headers=TUS, timeout=10).status_code == 204
    started = time.monotonic()
    assert wait_until(lambda: delivered("post-finish") == [finished], timeout=5)
    assert wait_until(lambda: delivered("post-terminate") == [terminated.rsplit("/", 1)[-1]], timeout=5)
    assert time.monotonic() - started < 5
    assert len(delivered("post-create")) < 20  # the progress backlog is still being worked through


def test_full_queues_drop_progress_counted_and_never_an_outcome(make_server, delivered, monkeypatch) -> None:
    monkeypatch.setenv("HOOKS_PROGRESS_DELAY", "0.3")
    monkeypatch.setenv("HOOKS_OUTCOME_DELAY", "0.05")
    server = make_server(hooks_module=MODULE, hooks_queue_size=3)
    ids: list[str] = []
    lock = threading.Lock()

    def burst() -> None:
        for _ in range(8):  # zero-length uploads: one post-create and one post-finish each
            upload_id = create(server.url, 0).rsplit("/", 1)[-1]
            with lock:
                ids.append(upload_id)

    threads = [threading.Thread(target=burst) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(ids) == 40
    assert wait_until(lambda: sorted(delivered("post-finish")) == sorted(ids), timeout=20), len(delivered("post-finish"))
    samples = scrape(server)
    dropped = value(samples, "tusd_py_hook_events_dropped_total", event="post-create", transport="module")
    assert dropped >= 20, dropped
    assert value(samples, "tusd_py_hook_events_dropped_total", event="post-finish", transport="module") == 0
    assert wait_until(lambda: len(delivered("post-create")) + dropped == 40, timeout=10)
    server.stop()
    assert "hook queues full (3 events each): dropped" in server.log()
