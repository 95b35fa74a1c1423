"""Hooks: events (`events.py`), answers (`answers.py`), the queueing `Hooks` (`base.py`), one
module per transport; built from the configuration with `build_hooks`."""

from __future__ import annotations

from typing import Callable

from tusd_py.config import Config
from tusd_py.hooks.answers import HookResponse, Reject
from tusd_py.hooks.base import HookMetrics, Hooks, Transport
from tusd_py.hooks.capacity import HookCapacity
from tusd_py.hooks.events import (
    AUTHORIZE,
    BLOCKING,
    EVENTS,
    POST_CREATE,
    POST_FINISH,
    POST_RECEIVE,
    POST_TERMINATE,
    PRE_CREATE,
    PRE_FINISH,
    PRE_TERMINATE,
    HookEvent,
    HookRequest,
    HookUpload,
)


def build_hooks(config: Config, *, storage: Callable[[str], dict[str, str]], metrics: HookMetrics | None = None) -> Hooks:
    """The transports the configuration names, in order: module, HTTP, Redis stream."""
    events = set(config.hooks_events)
    unknown = events - set(EVENTS)
    if unknown:
        raise ValueError(f"unknown hook events: {', '.join(sorted(unknown))} (known: {', '.join(EVENTS)})")
    transports: list[Transport] = []
    capacity = HookCapacity(config.hooks_concurrency)
    if config.hooks_module:
        from tusd_py.hooks.module import ModuleTransport

        transports.append(ModuleTransport(config.hooks_module, events=events, capacity=capacity))
    if config.hooks_http:
        from tusd_py.hooks.http import HttpTransport

        transports.append(
            HttpTransport(
                config.hooks_http,
                events=events,
                forward_headers=config.hooks_http_forward_headers,
                timeout=config.hooks_http_timeout,
                retries=config.hooks_http_retries,
                backoff=config.hooks_http_backoff,
            )
        )
    if config.hooks_redis_stream:
        from tusd_py.hooks.stream import RedisStreamTransport

        url = config.hooks_redis_url or config.redis_url
        if not url:
            raise ValueError("--hooks-redis-stream needs a Redis: set --redis-url or --hooks-redis-url")
        transports.append(
            RedisStreamTransport.from_url(url, config.hooks_redis_stream, events=events, shards=config.redis_shards)
        )
    return Hooks(
        transports,
        timeout=config.hooks_timeout,
        progress_interval=config.progress_interval,
        storage=storage,
        metrics=metrics,
        capacity=capacity,
        queue_size=config.hooks_queue_size,
    )


__all__ = [
    "AUTHORIZE",
    "BLOCKING",
    "EVENTS",
    "POST_CREATE",
    "POST_FINISH",
    "POST_RECEIVE",
    "POST_TERMINATE",
    "PRE_CREATE",
    "PRE_FINISH",
    "PRE_TERMINATE",
    "HookEvent",
    "HookRequest",
    "HookResponse",
    "HookUpload",
    "Hooks",
    "Reject",
    "build_hooks",
]
