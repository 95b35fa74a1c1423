"""Hooks as HTTP webhooks (`--hooks-http`), delivered to a receiver on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from tests.e2e.hookutil import WebhookReceiver, metadata, wait_until
from tests.support import TUS, create, head, patch


def answer(event: dict) -> tuple[int, bytes]:
    upload = event["upload"] or {}
    meta = upload.get("metadata", {})
    if event["type"] == "pre-create" and "reject" in meta:
        return 200, json.dumps({"reject": True, "status": 451, "message": meta["reject"]}).encode()
    if event["type"] == "pre-create" and "tag" in meta:
        return 200, json.dumps({"metadata": dict(meta, tagged=meta["tag"])}).encode()
    if event["type"] == "authorize" and meta.get("owner") and event["request"]["headers"].get("authorization") != f"Bearer {meta['owner']}":
        return 403, b"not yours\n"
    return 200, b""


def test_webhook_gets_each_event_once_with_forwarded_headers(make_server) -> None:
    with WebhookReceiver(answer) as receiver:
        server = make_server(hooks_http=receiver.url, hooks_http_forward_headers="Authorization,X-Request-Id")
        auth = {"Authorization": "Bearer bob", "X-Request-Id": "req-1"}
        url = create(server.url, 4, Upload_Metadata=metadata(filename="a.txt", owner="bob"), **auth)
        assert patch(url, 0, b"data", **auth).status_code == 204
        assert requests.delete(url, headers={**TUS, **auth}, timeout=10).status_code == 204
        wait_until(lambda: receiver.events("post-terminate"))
        for event_type in ("pre-create", "post-create", "post-receive", "pre-finish", "post-finish", "pre-terminate", "post-terminate"):
            assert len(receiver.events(event_type)) == 1, event_type
        assert len(receiver.events("authorize")) == 3  # POST, PATCH, DELETE
        for headers, event in receiver.requests:
            assert headers["hook-name"] == event["type"]
            assert headers["content-type"] == "application/json"
            assert headers["authorization"] == "Bearer bob" and headers["x-request-id"] == "req-1"
        finished = receiver.events("post-finish")[0]
        assert finished["upload"]["id"] == url.rsplit("/", 1)[-1]
        assert finished["upload"]["metadata"] == {"filename": "a.txt", "owner": "bob"}
        assert finished["upload"]["offset"] == 4 and finished["request"]["method"] == "PATCH"


def test_webhook_rejects_changes_and_authorizes(make_server) -> None:
    with WebhookReceiver(answer) as receiver:
        server = make_server(hooks_http=receiver.url)
        rejected = requests.post(server.url, headers={**TUS, "Upload-Length": "1", "Upload-Metadata": metadata(reject="legal says no")}, timeout=10)
        assert rejected.status_code == 451 and rejected.text == "ERR_UPLOAD_REJECTED: legal says no\n"

        url = create(server.url, 2, Upload_Metadata=metadata(tag="red"))
        assert "tagged cmVk" in head(url).headers["Upload-Metadata"]

        owned = create(server.url, 2, Upload_Metadata=metadata(owner="carol"), Authorization="Bearer carol")
        denied = patch(owned, 0, b"xx", Authorization="Bearer dave")
        assert denied.status_code == 403 and denied.text == "ERR_FORBIDDEN: not yours\n"
        assert patch(owned, 0, b"xx", Authorization="Bearer carol").status_code == 204


def test_failing_webhook_is_retried_then_502(make_server) -> None:
    with WebhookReceiver(lambda event: (500, b"boom")) as receiver:
        server = make_server(hooks_http=receiver.url, hooks_http_retries=2, hooks_http_backoff=0.05, hooks_enabled_events="pre-create")
        response = requests.post(server.url, headers={**TUS, "Upload-Length": "1"}, timeout=20)
        assert response.status_code == 502 and response.text.startswith("ERR_HOOK_FAILED")
        assert len(receiver.events("pre-create")) == 3  # one attempt and two retries


def test_hanging_webhook_does_not_wedge_the_server(make_server) -> None:
    hang = threading.Event()
    hang.set()

    def respond(event: dict) -> tuple[int, bytes]:
        if event["type"] == "pre-finish" and "hang" in event["upload"]["metadata"] and hang.is_set():
            receiver.release.wait(timeout=30)  # hangs until the test ends (bounded)
        return 200, b""

    with WebhookReceiver(respond) as receiver:
        server = make_server(
            hooks_http=receiver.url, hooks_http_timeout=0.5, hooks_http_retries=1, hooks_http_backoff=0.1, hooks_timeout=5
        )
        url = create(server.url, 6, Upload_Metadata=metadata(hang="1"))
        assert patch(url, 0, b"abc").status_code == 204
        result: dict[str, requests.Response] = {}
        started = time.monotonic()
        thread = threading.Thread(target=lambda: result.setdefault("r", patch(url, 3, b"def")))
        thread.start()
        # While that PATCH waits for its pre-finish hook, the server goes on serving others.
        other = create(server.url, 2)
        assert patch(other, 0, b"ok").status_code == 204
        thread.join(timeout=30)
        elapsed = time.monotonic() - started
        response = result["r"]
        assert response.status_code == 504 and response.text.startswith("ERR_HOOK_TIMEOUT")
        assert elapsed < 15  # two attempts of 0.5 s and a backoff, with a generous margin
        # Not left locked and not half-written: the last bytes were not committed, and a retry works.
        assert head(url).headers["Upload-Offset"] == "3"
        hang.clear()
        assert patch(url, 3, b"def").status_code == 204
        assert requests.get(url, timeout=10).content == b"abcdef"
        wait_until(lambda: len(receiver.events("post-finish")) == 2)
        assert sorted(e["upload"]["id"] for e in receiver.events("post-finish")) == sorted(u.rsplit("/", 1)[-1] for u in (url, other))


@pytest.mark.parametrize("state_backend", ["embedded"], indirect=False)
def test_unreachable_webhook_only_affects_blocking_events(make_server) -> None:
    # Nothing listens on the URL: post-* deliveries fail quietly, blocking ones answer 502.
    server = make_server(hooks_http="http://127.0.0.1:9/hooks", hooks_http_retries=0, hooks_enabled_events="post-create,post-finish")
    url = create(server.url, 1)
    assert patch(url, 0, b"x").status_code == 204
    blocking = make_server(hooks_http="http://127.0.0.1:9/hooks", hooks_http_retries=0, hooks_enabled_events="pre-create")
    response = requests.post(blocking.url, headers={**TUS, "Upload-Length": "1"}, timeout=10)
    assert response.status_code == 502
