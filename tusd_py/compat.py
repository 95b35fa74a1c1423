"""Every use of Starlette's and uvicorn's internals, in one place.

tusd-py reaches past their public APIs where measuring showed a cost or where
they have no API at all (see each function). Each reach is pinned by a test in
tests/unit/test_compat.py, and pyproject.toml bounds both packages to the
versions those tests ran on: an upgrade that moves an internal fails there,
not in production.

uvicorn's side is its httptools protocol: `server.py` subclasses `HttpToolsBase`
and overrides only the parser's callbacks (`on_url`, `on_header`, ...) and
`invalid_request`; what it needs of a request cycle (the body hand-over, the
interim responses) is done here, on uvicorn's `RequestResponseCycle`.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

import httptools
from starlette._utils import get_route_path
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import Message, Scope, Send
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT  # uvicorn's on_body pauses reading past it
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

__all__ = [
    "HEADER_RE",
    "HEADER_VALUE_RE",
    "HIGH_WATER_LIMIT",
    "BodyChunks",
    "HttpToolsBase",
    "HttpToolsProtocol",
    "RequestResponseCycle",
    "allow_interim",
    "collect_body_chunks",
    "replace_headers",
    "request_send",
    "route_path",
]


def route_path(scope: Scope) -> str:
    """The path below the app's root_path, as Starlette's router matches it (`starlette._utils`)."""
    return get_route_path(scope)


def request_send(request: Request) -> Send:
    """The ASGI `send` a Request was built with (`Request._send`): interim responses go
    out on it before the final one, as Starlette's own `send_push_promise` does."""
    return request._send


def replace_headers(request: Request, headers: Headers) -> None:
    """Make `request.headers` return `headers` (Starlette caches it in `Request._headers`)."""
    request._headers = headers


class HttpToolsBase(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a request the parser refuses handed to `invalid_request`.

    uvicorn answers a parser error with a logged warning and a 400 inline in
    `data_received`; a subclass that stops the parser on purpose (`server.py`: a head
    past its limit, answered 431) needs that answer to be its own.
    """

    def data_received(self, data: bytes) -> None:
        # uvicorn's data_received (0.54), the parser error's answer in `invalid_request`.
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.invalid_request()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def invalid_request(self) -> None:
        """The parser refused the request: uvicorn's answer, a logged warning and a 400."""
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)


class BodyChunks:
    """Body bytes received and not yet taken by the app, as the chunks they came in.

    Stands in for uvicorn's `cycle.body` bytearray: uvicorn appends every chunk to
    the bytearray (`+=`, one copy) and hands the app `bytes(bytearray)` (a second
    copy). Here `bytes()` of a single chunk is that chunk itself, and a few chunks
    are joined once. uvicorn's `receive()` puts a fresh bytearray back after each take.
    """

    __slots__ = ("chunks", "size")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0

    def append(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.size += len(chunk)

    def __iadd__(self, chunk: bytes) -> BodyChunks:
        self.append(chunk)
        return self

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)


def collect_body_chunks(cycle: RequestResponseCycle) -> None:
    """Before uvicorn's `on_body` appends a chunk: put `BodyChunks` in the place of the
    cycle's empty bytearray (uvicorn leaves one there after every take), so the bytes
    reach the app without uvicorn's two copies. tus servers mostly receive bodies."""
    body: Any = cycle.body
    if type(body) is bytearray and not body:  # a non-empty one is not expected: left to uvicorn
        cycle.body = BodyChunks()  # type: ignore[assignment]


def allow_interim(protocol: HttpToolsProtocol, message_type: str, head: Callable[[Message], bytes]) -> None:
    """Let the request `protocol` just parsed send `message_type` messages before its response.

    Call it from `on_headers_complete`: the task that runs the app has not started yet,
    so it sees the scope's `extensions` naming the message and the wrapped `send`.
    `head(message)` is written to the transport as uvicorn writes its own `100 Continue`.
    Interim responses are optional: none to an HTTP/1.0 client (RFC 9110, 15.2), none once
    the final response started, and none to a client that does not read its responses
    (rather than waiting on it).
    """
    cycle = protocol.cycle
    scope = protocol.scope
    if cycle is None or cycle.scope is not scope or scope.get("http_version") != "1.1":
        return
    # The wrapper lives on the cycle, so it must not hold the cycle itself (nor its bound
    # `send`): that cycle of references made every request's cycle, scope and headers
    # garbage that only the cyclic collector frees (its passes cost ~60 us of a small
    # upload's CPU: docs/performance.md, round 5). It holds a weak reference and calls
    # the class's `send`; the running app holds the cycle.
    this = weakref.ref(cycle)
    send = type(cycle).send

    async def send_with_interim(message: Any) -> None:
        cycle = this()
        if cycle is None:  # cannot happen while the app runs; nothing to send to otherwise
            return
        if message["type"] != message_type:
            await send(cycle, message)
            return
        data = head(message)
        if cycle.response_started or cycle.disconnected or cycle.transport.is_closing() or cycle.flow.write_paused:
            return
        cycle.transport.write(data)

    scope.setdefault("extensions", {})[message_type] = {}
    cycle.send = send_with_interim  # type: ignore[method-assign]
