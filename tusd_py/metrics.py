"""Prometheus metrics (prometheus-client), served on `/metrics`.

Each app gets its own `Metrics` (its own registry), so tests can build several.
With several worker processes, set `PROMETHEUS_MULTIPROC_DIR` to an empty
directory shared by the workers before they start: prometheus-client then keeps
every value in files there, and `/metrics` on any worker sums them all
(`MultiProcessCollector`). The directory must be emptied when the server
(re)starts, as prometheus-client documents.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
LOCK_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20)


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("tusd_py_requests", "HTTP requests answered, by method and status", ["method", "status"], registry=registry)
        self._requests: dict[tuple[str, int], Counter] = {}
        self.errors = Counter("tusd_py_errors", "Error answers, by status and error code", ["status", "code"], registry=registry)
        self.bytes_received = Counter("tusd_py_bytes_received", "Upload bytes received into uploads", registry=registry)
        self.uploads_created = Counter("tusd_py_uploads_created", "Uploads created", registry=registry)
        self.uploads_finished = Counter("tusd_py_uploads_finished", "Uploads completed (partial uploads not counted)", registry=registry)
        self.uploads_terminated = Counter("tusd_py_uploads_terminated", "Uploads terminated (DELETE)", registry=registry)
        self.uploads_expired = Counter("tusd_py_uploads_expired", "Unfinished uploads removed by the expiration sweeper", registry=registry)
        self.active_uploads = Gauge(
            "tusd_py_active_uploads", "Upload bodies being received right now", registry=registry, multiprocess_mode="livesum"
        )
        self.patch_duration = Histogram(
            "tusd_py_patch_duration_seconds", "Time to answer a PATCH", registry=registry, buckets=DURATION_BUCKETS
        )
        self.lock_wait = Histogram(
            "tusd_py_lock_wait_seconds", "Time spent acquiring an upload's lock (acquired ones)", registry=registry, buckets=LOCK_BUCKETS
        )
        self.lock_timeouts = Counter("tusd_py_lock_timeouts", "Lock waits that ran out (423)", registry=registry)
        self.lock_exchanges = Counter(
            "tusd_py_lock_exchanges", "Requests holding an upload's lock that were asked to hand it over", registry=registry
        )
        self.hook_invocations = Counter("tusd_py_hook_invocations", "Hook deliveries, by event and transport", ["event", "transport"], registry=registry)
        self.hook_failures = Counter("tusd_py_hook_failures", "Hook deliveries that failed, by event and transport", ["event", "transport"], registry=registry)
        self.hook_dropped_events = Counter(
            "tusd_py_hook_events_dropped", "Progress notifications dropped because their queue was full", ["event", "transport"], registry=registry
        )
        # The collector's passes (python_gc_collections_total, by generation): small uploads should
        # cause almost none (collector.py). In multiprocess mode /metrics shows only the shared values.
        GCCollector(registry=registry)

    # -- for hooks (see hooks.base.HookMetrics) --------------------------------------

    def hook_invoked(self, event_type: str, transport: str) -> None:
        self.hook_invocations.labels(event_type, transport).inc()

    def hook_failed(self, event_type: str, transport: str) -> None:
        self.hook_failures.labels(event_type, transport).inc()

    def hook_dropped(self, event_type: str, transport: str) -> None:
        self.hook_dropped_events.labels(event_type, transport).inc()

    # -- requests (see middleware.TusMiddleware) -----------------------------------

    def count(self, scope: Scope, status: int, duration: float) -> None:
        """Counts an answered request (method, status, error code); times PATCHes."""
        method = request_method(scope)
        counter = self._requests.get((method, status))
        if counter is None:  # labels() checks and locks on every call; the pairs are few
            counter = self._requests[(method, status)] = self.requests.labels(method, str(status))
        counter.inc()
        if status >= 400:
            code = scope.get("state", {}).get("tus_error", "")
            self.errors.labels(str(status), code).inc()
        if method == "PATCH":
            self.patch_duration.observe(duration)

    # -- exposition ----------------------------------------------------------------

    def render(self) -> bytes:
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)

    async def endpoint(self, request: Request) -> Response:
        return Response(self.render(), media_type=CONTENT_TYPE_LATEST)


KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS", "PUT"})


def request_method(scope: Scope) -> str:
    """The method the handler sees: `X-HTTP-Method-Override` on POST counts (as in handlers.py).
    Unknown methods are `OTHER`, so that clients cannot create label values at will."""
    method: str = scope["method"]
    if method == "POST":
        for name, value in scope.get("headers", ()):
            if name == b"x-http-method-override" and value.strip():
                method = value.decode("latin-1").strip().upper()
    return method if method in KNOWN_METHODS else "OTHER"
