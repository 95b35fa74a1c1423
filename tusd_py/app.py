"""Assembles the ASGI app from a Config: stores, handler, routes, middleware, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tusd_py.config import Config
from tusd_py.handlers import TusHandler
from tusd_py.health import health_routes
from tusd_py.hooks import build_hooks
from tusd_py.locks.base import Locker
from tusd_py.locks.memory import MemoryLocker
from tusd_py.metrics import Metrics
from tusd_py.middleware import TusMiddleware
from tusd_py.routing import UploadRoutes
from tusd_py.state import open_state_store
from tusd_py.storage.files import FileStore
from tusd_py.sweeper import Sweeper
from tusd_py.ui import ui_routes

logger = logging.getLogger("tusd_py")

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
    data = FileStore(config.data_dir, fsync=config.fsync, batch_size=config.write_batch_size, direct=config.direct_io)
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
        locker = RedisLocker(state.client, layout=state.layout, preload=state.key, scripts=state.scripts)
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

    async def greeting(request: Request) -> Response:
        return PlainTextResponse(f"tusd-py: a tus 1.0.0 server. Uploads go to {config.base_path}\n")

    base = config.base_path
    ops_routes = health_routes(handler.state, handler.data, lambda: handler.shutting_down)
    if config.expose_metrics:
        ops_routes.append(Route("/metrics", handler.metrics.endpoint, methods=["GET"]))
    routes = list(ops_routes)
    if base != "/":
        routes += ui_routes(config) or [Route("/", greeting)]
    cors = dict(
        allow_origins=list(config.cors_origins),
        allow_methods=["POST", "HEAD", "PATCH", "OPTIONS", "GET", "DELETE"],
        allow_headers=["*"],
        expose_headers=EXPOSE_HEADERS,
        max_age=86400,
    )
    middleware = [
        Middleware(TusMiddleware, metrics=handler.metrics, skip=OPS_PATHS, cors=cors),
        # Upload URLs never reach the router; the operational ones are never upload URLs.
        Middleware(UploadRoutes, handler=handler, base_path=base, reserved=frozenset(r.path for r in ops_routes)),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # no path answers with a redirect (an upload URL never reaches the router)
    app.state.tus = handler
    app.state.sweeper = sweeper
    return app
