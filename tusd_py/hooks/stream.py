"""Notifications on a Redis stream: `--hooks-redis-stream NAME`.

Each post-* event becomes one stream entry with the fields `type`, `upload_id`
and `payload` (the event as JSON). Workers on any host read the stream through a
consumer group (XREADGROUP ... XACK), so each entry is handled once, by one
worker. The handler emits each post-finish once per upload, whatever the number
of instances (the state store's `claim`), so each finished upload is one entry.

On a Redis Cluster one stream would be one hot slot, so there are as many streams as the
state store has groups of uploads: `NAME:0` .. `NAME:<shards - 1>` (an upload's events all
go to the stream of its group, `redis_keys.KeyLayout.stream`, in order); a worker reads
every one of them (XREADGROUP takes keys of one slot at a time on a cluster).
"""

from __future__ import annotations

from typing import Iterable

from redis.exceptions import RedisError

from tusd_py.hooks.answers import HookFailed, HookResponse
from tusd_py.hooks.events import POST_CREATE, POST_FINISH, POST_TERMINATE, HookEvent
from tusd_py.redis_connect import RedisClient, close, connect, is_clustered
from tusd_py.redis_keys import DEFAULT_SHARDS, KeyLayout

STREAM_EVENTS = frozenset({POST_CREATE, POST_FINISH, POST_TERMINATE})


class RedisStreamTransport:
    name = "redis-stream"

    def __init__(
        self,
        client: RedisClient,
        stream: str,
        *,
        events: Iterable[str] = STREAM_EVENTS,
        maxlen: int | None = None,
        layout: KeyLayout | None = None,
    ) -> None:
        self.client = client
        self.stream = stream
        self.layout = layout or KeyLayout()
        self.events = frozenset(events) & STREAM_EVENTS  # blocking events cannot go through a stream
        self.maxlen = maxlen

    @classmethod
    def from_url(cls, url: str, stream: str, *, shards: int = DEFAULT_SHARDS, **options: object) -> RedisStreamTransport:
        layout = KeyLayout(clustered=is_clustered(url), shards=shards)
        return cls(connect(url, timeout=10.0, retries=0), stream, layout=layout, **options)  # type: ignore[arg-type]

    def handles(self, event_type: str) -> bool:
        return event_type in self.events

    async def deliver(self, event: HookEvent) -> HookResponse | None:
        upload_id = event.upload.id if event.upload else ""
        fields = {"type": event.type, "upload_id": upload_id, "payload": event.to_json()}
        stream = self.layout.stream(self.stream, upload_id)
        try:
            await self.client.xadd(stream, fields, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
        except RedisError as exc:
            raise HookFailed(f"XADD to {stream}: {exc}") from exc
        return None

    async def close(self) -> None:
        await close(self.client)
