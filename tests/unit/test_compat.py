"""What tusd-py relies on in Starlette's and uvicorn's internals (tusd_py/compat.py and
the protocol subclass in server.py): an upgrade that moves one fails here first."""

from __future__ import annotations

import asyncio
import gc
import inspect
import weakref
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request

from tusd_py import compat
from tusd_py.headers import IndexedHeaders, index_headers
from tusd_py.server import GuardedHttpToolsProtocol


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Any) -> None:
    pass


def _scope(**extra: Any) -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": "/files/x", "root_path": "", "headers": [(b"a", b"1")], **extra}


def test_route_path_is_the_path_below_root_path() -> None:
    assert compat.route_path(_scope()) == "/files/x"
    assert compat.route_path(_scope(path="/mount/files/x", root_path="/mount")) == "/files/x"


def test_request_send_is_the_send_the_request_was_built_with() -> None:
    assert compat.request_send(Request(_scope(), _receive, _send)) is _send


def test_replaced_headers_are_what_request_headers_returns() -> None:
    request = Request(_scope(), _receive, _send)
    index_headers(request)
    assert isinstance(request.headers, IndexedHeaders) and request.headers["a"] == "1"
    assert Headers(scope=_scope()).raw == [(b"a", b"1")]  # IndexedHeaders reads `raw`


def test_header_checks_reject_what_cannot_go_on_the_wire() -> None:
    assert compat.HEADER_RE.search(b"bad name") and not compat.HEADER_RE.search(b"upload-offset")
    assert compat.HEADER_VALUE_RE.search(b"a\r\nb") and not compat.HEADER_VALUE_RE.search(b"?1")
    assert isinstance(compat.HIGH_WATER_LIMIT, int) and compat.HIGH_WATER_LIMIT > 0


def test_the_protocol_methods_overridden_exist_with_their_signatures() -> None:
    base = compat.HttpToolsProtocol
    for name, params in {
        "on_body": ["self", "body"],
        "data_received": ["self", "data"],
        "on_headers_complete": ["self"],
        "on_response_complete": ["self"],
        "send_400_response": ["self", "msg"],
        "connection_made": ["self", "transport"],
        "connection_lost": ["self", "exc"],
        "on_message_begin": ["self"],
        "on_url": ["self", "url"],
        "on_header": ["self", "name", "value"],
        # what the copy of uvicorn's data_received calls
        "_unset_keepalive_if_required": ["self"],
        "_should_upgrade": ["self"],
        "handle_websocket_upgrade": ["self"],
        "_unsupported_upgrade_warning": ["self"],
    }.items():
        assert list(inspect.signature(getattr(base, name)).parameters) == params, name
    assert issubclass(GuardedHttpToolsProtocol, base)


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 1080), "peername": ("127.0.0.1", 5000)}.get(name, default)

    def write(self, data: Any) -> None:
        self.out += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _feed(
    protocol_class: type, data: bytes, *, refused: bool = False, cycles: list[weakref.ref[Any]] | None = None
) -> tuple[list[bytes], Any, bytes]:
    """Run `data` through a real uvicorn protocol with an app that reads the body
    (`refused`: the parser refuses the request, so no cycle starts; `cycles` gets a
    weak reference to the request's cycle, which the protocol then lets go of)."""
    import uvicorn
    from uvicorn.server import ServerState

    bodies: list[bytes] = []
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["scope"] = scope
        while True:
            message = await receive()
            bodies.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def main() -> bytes:
        config = uvicorn.Config(app, log_config=None, lifespan="off")
        config.load()
        protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
        transport = _Transport()
        protocol.connection_made(transport)
        protocol.data_received(data)
        if refused:
            assert protocol.cycle is None and transport.closed
            return bytes(transport.out)
        cycle = protocol.cycle
        assert isinstance(cycle, compat.RequestResponseCycle)
        if cycles is not None:
            cycles.append(weakref.ref(cycle))
        for attribute in ("body", "message_event", "response_started", "response_complete", "disconnected", "flow", "transport", "send"):
            assert hasattr(cycle, attribute), attribute
        for _ in range(100):
            await asyncio.sleep(0.01)
            if cycle.response_complete:
                break
        if cycles is not None:  # as the protocol does when the next request on the connection begins
            protocol.cycle = cycle = None
        return bytes(transport.out)

    out = asyncio.run(main())
    return bodies, seen.get("scope"), out


