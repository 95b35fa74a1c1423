"""The router: upload URLs to a protocol's method, through one shared prelude.

Upload URLs have two shapes, the base path and the base path plus an id, so a
prefix test finds them; everything else goes on to Starlette's router (whose
regular expressions and extra layers cost small uploads about a fifth of the
app's CPU time: docs/performance.md).

For an upload URL the router picks the protocol (the IETF draft when the request
names an interop version it serves, else tus 1.0.0), then runs once, for both:
the method override, 405 with `Allow` from the protocol's method table, the
protocol's version check, the authorize hook, and, whatever was raised, the
mapping to an error-table row (`errors.py`), the protocol's error response, and
the error code for metrics and the access log.
"""

from __future__ import annotations

from typing import Awaitable, Callable, Mapping, Protocol, Sequence

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tusd_py import protocol as p
from tusd_py.compat import route_path
from tusd_py.engine import UploadEngine
from tusd_py.errors import to_tus_error
from tusd_py.headers import index_headers

Endpoint = Callable[[Request, int], Awaitable[Response]]


class ProtocolHandler(Protocol):
    """What the router needs of a protocol module (`handlers.TusHandler`, `ietf_handler.IetfHandler`)."""

    @property
    def creation_methods(self) -> Mapping[str, Endpoint]:
        """Methods on the base path; `Allow` is their names, in order."""

    @property
    def upload_methods(self) -> Mapping[str, Endpoint]:
        """Methods on an upload's URL."""

    def version(self, headers: Headers) -> int | None:
        """The revision of this protocol the request speaks, or None: another protocol's request."""

    def check_version(self, request: Request, method: str, version: int) -> None:
        """Raise if the request's version may not make this request."""

    def error_response(self, error: p.TusError, request: Request, version: int) -> Response:
        """The answer for `error`, in this protocol's form."""


def request_method(request: Request) -> str:
    """The method, or the one a POST names in X-HTTP-Method-Override: browsers and proxies
    that only allow GET and POST send the real method there (as tusd: POST only)."""
    method: str = request.scope["method"]
    if method == "POST":
        override = request.headers.get("x-http-method-override")
        if override:
            return override.strip().upper()
    return method


class UploadRoutes:
    """An ASGI middleware: serves the creation URL (with and without its final slash)
    and the upload URLs; passes every other request, and every path in `reserved`
    (the operational endpoints, which an upload id must not shadow), on to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        engine: UploadEngine,
        protocols: Sequence[ProtocolHandler],
        base_path: str,
        reserved: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.engine = engine
        self.protocols = tuple(protocols)  # asked in order; the last one (tus) takes any request
        self.base = base_path  # always ends with "/" (Config)
        self.creation_paths = {base_path, base_path.rstrip("/") or "/"}
        self.reserved = reserved

    def match(self, scope: Scope) -> bool | None:
        """None: not an upload URL; False: the creation URL; True: an upload's URL (its id in path_params)."""
        if scope["type"] != "http":
            return None
        path = route_path(scope)
        if path in self.reserved:
            return None
        if path in self.creation_paths:
            return False
        if path.startswith(self.base):
            upload_id = path[len(self.base) :]
            if "/" not in upload_id:  # as Starlette's `{upload_id}`: one non-empty segment
                scope["path_params"] = {"upload_id": upload_id}
                return True
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        on_upload = self.match(scope)
        if on_upload is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)  # send: for interim (1xx) responses
        response = await self.handle(request, on_upload)
        await response(scope, receive, send)

    def pick(self, request: Request) -> tuple[ProtocolHandler, int]:
        """The protocol the request speaks, and its version."""
        for protocol in self.protocols:
            version = protocol.version(request.headers)
            if version is not None:
                return protocol, version
        raise AssertionError("the last protocol takes every request")

    async def handle(self, request: Request, on_upload: bool) -> Response:
        """The shared prelude, the protocol's method, and the one place errors become answers."""
        index_headers(request)
        method = request_method(request)
        protocol, version = self.pick(request)
        methods = protocol.upload_methods if on_upload else protocol.creation_methods
        self.engine.hooks.bind_request(request, method)
        try:
            endpoint = methods.get(method)
            if endpoint is None:
                raise p.ERR_METHOD_NOT_ALLOWED(Allow=", ".join(methods))
            if method != "OPTIONS":
                protocol.check_version(request, method, version)
                await self.engine.authorize(request.path_params.get("upload_id"))
            return await endpoint(request, version)
        except Exception as exc:
            error = to_tus_error(exc)
            if error is None:
                raise  # a bug: Starlette's 500
            request.state.tus_error = error.code  # for metrics and the access log
            return protocol.error_response(error, request, version)
