"""Running the app under uvicorn: graceful shutdown, guards on request heads, interim responses.

uvicorn with httptools puts no limit on how large a request head may grow, nor
on how long a client may take to send it, so a slow or hostile client could hold
a connection and memory forever. `GuardedHttpToolsProtocol` adds both limits.

ASGI has no message for a general 1xx interim response (its early-hints extension
carries only `Link` fields, and uvicorn sends it over HTTP/2 only), and uvicorn's
HTTP/1.1 protocols send no 1xx but `100 Continue`. The IETF resumable-upload draft
announces an upload with `104 Upload Resumption Supported` carrying `Location`, so
the protocol also accepts `{"type": "http.response.informational", "status": 1xx,
"headers": [...]}` before the response starts, and says so in the scope's
`extensions`, as ASGI extensions do. It writes the interim response to the
transport like uvicorn writes its own `100 Continue`.
"""

from __future__ import annotations

import asyncio
import http
from types import FrameType
from typing import Any, Callable

import uvicorn
from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE, HttpToolsProtocol, RequestResponseCycle

INFORMATIONAL = "http.response.informational"  # the ASGI extension (our own name; ASGI defines none)
_REASONS = {104: "Upload Resumption Supported"}


def interim_response(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    """An HTTP/1.1 1xx interim response head; never 101, which switches protocols."""
    if not 100 <= status <= 199 or status == 101:
        raise RuntimeError(f"not an interim status: {status}")
    try:
        reason = _REASONS.get(status) or http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Informational"
    lines = [f"HTTP/1.1 {status} {reason}\r\n".encode("ascii")]
    for name, value in headers:
        if HEADER_RE.search(name) or HEADER_VALUE_RE.search(value):
            raise RuntimeError("Invalid HTTP header in an interim response.")
        lines.append(name.lower() + b": " + value + b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


def _send_with_interim(cycle: RequestResponseCycle) -> Callable[[Any], Any]:
    send = cycle.send

    async def send_with_interim(message: Any) -> None:
        if message["type"] != INFORMATIONAL:
            await send(message)
            return
        head = interim_response(int(message["status"]), list(message.get("headers", [])))
        # Interim responses are optional: none once the final one started, and none
        # to a client that does not read its responses (rather than waiting on it).
        if cycle.response_started or cycle.disconnected or cycle.transport.is_closing() or cycle.flow.write_paused:
            return
        cycle.transport.write(head)

    return send_with_interim


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """httptools protocol that answers 431 past `max_head_bytes`, and closes a
    connection whose request head is not complete within `head_timeout` seconds."""

    max_head_bytes = 64 * 1024
    head_timeout = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._awaiting_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_too_large = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _expect_head(self) -> None:
        self._awaiting_head = True
        self._head_bytes = 0
        self._cancel_head_timer()
        if self.head_timeout > 0:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._awaiting_head and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # One read can hold a whole head and the start of a body (reads are at most a few
        # hundred KiB), so the count only matters while the head is still incomplete.
        if self._awaiting_head and self._head_bytes > self.max_head_bytes and not self.transport.is_closing():
            self._head_too_large = True
            self.send_400_response("request head too large")

    def send_400_response(self, msg: str) -> None:
        if not self._head_too_large:
            super().send_400_response(msg)
            return
        body = b"ERR_HEADERS_TOO_LARGE: request head too large\n"
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"tus-resumable: 1.0.0\r\nconnection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        self.transport.close()

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._cancel_head_timer()
        super().on_headers_complete()
        cycle = self.cycle
        # A 1xx must not go to an HTTP/1.0 client (RFC 9110, 15.2). The task that runs the
        # app has not started yet, so it sees the extension and the wrapped send.
        if cycle is not None and cycle.scope is self.scope and self.scope.get("http_version") == "1.1":
            self.scope.setdefault("extensions", {})[INFORMATIONAL] = {}  # type: ignore[typeddict-item]
            cycle.send = _send_with_interim(cycle)  # type: ignore[method-assign]

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._expect_head()


def guarded_protocol(max_head_bytes: int, head_timeout: float) -> type[GuardedHttpToolsProtocol]:
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"max_head_bytes": max_head_bytes, "head_timeout": head_timeout},
    )


class GracefulServer(uvicorn.Server):
    """uvicorn, plus: on SIGINT/SIGTERM, running upload bodies stop and commit what they have.

    uvicorn alone would wait for every in-flight request to end by itself, which a
    PATCH of a large file may not do for a long time.
    """

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_exit)
