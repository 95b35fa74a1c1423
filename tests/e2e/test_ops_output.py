"""What the server writes about requests, to its log and to the world, cannot be forged
by a client nor tell a stranger about its insides (issue 13, items 18 and 20)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import requests

from tests.e2e.test_operations import ready_then_redis_stopped
from tests.support import raw_request

FORGED = "2026-01-01 00:00:00,000 INFO tusd_py.access: DELETE /files/victim 204"


def test_text_access_log_escapes_control_characters(make_server) -> None:
    server = make_server()
    # Percent-decoded, this path holds a newline, ESC, NEL (a line break to str.splitlines) and U+2028.
    status, _, _ = raw_request(server.port, "GET", "/files/x%0a" + FORGED.replace(" ", "%20") + "%1b[2J%c2%85%e2%80%a8end")
    assert status == 404
    status, _, _ = raw_request(server.port, "GET", "/files/a%20status=201%20upload_id=forged")
    assert status == 404
    server.stop()  # flushes the log
    lines = server.log().splitlines()
    access = [line for line in lines if "tusd_py.access" in line]
    assert not any(line.startswith(FORGED) for line in lines), lines
    assert len(access) == 2, access  # one line per request, whatever the path holds
    assert "\\n" + FORGED in access[0] and "\\x1b[2J\\x85\\u2028end" in access[0]
    assert not any(ch in line for line in lines for ch in "\x1b\x85\u2028")
    # A field value with spaces or `=` is quoted: it cannot pass for further fields.
    assert ' path="/files/a status=201 upload_id=forged" status=404 ' in access[1]
    fields = dict(token.split("=", 1) for token in shlex.split(access[1]) if re.match(r"[a-z_]+=", token))
    assert fields["status"] == "404" and fields["upload_id"] == "a status=201 upload_id=forged"


def test_readyz_tells_the_world_no_addresses_or_error_texts(tmp_path: Path) -> None:
    """The state store's failure (the Redis backend: its address is in the error) is logged, not published."""
    with ready_then_redis_stopped(tmp_path) as (server, redis_server):
        response = requests.get(server.base + "/readyz", timeout=15)
        assert response.status_code == 503
        assert response.json() == {"ready": False, "checks": {"state": "unreachable", "data": "ok", "server": "ok"}}
        for secret in (str(redis_server.port), "127.0.0.1", "Error", "onnect"):
            assert secret not in response.text, response.text
    log = server.log()
    details = [line for line in log.splitlines() if "not ready" in line]
    assert details and str(redis_server.port) in details[0]  # the operator still learns why

