"""The Redis state store, shared by every instance.

Layout (all keys under one prefix; the names in `redis_keys.py`):
- `<prefix>upload:<id>`: a hash with the fields of `Upload.to_fields`;
- `<prefix>expiry`: a sorted set of unfinished upload ids scored by expiry time;
- `<prefix>finals`: a sorted set of final uploads not yet assembled, scored by creation time;
- `<prefix>waiting:<part id>`: a set of the final uploads not yet assembled that list that part.
Every change is one round trip: a Lua script or a MULTI pipeline. The Lua spells
the lifecycle states ('uploading', 'finished', 'expired') as `state/base.py`
does. On one Redis the scripts that forget a final upload's waits build the
`waiting:` keys from its `parts` field.

On a Redis Cluster each upload's keys and its group's slice of the indexes share one
hash slot (`KeyLayout`), so every script still touches one slot; the indexes are read
group by group (one pipeline, one round trip per master). A final upload's parts may be
in other groups: their `waiting:` sets are written after the final's record is created
(and cleaned after it is finished or dropped) as separate commands. A crash between
the two leaves a final that the sweeper's `pending_finals` pass still completes, or a
`waiting:` entry naming a final that is done, which `concat` takes for what it is.

`--redis-min-replicas N`: creations, offset commits and length declarations wait for N
replicas (`Scripts`, WAIT) before the caller is answered.
"""

from __future__ import annotations

import heapq
from typing import Any, Sequence

from tusd_py.locks.base import Fence, Lock, LockLost
from tusd_py.redis_connect import RedisClient, close, connect, is_clustered
from tusd_py.redis_keys import DEFAULT_SHARDS, KeyLayout
from tusd_py.redis_scripts import Scripts
from tusd_py.state.base import Upload

TOMBSTONE_SECONDS = 7 * 24 * 3600

_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
if ARGV[2] ~= '' then redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1]) end
return 1
"""

# KEYS: record, expiry set[, lock]. ARGV: expected, new, expires ('' = never), id,
# claim field ('' = none)[, lock token]. Returns the stored offset, -1 if gone, -2 if the
# lock (the fence) is no longer the committer's. The offset only moves forward, from
# exactly `expected`, and never past the length. A commit that finishes the upload
# also records the claim (one round trip for both, see StateStore.commit_offset).
_COMMIT = """
if KEYS[3] and redis.call('GET', KEYS[3]) ~= ARGV[6] then return -2 end
local cur = redis.call('HMGET', KEYS[1], 'offset', 'state', 'length')
if not cur[1] or cur[2] == 'expired' then return -1 end
if cur[1] ~= ARGV[1] then return tonumber(cur[1]) end
local new = tonumber(ARGV[2])
if new < tonumber(cur[1]) or (cur[3] ~= '' and new > tonumber(cur[3])) then return tonumber(cur[1]) end
local state = 'uploading'
if cur[3] == ARGV[2] then state = 'finished' end
redis.call('HSET', KEYS[1], 'offset', ARGV[2], 'expires', ARGV[3], 'state', state)
if state == 'finished' and ARGV[5] ~= '' then redis.call('HSETNX', KEYS[1], ARGV[5], '1') end
if ARGV[3] == '' then redis.call('ZREM', KEYS[2], ARGV[4]) else redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4]) end
return tonumber(ARGV[2])
"""

# KEYS: record, expiry set. ARGV: length, id. Sets a deferred length once, never below
# the offset; a length equal to the offset finishes the upload, which then never expires.
_DECLARE_LENGTH = """
local cur = redis.call('HMGET', KEYS[1], 'offset', 'length', 'state')
if not cur[1] or cur[2] ~= '' or cur[3] == 'expired' then return 0 end
if tonumber(cur[1]) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'length', ARGV[1])
if cur[1] == ARGV[1] then
  redis.call('HSET', KEYS[1], 'state', 'finished', 'expires', '')
  redis.call('ZREM', KEYS[2], ARGV[2])
end
return 1
"""

# ARGV: length. Records a draft client's announced length once, never below the offset.
_EXPECT_LENGTH = """
local cur = redis.call('HMGET', KEYS[1], 'offset', 'expected_length', 'state')
if not cur[1] or (cur[2] and cur[2] ~= '') or cur[3] == 'expired' then return 0 end
if tonumber(cur[1]) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'expected_length', ARGV[1])
return 1
"""

# ARGV: now, id, tombstone seconds. ZREM is the claim: only one caller, on any instance, wins it.
_MARK_EXPIRED = """
local expires = redis.call('HGET', KEYS[1], 'expires')
if not expires or expires == '' or tonumber(expires) > tonumber(ARGV[1]) then
  redis.call('ZREM', KEYS[2], ARGV[2])
  return 0
end
if redis.call('ZREM', KEYS[2], ARGV[2]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'state') == 'expired' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'expired')
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


