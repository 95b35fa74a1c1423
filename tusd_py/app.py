"""Assembles the ASGI app from a Config: stores, engine, protocols, routes, middleware, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, AsyncIterator, cast

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from tusd_py.config import Config
from tusd_py.engine import UploadEngine
from tusd_py.handlers import TusHandler
from tusd_py.health import health_routes
from tusd_py.hooks import build_hooks
from tusd_py.ietf_handler import IetfHandler
from tusd_py.metrics import Metrics
from tusd_py.middleware import TusMiddleware
from tusd_py.routing import ProtocolHandler, UploadRoutes
from tusd_py.state import open_state_store
from tusd_py.state.base import ExpiringStateStore, FullStateStore
from tusd_py.storage import open_data_store
from tusd_py.storage.base import DataStore
from tusd_py.storage.files import FileStore
from tusd_py.sweeper import Sweeper
from tusd_py.ui import ui_routes

if TYPE_CHECKING:
    from tusd_py.storage.s3 import S3Store

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


def build_engine(config: Config) -> UploadEngine:
    """The stores named by `config`, the hooks, and the engine on them."""
    state, locker = open_state_store(config)
    data = open_data_store(config)
    metrics = Metrics()
    hooks = build_hooks(config, storage=lambda upload_id: storage_info(data, upload_id), metrics=metrics)
    return UploadEngine(config, state, data, locker, hooks=hooks, metrics=metrics)


def storage_info(data: DataStore, upload_id: str) -> dict[str, str]:
    """Where an upload's bytes are, for hooks: the file's path, or (named as tusd names them) the bucket and key."""
    if isinstance(data, FileStore):
        return {"type": data.name, "path": str(data.path(upload_id).resolve())}
    if data.name == "s3":  # the S3 package is imported only when --s3-bucket chose it
        data = cast("S3Store", data)
        return {"type": data.name, "Type": "s3store", "Bucket": data.options.bucket, "Key": data.object_key(upload_id)}
    return {"type": data.name}


def build_protocols(engine: UploadEngine) -> list[ProtocolHandler]:
    """The protocols served, in the order the router asks them: the draft (when enabled and
    the stores can keep its fields), then tus, which takes every other request."""
    protocols: list[ProtocolHandler] = []
    if engine.capabilities.draft:
        protocols.append(IetfHandler(engine))
    protocols.append(TusHandler(engine))
    return protocols


def create_app(config: Config) -> Starlette:
    engine = build_engine(config)
    sweeper = None
    if isinstance(engine.state, ExpiringStateStore):
        sweeper = Sweeper(
            cast(FullStateStore, engine.state), engine.data, engine.locker,
            interval=config.sweep_interval, concat=engine.concat, orphan_age=config.expire_after,
        )
        sweeper.on_expired.append(lambda upload_id: engine.metrics.uploads_expired.inc())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # expiry, and final uploads still waiting on parts
        s3 = cast("S3Store", engine.data) if engine.data.name == "s3" else None
        if s3 is not None:  # this process's client (the CLI checked the bucket before serving, with a message)
            await s3.start()
            await s3.check_bucket()
        task = asyncio.create_task(sweeper.run()) if sweeper is not None else None
        try:
            yield
        finally:
            engine.shutdown()
            if task is not None:
                task.cancel()
            if engine.concat is not None:
                await engine.concat.close()
            await engine.hooks.close()
            await engine.locker.close()
            await engine.state.close()
            if s3 is not None:
                await s3.close()

    async def greeting(request: Request) -> Response:
        return PlainTextResponse(f"tusd-py: a tus 1.0.0 server. Uploads go to {config.base_path}\n")

    base = config.base_path
    ops_routes = health_routes(engine.state, engine.data, lambda: engine.shutting_down)
    if config.expose_metrics:
        ops_routes.append(Route("/metrics", engine.metrics.endpoint, methods=["GET"]))
    routes: list[BaseRoute] = list(ops_routes)
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
        Middleware(TusMiddleware, metrics=engine.metrics, skip=OPS_PATHS, cors=cors),
        # Upload URLs never reach the router; the operational ones are never upload URLs.
        Middleware(UploadRoutes, engine=engine, protocols=build_protocols(engine), base_path=base, reserved=frozenset(r.path for r in ops_routes)),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # no path answers with a redirect (an upload URL never reaches the router)
    app.state.engine = engine
    app.state.sweeper = sweeper
    return app
