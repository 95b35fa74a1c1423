"""`/healthz` (the process answers) and `/readyz` (it can serve uploads).

Ready means: the state store answers `ping` in time, the data directory takes
writes, and the server is not shutting down. A load balancer stops sending
uploads to an instance that is not ready; an orchestrator restarts one that is
not healthy.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tusd_py.state.base import StateStore
from tusd_py.storage.base import DataStore

logger = logging.getLogger("tusd_py.health")

PING_TIMEOUT = 2.0


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


def readiness(state: StateStore, data: DataStore, shutting_down: Callable[[], bool]) -> Callable[[Request], object]:
    async def readyz(request: Request) -> Response:
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(state.ping(), PING_TIMEOUT)
            checks["state"] = "ok"
        except Exception as exc:  # any failure means not ready; say which
            checks["state"] = f"unreachable: {type(exc).__name__}: {exc}"[:200]
        checks["data"] = "ok" if await asyncio.to_thread(data.writable) else "not writable"
        checks["server"] = "shutting down" if shutting_down() else "ok"
        ready = all(value == "ok" for value in checks.values())
        if not ready:
            logger.warning("not ready: %s", checks)
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    return readyz


def health_routes(state: StateStore, data: DataStore, shutting_down: Callable[[], bool]) -> list[Route]:
    return [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readiness(state, data, shutting_down), methods=["GET", "HEAD"]),
    ]
