"""Every use of Starlette's and uvicorn's internals, in one place.

tusd-py reaches past their public APIs where measuring showed a cost or where
they have no API at all (see each function). Each reach is pinned by a test in
tests/unit/test_compat.py, and pyproject.toml bounds both packages to the
versions those tests ran on: an upgrade that moves an internal fails there,
not in production.
"""

from __future__ import annotations

from starlette._utils import get_route_path
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import Scope, Send
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
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
    "HttpToolsProtocol",
    "RequestResponseCycle",
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