REQUEST = b"PATCH /files/x HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhello"


def test_uvicorn_hands_the_body_over_through_cycle_body() -> None:
    bodies, _, out = _feed(compat.HttpToolsProtocol, REQUEST)
    assert b"".join(bodies) == b"hello" and out.startswith(b"HTTP/1.1 204")


def test_our_protocol_hands_the_same_body_over_without_the_bytearray() -> None:
    bodies, scope, out = _feed(GuardedHttpToolsProtocol, REQUEST)
    assert b"".join(bodies) == b"hello" and out.startswith(b"HTTP/1.1 204")
    assert "http.response.informational" in scope["extensions"]  # the interim extension was announced


def test_a_request_cycle_is_freed_without_the_cyclic_collector() -> None:
    """The interim wrapper lives on the cycle: holding the cycle (or its bound `send`) in it made
    every request's cycle, scope and headers garbage for the cyclic collector, whose passes cost
    ~60 us of a small upload's CPU (docs/performance.md). Reference counting alone must free it."""
    cycles: list[weakref.ref[Any]] = []
    gc.collect()
    gc.disable()
    try:
        bodies, scope, out = _feed(GuardedHttpToolsProtocol, REQUEST, cycles=cycles)
        assert out.startswith(b"HTTP/1.1 204") and "http.response.informational" in scope["extensions"]
        assert cycles and cycles[0]() is None
    finally:
        gc.enable()


BAD_REQUEST = b"GET /files/x HTTP/1.1\r\nbad header\r\n\r\n"


def test_our_data_received_answers_what_the_parser_refuses_as_uvicorn_does(caplog: Any) -> None:
    """HttpToolsBase keeps uvicorn's data_received but hands a refused request to `invalid_request`."""
    for protocol_class in (compat.HttpToolsProtocol, compat.HttpToolsBase):
        caplog.clear()
        with caplog.at_level("WARNING", logger="uvicorn.error"):
            bodies, scope, out = _feed(protocol_class, BAD_REQUEST, refused=True)
        assert out.startswith(b"HTTP/1.1 400 ") and b"Invalid HTTP request received." in out, protocol_class
        assert scope is None and "Invalid HTTP request received." in caplog.text, protocol_class


def test_a_head_past_the_limit_is_431_and_not_logged_as_invalid(caplog: Any) -> None:
    head = b"GET /files/x HTTP/1.1\r\nhost: a\r\nx-big: " + b"a" * 70_000 + b"\r\n\r\n"
    with caplog.at_level("WARNING", logger="uvicorn.error"):
        _, scope, out = _feed(GuardedHttpToolsProtocol, head, refused=True)
    assert out.startswith(b"HTTP/1.1 431 ") and b"ERR_HEADERS_TOO_LARGE" in out
    assert scope is None and "Invalid HTTP request" not in caplog.text


def test_uvicorn_on_body_appends_to_cycle_body_and_measures_it() -> None:
    """uvicorn's on_body does `cycle.body += chunk` and `len(cycle.body)`, and its receive()
    takes `bytes(cycle.body)` and leaves an empty bytearray: what BodyChunks stands in for."""
    import uvicorn
    from uvicorn.server import ServerState

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.Event().wait()  # the test takes the body itself

    async def main() -> None:
        config = uvicorn.Config(app, log_config=None, lifespan="off")
        config.load()
        protocol = GuardedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
        protocol.connection_made(_Transport())
        protocol.data_received(REQUEST[:-3])  # the head and "he"
        protocol.data_received(REQUEST[-3:])  # "llo"
        cycle = protocol.cycle
        assert type(cycle.body) is compat.BodyChunks and len(cycle.body) == 5
        assert cycle.body.chunks == [b"he", b"llo"]  # type: ignore[attr-defined]
        message = await cycle.receive()
        assert message["body"] == b"hello" and not message["more_body"]
        assert type(cycle.body) is bytearray and not cycle.body
        compat.collect_body_chunks(cycle)
        assert type(cycle.body) is compat.BodyChunks

    asyncio.run(main())


def test_interim_is_allowed_on_http_1_1_only() -> None:
    _, scope, _ = _feed(GuardedHttpToolsProtocol, REQUEST.replace(b"HTTP/1.1", b"HTTP/1.0"))
    assert "http.response.informational" not in scope.get("extensions", {})
