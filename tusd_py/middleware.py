"""The one layer around every request: tus headers on every response, metrics, access
log, and CORS for the requests that need it.

A single pure-ASGI layer instead of one per concern: each layer wraps `send` (and
the access log `receive`) in another coroutine, which small uploads paid for on
every message. The work itself lives with its concern: `Metrics.count`,
`logs.log_request`, and Starlette's `CORSMiddleware`, which only requests from
browsers (with an `Origin` header) pass through: for any other request it would
only add `Vary: Origin`, and that is added here without another wrapper.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tusd_py.logs import access_logger, log_request
from tusd_py.metrics import Metrics
from tusd_py.protocol import TUS_VERSION

_HEADERS = [(b"tus-resumable", TUS_VERSION.encode()), (b"x-content-type-options", b"nosniff")]
_HEADERS_NO_ORIGIN = [*_HEADERS, (b"vary", b"Origin")]  # what CORSMiddleware adds to requests without Origin


class TusMiddleware:
    """Adds the headers every response carries, whatever produced it (routes, CORS
    preflights, errors); counts and logs every request except those for `skip` paths.

    The error code is what the handler left in `request.state.tus_error`. The
    request's body bytes are only counted while the access log is on.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, skip: frozenset[str] = frozenset(), cors: dict[str, Any] | None = None) -> None:
        self.app = app
        self.browser_app = CORSMiddleware(app, **(cors or {}))  # for requests with Origin
        self.metrics = metrics
        self.skip = skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        app, extra_headers = self.app, _HEADERS_NO_ORIGIN
        for name, _ in scope["headers"]:
            if name == b"origin":
                app, extra_headers = self.browser_app, _HEADERS
                break
        if scope["path"] in self.skip:

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", ()), *extra_headers]
                await send(message)

            await app(scope, receive, send_with_headers)
            return

        started = time.monotonic()
        status = 500
        logging_on = access_logger.isEnabledFor(logging.INFO)
        bytes_in = bytes_out = 0
        location = b""

        async def counting_receive() -> Message:
            nonlocal bytes_in
            message = await receive()
            if message["type"] == "http.request":
                bytes_in += len(message.get("body", b""))
            return message

        async def tus_send(message: Message) -> None:
            nonlocal status, bytes_out, location
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message["headers"] = [*message.get("headers", ()), *extra_headers]
                if logging_on:
                    for name, value in headers:
                        if name == b"location":
                            location = value
            elif logging_on and message["type"] == "http.response.body":
                bytes_out += len(message.get("body", b""))
            await send(message)

        try:
            await app(scope, counting_receive if logging_on else receive, tus_send)
        finally:
            duration = time.monotonic() - started
            self.metrics.count(scope, status, duration)
            if logging_on:
                log_request(scope, status, bytes_in, bytes_out, location.decode("latin-1"), duration)
