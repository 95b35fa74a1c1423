"""Notifications on a Redis stream: `--hooks-redis-stream NAME`.

Each post-* event becomes one stream entry with the fields `type`, `upload_id`
and `payload` (the event as JSON). Workers on any host read the stream through a
consumer group (XREADGROUP ... XACK), so each entry is handled once, by one
worker. The handler emits each post-finish once per upload, whatever the number
of instances (the state store's `claim`), so each finished upload is one entry.
"""

from __future__ import annotations

from typing import Iterable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tusd_py.hooks.base import POST_CREATE, POST_FINISH, POST_TERMINATE, HookEvent, HookFailed, HookResponse

STREAM_EVENTS = frozenset({POST_CREATE, POST_FINISH, POST_TERMINATE})


class RedisStreamTransport:
    name = "redis-stream"

    def __init__(self, client: aioredis.Redis, stream: str, *, events: Iterable[str] = STREAM_EVENTS, maxlen: int | None = None) -> None:
        self.client = client
        self.stream = stream
        self.events = frozenset(events) & STREAM_EVENTS  # blocking events cannot go through a stream
        self.maxlen = maxlen

    @classmethod
    def from_url(cls, url: str, stream: str, **options: object) -> RedisStreamTransport:
        client = aioredis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5, socket_timeout=10)
        return cls(client, stream, **options)  # type: ignore[arg-type]

    def handles(self, event_type: str) -> bool:
        return event_type in self.events

    async def deliver(self, event: HookEvent) -> HookResponse | None:
        fields = {"type": event.type, "upload_id": event.upload.id if event.upload else "", "payload": event.to_json()}
        try:
            await self.client.xadd(self.stream, fields, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
        except RedisError as exc:
            raise HookFailed(f"XADD to {self.stream}: {exc}") from exc
        return None

    async def close(self) -> None:
        await self.client.aclose()
