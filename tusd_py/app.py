"""Assembles the ASGI app from a Config: stores, handler, routes, middleware, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator

from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tusd_py import protocol as p
from tusd_py.config import Config
from tusd_py.handlers import TusHandler, error_response
from tusd_py.health import health_routes
from tusd_py.hooks import build_hooks
from tusd_py.locks.base import Locker
from tusd_py.locks.memory import MemoryLocker
from tusd_py.metrics import Metrics
from tusd_py.middleware import TusMiddleware
from tusd_py.state import open_state_store
from tusd_py.storage.files import FileStore
from tusd_py.sweeper import Sweeper
from tusd_py.ui import ui_routes

logger = logging.getLogger("tusd_py")

ALL_METHODS = ["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS", "PUT"]
EXPOSE_HEADERS = [
    "Location",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Defer-Length",
    "Upload-Metadata",
    "Upload-Expires",
    "Upload-Concat",
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "Tus-Checksum-Algorithm",
    "Upload-Complete",
    "Upload-Limit",
    "Upload-Draft-Interop-Version",
    "Repr-Digest",
    "Accept-Patch",
]


OPS_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})  # not counted, not logged


def build_handler(config: Config) -> TusHandler:
    state = open_state_store(config)
    data = FileStore(config.data_dir, fsync=config.fsync, batch_size=config.write_batch_size)
    metrics = Metrics()
    hooks = build_hooks(
        config, storage=lambda upload_id: {"type": data.name, "path": str(data.path(upload_id).resolve())}, metrics=metrics
    )
    locker: Locker
    if config.redis_url:
        from tusd_py.locks.redis import RedisLocker
        from tusd_py.state.redis import RedisStateStore

        assert isinstance(state, RedisStateStore)
        # The lock's acquiring script also reads the upload's record: one round trip for both.
        locker = RedisLocker(state.client, prefix=config.redis_prefix, preload=state.key)
    else:
        locker = MemoryLocker()
    return TusHandler(config, state, data, locker, hooks=hooks, metrics=metrics)


def create_app(config: Config) -> Starlette:
    handler = build_handler(config)
    sweeper = Sweeper(handler.state, handler.data, handler.locker, interval=config.sweep_interval, concat=handler.concat)
    sweeper.on_expired.append(lambda upload_id: handler.metrics.uploads_expired.inc())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(sweeper.run())  # expiry, and final uploads still waiting on parts
        try:
            yield
        finally:
            handler.shutdown()
            task.cancel()
            await handler.concat.close()
            await handler.hooks.close()
            await handler.locker.close()
            await handler.state.close()

    async def state_unavailable(request: Request, exc: Exception) -> Response:
        logger.error("state store error: %s", exc)
        request.state.tus_error = p.ERR_STATE_UNAVAILABLE.code
        return error_response(p.ERR_STATE_UNAVAILABLE(Retry_After="1"), method=request.method)

    async def storage_unavailable(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, OSError)
        error = handler.storage_error(exc) or p.ERR_STORAGE()
        request.state.tus_error = error.code
        return error_response(error.with_headers(Retry_After="5"), method=request.method)

    async def greeting(request: Request) -> Response:
        return PlainTextResponse(f"tusd-py: a tus 1.0.0 server. Uploads go to {config.base_path}\n")

    base = config.base_path
    ops_routes = health_routes(handler.state, handler.data, lambda: handler.shutting_down)
    if config.expose_metrics:
        ops_routes.append(Route("/metrics", handler.metrics.endpoint, methods=["GET"]))
    tus_routes = [
        Route(base, handler.creation_endpoint, methods=ALL_METHODS),
        Route(base + "{upload_id}", handler.upload_endpoint, methods=ALL_METHODS),
    ]
    # Uploads first, so that their requests match at once, unless an upload URL could
    # shadow an operational one (base path "/": "/healthz" would be an upload id).
    overlap = base == "/" or base.rstrip("/") in OPS_PATHS
    routes = ops_routes + tus_routes if overlap else tus_routes + ops_routes
    if base != "/":
        routes.append(Route(base.rstrip("/"), handler.creation_endpoint, methods=ALL_METHODS))
        routes += ui_routes(config) or [Route("/", greeting)]
    middleware = [
        Middleware(TusMiddleware, metrics=handler.metrics, skip=OPS_PATHS),
        Middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["POST", "HEAD", "PATCH", "OPTIONS", "GET", "DELETE"],
            allow_headers=["*"],
            expose_headers=EXPOSE_HEADERS,
            max_age=86400,
        ),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={RedisError: state_unavailable, OSError: storage_unavailable},
    )
    app.router.redirect_slashes = False  # an upload URL never answers with a redirect
    app.state.tus = handler
    app.state.sweeper = sweeper
    return app
