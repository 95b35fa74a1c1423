"""Whatever a hook answers, the client gets a response the server can send (issue 13,
item 16): a malformed answer (status outside 400..599, a header name that is no token,
a value that is not latin-1 or holds control characters, a header that frames the
response), raised, returned or sent by a webhook, is a 502 with the hook's error in
the log; never a 500, a 3xx, a 2xx or a dropped connection."""

from __future__ import annotations

import json

import pytest
import requests

from tests.e2e.hookutil import WebhookReceiver
from tests.hooks_answers import CASES
from tests.support import TUS, upload_files


def post(server, answer: str, where: str = "authorize") -> requests.Response:  # type: ignore[no-untyped-def]
    headers = {**TUS, "Upload-Length": "1", "X-Answer": answer, "X-Answer-In": where}
    return requests.post(server.url, headers=headers, timeout=10, allow_redirects=False)


def test_malformed_module_answers_are_502_and_logged(make_server) -> None:
    server = make_server(hooks_module="tests.hooks_answers")
    got = {case: post(server, case) for case in CASES}
    got["pre-create: reject-302"] = post(server, "reject-302", "pre-create")
    got["pre-create: dict-bad-name"] = post(server, "dict-bad-name", "pre-create")
    wrong = {case: (r.status_code, r.text) for case, r in got.items() if r.status_code != 502 or not r.text.startswith("ERR_HOOK_FAILED")}
    assert not wrong, wrong
    assert not any(path.name.isalnum() for path in upload_files(server.data_dir))

    good = post(server, "good-reject")
    assert good.status_code == 429 and good.headers["Retry-After"] == "7" and good.headers["X-Reason"] == "caf\u00e9 quota"  # latin-1
    assert good.text == "ERR_FORBIDDEN: slow down\n"
    good = post(server, "good-response")
    assert good.status_code == 451 and good.headers["Link"] == "<https://example.com/why>; rel=blocked-by"
    assert post(server, "none").status_code == 201  # still serving

    server.stop()
    log = server.log()
    assert "Traceback" not in log
    assert log.count("authorize hook (module) failed") == len(CASES)
    assert "is not a token" in log and "from 400 to 599" in log and "not latin-1" in log and "control characters" in log
    assert log.count("pre-create hook (module) failed") == 2


@pytest.mark.parametrize(
    "answer",
    [
        {"reject": True, "status": 403, "headers": {"Bad Name": "x"}},
        {"reject": True, "status": 403, "headers": {"X-Why": "\u20ac"}},
        {"reject": True, "status": 403, "headers": {"X-Why": "a\u0007b"}},
        {"reject": True, "status": 303, "headers": {"Location": "https://elsewhere.example/"}},
        {"reject": True, "status": 403, "headers": {"Content-Length": "5"}},
    ],
    ids=["name", "not-latin1", "control", "303", "content-length"],
)
def test_malformed_webhook_answers_are_502(make_server, answer: dict) -> None:
    with WebhookReceiver(lambda event: (200, json.dumps(answer).encode())) as receiver:
        server = make_server(hooks_http=receiver.url, hooks_enabled_events="authorize")
        response = requests.post(server.url, headers={**TUS, "Upload-Length": "1"}, timeout=10, allow_redirects=False)
        assert response.status_code == 502 and response.text.startswith("ERR_HOOK_FAILED"), (response.status_code, response.text)
        server.stop()
        assert "authorize hook (http) failed" in server.log() and "Traceback" not in server.log()
