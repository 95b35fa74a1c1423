"""What the parts of the Redis state store share: the client, the key layout, the scripts.

`KeyLayout` (redis_keys.py) names every key; on a Redis Cluster the keys of one upload
and its group's slice of the indexes share a hash slot. `Scripts` (redis_scripts.py)
runs the Lua of store.py and finals.py, waiting for `min_replicas` where asked.
The locker is made here, with the same layout and connections (`locker`).
"""

from __future__ import annotations

import heapq
from typing import Any, Self

from tusd_py.locks.redis import RedisLocker
from tusd_py.redis_connect import RedisClient, close, connect, is_clustered
from tusd_py.redis_keys import DEFAULT_SHARDS, KeyLayout
from tusd_py.redis_scripts import Scripts

TOMBSTONE_SECONDS = 7 * 24 * 3600  # how long an expired upload's record answers 410


def texts(values: Any) -> list[str]:
    """A reply's members, as the client gives them: str (it decodes responses)."""
    return list(values)


def oldest(per_shard: list[list[tuple[str, float]]], limit: int) -> list[str]:
    """The `limit` lowest-scored ids over every shard's (id, score) list (each sorted by score)."""
    merged = heapq.merge(*per_shard, key=lambda pair: pair[1])
    return [upload_id for upload_id, _ in list(merged)[:limit]]


class RedisConnection:
    """The client, layout and scripts runner; `RedisFinals` and `RedisStateStore` build on it."""

    def __init__(
        self,
        client: RedisClient,
        *,
        prefix: str = "tusd-py:",
        layout: KeyLayout | None = None,
        min_replicas: int = 0,
        wait_ms: int = 1000,
    ) -> None:
        self.client = client
        self.layout = layout or KeyLayout(prefix)
        self.prefix = self.layout.prefix
        self._clustered = self.layout.clustered
        self._waiting_prefix = "" if self._clustered else self.prefix  # what the scripts build `waiting:` keys from
        self.scripts = Scripts(client, min_replicas=min_replicas, wait_ms=wait_ms)
        self._register_scripts()

    def _register_scripts(self) -> None:
        """Register the Lua of each part of the store with `self.scripts` (finals.py, store.py)."""

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "tusd-py:",
        timeout: float = 2.0,
        min_replicas: int = 0,
        shards: int = DEFAULT_SHARDS,
    ) -> Self:
        """Any URL form of `redis_connect`; every call ends within a known time (a prompt 503).
        WAIT gets half the timeout, so that it ends before the socket's read does."""
        layout = KeyLayout(prefix, clustered=is_clustered(url), shards=shards)
        wait_ms = max(1, int(timeout * 500))
        return cls(connect(url, timeout=timeout), layout=layout, min_replicas=min_replicas, wait_ms=wait_ms)

    def key(self, upload_id: str) -> str:
        return self.layout.upload(upload_id)

    def _settle_arg(self, upload_id: str) -> str:
        """`settle`'s argument: the key prefix on one Redis, the upload's group's `settle:` set on a Cluster."""
        return self.layout.settle(self.layout.shard_of(upload_id)) if self._clustered else self.prefix

    def _ready(self, final_id: str) -> str:
        return self.layout.ready(self.layout.shard_of(final_id))

    def _expiry(self, upload_id: str) -> str:
        return self.layout.expiry(self.layout.shard_of(upload_id))

    def _finals(self, upload_id: str) -> str:
        return self.layout.finals(self.layout.shard_of(upload_id))

    def locker(self) -> RedisLocker:
        """The locker that goes with this store: its acquiring script also reads the upload's
        record (one round trip for both, taken by `get`), on this store's kept connections."""
        return RedisLocker(self.client, layout=self.layout, preload=self.key, scripts=self.scripts)

    async def ping(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        await self.scripts.close()
        await close(self.client)
