"""Upload requests go straight to the tus handler; everything else to Starlette's router.

Starlette's exception layer and router wrap `send` once more per request, match
each route by regular expression and wrap the endpoint in two more layers: small
uploads spent about a fifth of the app's CPU time there (docs/performance.md).
Upload URLs have two shapes, the base path and the base path plus an id, so a
prefix test finds them. The store errors that Starlette's exception handlers
answered are answered here, where they arise.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

from redis.exceptions import RedisError
from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tusd_py import protocol as p
from tusd_py.handlers import TusHandler, error_response

logger = logging.getLogger("tusd_py")

Endpoint = Callable[[Request], Awaitable[Response]]


class UploadRoutes:
    """An ASGI middleware: serves the creation URL (with and without its final slash)
    and the upload URLs; passes every other request, and every path in `reserved`
    (the operational endpoints, which an upload id must not shadow), on to `app`."""

    def __init__(self, app: ASGIApp, handler: TusHandler, base_path: str, reserved: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.handler = handler
        self.base = base_path  # always ends with "/" (Config)
        self.creation_paths = {base_path, base_path.rstrip("/") or "/"}
        self.reserved = reserved

    def match(self, scope: Scope) -> Endpoint | None:
        if scope["type"] != "http":
            return None
        path = get_route_path(scope)
        if path in self.reserved:
            return None
        if path in self.creation_paths:
            return self.handler.creation_endpoint
        if path.startswith(self.base):
            upload_id = path[len(self.base) :]
            if "/" not in upload_id:  # as Starlette's `{upload_id}`: one non-empty segment
                scope["path_params"] = {"upload_id": upload_id}
                return self.handler.upload_endpoint
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.match(scope)
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)  # send: for interim (1xx) responses
        try:
            response = await endpoint(request)
        except RedisError as exc:
            response = self.state_unavailable(request, exc)
        except OSError as exc:
            response = self.storage_unavailable(request, exc)
        await response(scope, receive, send)

    @staticmethod
    def state_unavailable(request: Request, exc: RedisError) -> Response:
        logger.error("state store error: %s", exc)
        request.state.tus_error = p.ERR_STATE_UNAVAILABLE.code
        return error_response(p.ERR_STATE_UNAVAILABLE(Retry_After="1"), method=request.method)

    def storage_unavailable(self, request: Request, exc: OSError) -> Response:
        error = self.handler.storage_error(exc) or p.ERR_STORAGE()
        request.state.tus_error = error.code
        return error_response(error.with_headers(Retry_After="5"), method=request.method)
