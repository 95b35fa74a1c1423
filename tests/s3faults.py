"""An HTTP proxy on 127.0.0.1 in front of an S3 server, for fault injection.

`fail(n, match)` answers the next n requests whose "METHOD path?query" contains
`match` with a 503 SlowDown error (after reading their body, as S3 does);
`delay` holds every answer back that many seconds. Everything else is relayed
to the upstream unchanged. `stop()` ends the server thread.
"""

from __future__ import annotations

import http.client
import http.server
import threading
import time

from tests.support import free_port

SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.delay = 0.0
        self.failed = 0  # requests answered with an injected error
        self._failures: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, count: int, match: str = "") -> None:
        with self._lock:
            self._failures.append((match, count))

    def _should_fail(self, line: str) -> bool:
        with self._lock:
            for index, (match, count) in enumerate(self._failures):
                if match in line and count > 0:
                    self._failures[index] = (match, count - 1)
                    self.failed += 1
                    return True
        return False

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy._should_fail(f"{self.command} {self.path}"):
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOW_DOWN)))
                    self.end_headers()
                    self.wfile.write(SLOW_DOWN)
                    return
                if proxy.delay:
                    time.sleep(proxy.delay)
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=30)
                try:
                    upstream.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
                    response = upstream.getresponse()
                    payload = response.read()
                except OSError:  # the upstream is gone (stopped after a test gave up waiting): hang up
                    self.close_connection = True
                    return
                finally:
                    upstream.close()
                try:
                    self.send_response(response.status)
                    for name, value in response.getheaders():
                        if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                            self.send_header(name, value)
                    # a HEAD's is the object's size, not the (empty) payload's
                    length = response.getheader("Content-Length") if self.command == "HEAD" else None
                    self.send_header("Content-Length", length or str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                except OSError:  # the client gave up waiting (a test of slow answers)
                    self.close_connection = True

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
