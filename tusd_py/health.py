"""`/healthz` (the process answers) and `/readyz` (it can serve uploads).

Ready means: the state store answers `ping` in time, the data directory takes
writes, and the server is not shutting down. A load balancer stops sending
uploads to an instance that is not ready; an orchestrator restarts one that is
not healthy.

`/readyz` is public like every other path: its body names the failed check with a
fixed word ("unreachable", "not writable"), never the error's text, which holds
internal addresses (a Redis error names its host and port); the log has the details.

The data check runs on a thread of its own, within the same time bound as the
ping: `/readyz` never waits behind hooks, digests or anything else that uses
worker threads, and never hangs on a stuck disk.

A store whose `writable()` only remembers how its last calls went (S3) would
stay "not writable" for good once a load balancer stopped sending it uploads:
such a store (`RecheckingDataStore`) is asked again, at most once per
`RECHECK_INTERVAL` whoever polls, so readiness comes back with the service.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Protocol, runtime_checkable

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tusd_py.state.base import StateStore
from tusd_py.storage.base import DataStore

logger = logging.getLogger("tusd_py.health")

PING_TIMEOUT = 2.0
RECHECK_INTERVAL = 1.0  # seconds between two re-checks of a store found not writable


@runtime_checkable
class RecheckingDataStore(Protocol):
    """A data store that can find out again whether it takes writes (S3: HeadBucket and a probe object)."""

    async def check_bucket(self) -> None: ...


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


def readiness(state: StateStore, data: DataStore, shutting_down: Callable[[], bool]) -> Callable[[Request], object]:
    checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tusd-health")
    rechecked = [0.0]  # when the store was last asked again
    recheck = asyncio.Lock()

    async def writable() -> bool:
        try:
            ok = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(checker, data.writable), PING_TIMEOUT)
        except asyncio.TimeoutError:
            return False
        if ok or not isinstance(data, RecheckingDataStore) or recheck.locked():
            return ok
        async with recheck:
            if time.monotonic() - rechecked[0] >= RECHECK_INTERVAL:
                rechecked[0] = time.monotonic()
                try:
                    await asyncio.wait_for(data.check_bucket(), PING_TIMEOUT)
                except (OSError, asyncio.TimeoutError) as exc:
                    logger.warning("data store still not writable: %s", exc)
        return data.writable()

    async def readyz(request: Request) -> Response:
        checks: dict[str, str] = {}
        failure = ""
        try:
            await asyncio.wait_for(state.ping(), PING_TIMEOUT)
            checks["state"] = "ok"
        except Exception as exc:  # any failure means not ready; say which (the why goes to the log only)
            checks["state"] = "unreachable"
            failure = f"{type(exc).__name__}: {exc}"[:500]
        checks["data"] = "ok" if await writable() else "not writable"
        checks["server"] = "shutting down" if shutting_down() else "ok"
        ready = all(value == "ok" for value in checks.values())
        if not ready:
            logger.warning("not ready: %s%s", checks, f" (state: {failure})" if failure else "")
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    return readyz


def health_routes(state: StateStore, data: DataStore, shutting_down: Callable[[], bool]) -> list[Route]:
    return [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readiness(state, data, shutting_down), methods=["GET", "HEAD"]),
    ]