# ARGV: the claim's field name. The claim is a field of the upload's hash: it goes with the record.
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HSETNX', KEYS[1], ARGV[1], '1')
"""

# KEYS: upload, finals, waiting:<part> for each distinct part. ARGV: id, created, fields...
_CREATE_FINAL = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
for i = 3, #KEYS do redis.call('SADD', KEYS[i], ARGV[1]) end
return 1
"""

# Forgets what a final upload waits on. ARGV[1]: id, ARGV[2]: the `waiting:` key prefix.
_FORGET_WAITS = """
local function forget_waits(parts)
  redis.call('ZREM', KEYS[2], ARGV[1])
  if parts and ARGV[2] ~= '' then  -- '' (a Redis Cluster): the caller forgets them
    for part in string.gmatch(parts, '%S+') do redis.call('SREM', ARGV[2] .. part, ARGV[1]) end
  end
end
"""

# KEYS: upload, finals. ARGV: id, waiting prefix. The claim of a finished assembly.
_FINISH_FINAL = _FORGET_WAITS + """
local cur = redis.call('HMGET', KEYS[1], 'state', 'length', 'parts')
if not cur[1] or cur[1] == 'finished' or cur[1] == 'expired' or not cur[3] or cur[3] == '' or cur[2] == '' then
  return 0
end
redis.call('HSET', KEYS[1], 'offset', cur[2], 'state', 'finished', 'expires', '')
forget_waits(cur[3])
return 1
"""

