"""Helpers for the hook tests: reading what tests/hooks_recorder.py wrote, and a webhook receiver."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Callable

from tests.support import LocalHttpServer
from tusd_py.protocol import encode_metadata


def metadata(**values: str) -> str:
    return encode_metadata({key.replace("_", "-"): value.encode() for key, value in values.items()})


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_until(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy; bounded."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def of_type(events: list[dict[str, Any]], event_type: str, upload_id: str | None = None) -> list[dict[str, Any]]:
    return [
        e for e in events if e["type"] == event_type and (upload_id is None or (e["upload"] or {}).get("id") == upload_id)
    ]


class WebhookReceiver(LocalHttpServer):
    """An HTTP server on 127.0.0.1 that records hook requests and answers with `respond(event)`.

    `respond` returns (status, body) ; it may block (a hanging receiver) until `release` is set.
    """

    path = "/hooks"

    def __init__(self, respond: Callable[[dict[str, Any]], tuple[int, bytes]] | None = None) -> None:
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.respond = respond or (lambda event: (200, b""))
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                event = json.loads(body)
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, event))
                status, answer = receiver.respond(event)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(answer)))
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the server gave up waiting

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(Handler)

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        super().__exit__(*exc)

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        return [event for _, event in self.requests if event_type is None or event["type"] == event_type]