# KEYS: upload, finals. ARGV: id, waiting prefix, now, tombstone seconds.
_DROP_FINAL = _FORGET_WAITS + """
local cur = redis.call('HMGET', KEYS[1], 'state', 'parts')
forget_waits(cur[2])
if not cur[1] or cur[1] == 'finished' or cur[1] == 'expired' or not cur[2] or cur[2] == '' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'expired', 'expires', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""

# KEYS: upload, finals, expiry. ARGV: id, waiting prefix.
_DELETE = _FORGET_WAITS + """
local parts = redis.call('HGET', KEYS[1], 'parts')
forget_waits(parts)
redis.call('ZREM', KEYS[3], ARGV[1])
return redis.call('DEL', KEYS[1])
"""


def _claim_field(event: str) -> str:
    return f"claimed:{event}"


class RedisStateStore:
    name = "Redis"

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
        self._waiting_prefix = "" if self._clustered else self.layout.waiting("")
        self.scripts = Scripts(client, min_replicas=min_replicas, wait_ms=wait_ms)
        self._create = self.scripts.register(_CREATE, durable=True)
        self._commit = self.scripts.register(_COMMIT, durable=True)
        self._declare_length = self.scripts.register(_DECLARE_LENGTH, durable=True)
        self._expect_length = self.scripts.register(_EXPECT_LENGTH)
        self._mark_expired = self.scripts.register(_MARK_EXPIRED)
        self._claim = self.scripts.register(_CLAIM)
        self._create_final = self.scripts.register(_CREATE_FINAL, durable=True)
        self._finish_final = self.scripts.register(_FINISH_FINAL)
        self._drop_final = self.scripts.register(_DROP_FINAL)
        self._delete = self.scripts.register(_DELETE)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "tusd-py:",
        timeout: float = 2.0,
        min_replicas: int = 0,
        shards: int = DEFAULT_SHARDS,
    ) -> RedisStateStore:
        """Any URL form of `redis_connect`; every call ends within a known time (a prompt 503).
        WAIT gets half the timeout, so that it ends before the socket's read does."""
        layout = KeyLayout(prefix, clustered=is_clustered(url), shards=shards)
        wait_ms = max(1, int(timeout * 500))
        return cls(connect(url, timeout=timeout), layout=layout, min_replicas=min_replicas, wait_ms=wait_ms)

    def key(self, upload_id: str) -> str:
        return self.layout.upload(upload_id)

    def _expiry(self, upload_id: str) -> str:
        return self.layout.expiry(self.layout.shard_of(upload_id))

    def _finals(self, upload_id: str) -> str:
        return self.layout.finals(self.layout.shard_of(upload_id))

    async def create(self, upload: Upload) -> bool:
        fields = upload.to_fields()
        flat: list[Any] = [item for pair in fields.items() for item in pair]
        created = await self._create(keys=[self.key(upload.id), self._expiry(upload.id)], args=[upload.id, fields["expires"], *flat])
        return bool(created)

    async def get(self, upload_id: str, *, lock: Lock | None = None) -> Upload | None:
        fields = getattr(lock, "record", None)
        if fields is not None:  # read by the lock's acquiring script (RedisLocker preload): no round trip
            lock.record = None  # type: ignore[union-attr]  # a snapshot: good once, right after acquiring
        else:
            fields = await self.client.hgetall(self.key(upload_id))
        return Upload.from_fields(fields) if fields else None

    async def commit_offset(
        self,
        upload_id: str,
        expected: int,
        new: int,
        expires: float | None,
        *,
        fence: Fence | None = None,
        claim: str | None = None,
    ) -> int | None:
        keys = [self.key(upload_id), self._expiry(upload_id)]
        args = [str(expected), str(new), "" if expires is None else repr(expires), upload_id, _claim_field(claim) if claim else ""]
        if fence is not None:
            keys.append(fence.key)
            args.append(fence.token)
        stored = await self._commit(keys=keys, args=args)
        if stored == -2:
            raise LockLost(upload_id)
        return None if stored < 0 else int(stored)

    async def declare_length(self, upload_id: str, length: int) -> bool:
        declared = await self._declare_length(keys=[self.key(upload_id), self._expiry(upload_id)], args=[str(length), upload_id])
        return bool(declared)

    async def expect_length(self, upload_id: str, length: int) -> bool:
        return bool(await self._expect_length(keys=[self.key(upload_id)], args=[str(length)]))

    async def claim(self, upload_id: str, event: str) -> bool:
        return bool(await self._claim(keys=[self.key(upload_id)], args=[_claim_field(event)]))

    async def delete(self, upload_id: str) -> bool:
        parts = await self._parts_before_forgetting(upload_id)
        deleted = await self._delete(
            keys=[self.key(upload_id), self._finals(upload_id), self._expiry(upload_id)], args=[upload_id, self._waiting_prefix]
        )
        await self._forget_waits(upload_id, parts)
        return bool(deleted)

    async def due_for_expiry(self, now: float, limit: int) -> list[str]:
        if not self._clustered:
            return list(await self.client.zrangebyscore(self.layout.expiry(0), "-inf", now, start=0, num=limit))
        pipe = self.client.pipeline(transaction=False)
        for shard in range(self.layout.shards):
            pipe.zrangebyscore(self.layout.expiry(shard), "-inf", now, start=0, num=limit, withscores=True)
        return _oldest(await pipe.execute(), limit)

    async def mark_expired(self, upload_id: str, now: float) -> bool:
        marked = await self._mark_expired(
            keys=[self.key(upload_id), self._expiry(upload_id)], args=[repr(now), upload_id, TOMBSTONE_SECONDS]
        )
        return bool(marked)

    async def forget_tombstones(self, before: float) -> int:
        return 0  # tombstone keys carry their own TTL (see _MARK_EXPIRED)

    async def create_final(self, upload: Upload) -> bool:
        fields = upload.to_fields()
        flat: list[Any] = [item for pair in fields.items() for item in pair]
        waiting = [self.layout.waiting(part) for part in sorted(set(upload.parts))]
        created = await self._create_final(
            keys=[self.key(upload.id), self._finals(upload.id), *([] if self._clustered else waiting)],
            args=[upload.id, fields["created"], *flat],
        )
        if created and self._clustered:  # the parts' sets are in other slots: after the record
            pipe = self.client.pipeline(transaction=False)
            for key in waiting:
                pipe.sadd(key, upload.id)
            await pipe.execute()
        return bool(created)

    async def finals_waiting_on(self, part_id: str) -> list[str]:
        return sorted(await self.client.smembers(self.layout.waiting(part_id)))

    async def pending_finals(self, limit: int) -> list[str]:
        if not self._clustered:
            return list(await self.client.zrange(self.layout.finals(0), 0, limit - 1))
        pipe = self.client.pipeline(transaction=False)
        for shard in range(self.layout.shards):
            pipe.zrange(self.layout.finals(shard), 0, limit - 1, withscores=True)
        return _oldest(await pipe.execute(), limit)

    async def finish_final(self, final_id: str) -> bool:
        parts = await self._parts_before_forgetting(final_id)
        finished = await self._finish_final(
            keys=[self.key(final_id), self._finals(final_id)], args=[final_id, self._waiting_prefix]
        )
        await self._forget_waits(final_id, parts)
        return bool(finished)

    async def drop_final(self, final_id: str, now: float) -> bool:
        parts = await self._parts_before_forgetting(final_id)
        dropped = await self._drop_final(
            keys=[self.key(final_id), self._finals(final_id)],
            args=[final_id, self._waiting_prefix, repr(now), TOMBSTONE_SECONDS],
        )
        await self._forget_waits(final_id, parts)
        return bool(dropped)

    async def _parts_before_forgetting(self, upload_id: str) -> list[str]:
        """On a Cluster: the parts whose `waiting:` sets name this upload (the scripts cannot reach them)."""
        if not self._clustered:
            return []
        return sorted(set((await self.client.hget(self.key(upload_id), "parts") or "").split()))

    async def _forget_waits(self, final_id: str, parts: Sequence[str]) -> None:
        if parts:
            pipe = self.client.pipeline(transaction=False)
            for part in parts:
                pipe.srem(self.layout.waiting(part), final_id)
            await pipe.execute()

    async def ping(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        await self.scripts.close()
        await close(self.client)


def _oldest(per_shard: list[list[tuple[str, float]]], limit: int) -> list[str]:
    """The `limit` lowest-scored ids over every shard's (id, score) list (each sorted by score)."""
    merged = heapq.merge(*per_shard, key=lambda pair: pair[1])
    return [upload_id for upload_id, _ in list(merged)[:limit]]
