"""The Redis state store, shared by every instance.

Layout (all keys under one prefix):
- `<prefix>upload:<id>`: a hash with the fields of `Upload.to_fields`;
- `<prefix>expiry`: a sorted set of unfinished upload ids scored by expiry time;
- `<prefix>finals`: a sorted set of final uploads not yet assembled, scored by creation time;
- `<prefix>waiting:<part id>`: a set of the final uploads not yet assembled that list that part;
- `<prefix>unsettled:<final id>`: the final's parts not yet finished, expired or gone;
- `<prefix>ready`: a set of the final uploads not yet assembled whose `unsettled:` set is empty
  (a final's hash has `settles` once its `unsettled:` set is kept: finals stored by releases
  before it are adopted, once per process, by the first `ready_finals`).
Every change is one round trip: a Lua script or a MULTI pipeline. The Lua spells
the lifecycle states ('uploading', 'finished', 'expired') as `state/base.py`
does. The scripts that forget a final upload's waits build the `waiting:` keys from
its `parts` field, and those that settle a part build the keys of the finals waiting
on it, so this layout is for a standalone Redis (or one hash slot).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from tusd_py.locks.base import Fence, Lock, LockLost
from tusd_py.redis_scripts import Scripts
from tusd_py.state.base import Upload

TOMBSTONE_SECONDS = 7 * 24 * 3600
RETRIES = 1  # a call is tried again once after a connection error or timeout
ADOPT_BATCH = 500

_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
if ARGV[2] ~= '' then redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1]) end
return 1
"""

# The part ARGV names (by id) is finished, expired or gone: settle the waits on it (see
# `StateStore.finals_ready`); a final with no unsettled part left becomes ready. `prefix`: the key prefix.
_SETTLE = """
local function settle(prefix, id)
  for _, final in ipairs(redis.call('SMEMBERS', prefix .. 'waiting:' .. id)) do
    local key = prefix .. 'unsettled:' .. final
    if redis.call('SREM', key, id) == 1 and redis.call('SCARD', key) == 0 then
      redis.call('SADD', prefix .. 'ready', final)
    end
  end
end
"""

# KEYS: record, expiry set[, lock]. ARGV: expected, new, expires ('' = never), id,
# claim field ('' = none), key prefix[, lock token]. Returns the stored offset, -1 if gone, -2 if the
# lock (the fence) is no longer the committer's. The offset only moves forward, from
# exactly `expected`, and never past the length. A commit that finishes the upload
# also records the claim (one round trip for both, see StateStore.commit_offset), and
# one that finishes a partial upload settles the waits on it.
_COMMIT = _SETTLE + """
if KEYS[3] and redis.call('GET', KEYS[3]) ~= ARGV[7] then return -2 end
local cur = redis.call('HMGET', KEYS[1], 'offset', 'state', 'length', 'partial')
if not cur[1] or cur[2] == 'expired' then return -1 end
if cur[1] ~= ARGV[1] then return tonumber(cur[1]) end
local new = tonumber(ARGV[2])
if new < tonumber(cur[1]) or (cur[3] ~= '' and new > tonumber(cur[3])) then return tonumber(cur[1]) end
local state = 'uploading'
if cur[3] == ARGV[2] then state = 'finished' end
redis.call('HSET', KEYS[1], 'offset', ARGV[2], 'expires', ARGV[3], 'state', state)
if state == 'finished' and ARGV[5] ~= '' then redis.call('HSETNX', KEYS[1], ARGV[5], '1') end
if state == 'finished' and cur[4] == '1' then settle(ARGV[6], ARGV[4]) end
if ARGV[3] == '' then redis.call('ZREM', KEYS[2], ARGV[4]) else redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4]) end
return tonumber(ARGV[2])
"""

# KEYS: record, expiry set. ARGV: length, id, key prefix. Sets a deferred length once, never
# below the offset; a length equal to the offset finishes the upload, which then never expires.
_DECLARE_LENGTH = _SETTLE + """
local cur = redis.call('HMGET', KEYS[1], 'offset', 'length', 'state', 'partial')
if not cur[1] or cur[2] ~= '' or cur[3] == 'expired' then return 0 end
if tonumber(cur[1]) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'length', ARGV[1])
if cur[1] == ARGV[1] then
  redis.call('HSET', KEYS[1], 'state', 'finished', 'expires', '')
  redis.call('ZREM', KEYS[2], ARGV[2])
  if cur[4] == '1' then settle(ARGV[3], ARGV[2]) end
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

# ARGV: digests. Kept only with a record that is complete (its bytes never change again).
_RECORD_DIGESTS = """
if redis.call('HGET', KEYS[1], 'state') ~= 'finished' then return 0 end
redis.call('HSET', KEYS[1], 'digests', ARGV[1])
return 1
"""

# ARGV: now, id, tombstone seconds, key prefix. ZREM is the claim: only one caller, on any instance, wins it.
_MARK_EXPIRED = _SETTLE + """
local expires = redis.call('HGET', KEYS[1], 'expires')
if not expires or expires == '' or tonumber(expires) > tonumber(ARGV[1]) then
  redis.call('ZREM', KEYS[2], ARGV[2])
  return 0
end
if redis.call('ZREM', KEYS[2], ARGV[2]) == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'state') == 'expired' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'expired')
redis.call('EXPIRE', KEYS[1], ARGV[3])
if redis.call('HGET', KEYS[1], 'partial') == '1' then settle(ARGV[4], ARGV[2]) end
return 1
"""


# ARGV: the claim's field name. The claim is a field of the upload's hash: it goes with the record.
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HSETNX', KEYS[1], ARGV[1], '1')
"""

# KEYS: upload, finals, ready, unsettled:<id>, then waiting:<part> and upload:<part> for each
# distinct part. ARGV: id, created, the distinct part ids (space-separated, in KEYS' order),
# fields... A part not finished or expired yet (and not gone) is unsettled.
_CREATE_FINAL = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
local i = 5
for part in string.gmatch(ARGV[3], '%S+') do
  redis.call('SADD', KEYS[i], ARGV[1])
  local state = redis.call('HGET', KEYS[i + 1], 'state')
  if state and state ~= 'finished' and state ~= 'expired' then redis.call('SADD', KEYS[4], part) end
  i = i + 2
end
redis.call('HSET', KEYS[1], 'settles', '1')
if redis.call('SCARD', KEYS[4]) == 0 then redis.call('SADD', KEYS[3], ARGV[1]) end
return 1
"""

# KEYS: upload, ready, unsettled:<id>. ARGV: id, key prefix. A final stored by an older
# release (no `settles`): build its unsettled set from its parts' records, as _CREATE_FINAL does.
_ADOPT = """
if redis.call('HEXISTS', KEYS[1], 'settles') == 1 then return 0 end
local cur = redis.call('HMGET', KEYS[1], 'state', 'parts')
if cur[1] ~= 'created' or not cur[2] or cur[2] == '' then return 0 end
for part in string.gmatch(cur[2], '%S+') do
  local state = redis.call('HGET', ARGV[2] .. 'upload:' .. part, 'state')
  if state and state ~= 'finished' and state ~= 'expired' then redis.call('SADD', KEYS[3], part) end
end
redis.call('HSET', KEYS[1], 'settles', '1')
if redis.call('SCARD', KEYS[3]) == 0 then redis.call('SADD', KEYS[2], ARGV[1]) end
return 1
"""

# Forgets what a final upload waits on. ARGV[1]: id, ARGV[2]: the key prefix.
_FORGET_WAITS = """
local function forget_waits(parts)
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('SREM', ARGV[2] .. 'ready', ARGV[1])
  redis.call('DEL', ARGV[2] .. 'unsettled:' .. ARGV[1])
  if parts then
    for part in string.gmatch(parts, '%S+') do redis.call('SREM', ARGV[2] .. 'waiting:' .. part, ARGV[1]) end
  end
end
"""

# KEYS: upload, finals. ARGV: id, key prefix. The claim of a finished assembly.
_FINISH_FINAL = _FORGET_WAITS + """
local cur = redis.call('HMGET', KEYS[1], 'state', 'length', 'parts')
if not cur[1] or cur[1] == 'finished' or cur[1] == 'expired' or not cur[3] or cur[3] == '' or cur[2] == '' then
  return 0
end
redis.call('HSET', KEYS[1], 'offset', cur[2], 'state', 'finished', 'expires', '')
forget_waits(cur[3])
return 1
"""

# KEYS: upload, finals. ARGV: id, key prefix, now, tombstone seconds.
_DROP_FINAL = _FORGET_WAITS + """
local cur = redis.call('HMGET', KEYS[1], 'state', 'parts')
forget_waits(cur[2])
if not cur[1] or cur[1] == 'finished' or cur[1] == 'expired' or not cur[2] or cur[2] == '' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'expired', 'expires', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""

# KEYS: upload, finals, expiry. ARGV: id, key prefix.
_DELETE = _FORGET_WAITS + _SETTLE + """
local cur = redis.call('HMGET', KEYS[1], 'parts', 'partial')
forget_waits(cur[1])
redis.call('ZREM', KEYS[3], ARGV[1])
local deleted = redis.call('DEL', KEYS[1])
if cur[2] == '1' then settle(ARGV[2], ARGV[1]) end
return deleted
"""


def _claim_field(event: str) -> str:
    return f"claimed:{event}"


class RedisStateStore:
    name = "Redis"

    def __init__(self, client: aioredis.Redis, *, prefix: str = "tusd-py:") -> None:
        self.client = client
        self.prefix = prefix
        self._expiry_key = f"{prefix}expiry"
        self._finals_key = f"{prefix}finals"
        self._waiting_prefix = f"{prefix}waiting:"
        self._ready_key = f"{prefix}ready"
        self.scripts = Scripts(client)
        self._create = self.scripts.register(_CREATE)
        self._commit = self.scripts.register(_COMMIT)
        self._declare_length = self.scripts.register(_DECLARE_LENGTH)
        self._expect_length = self.scripts.register(_EXPECT_LENGTH)
        self._mark_expired = self.scripts.register(_MARK_EXPIRED)
        self._claim = self.scripts.register(_CLAIM)
        self._record_digests = self.scripts.register(_RECORD_DIGESTS)
        self._create_final = self.scripts.register(_CREATE_FINAL)
        self._finish_final = self.scripts.register(_FINISH_FINAL)
        self._drop_final = self.scripts.register(_DROP_FINAL)
        self._delete = self.scripts.register(_DELETE)
        self._adopt = self.scripts.register(_ADOPT)
        self._adopted = False  # finals of older releases (see the module docstring)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "tusd-py:", timeout: float = 2.0) -> RedisStateStore:
        """A client whose every call ends within a known time when Redis is down or hung:
        about (1 + retries) x timeout plus a short backoff, so requests get a prompt 503."""
        client = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), RETRIES),
        )
        return cls(client, prefix=prefix)

    def key(self, upload_id: str) -> str:
        return f"{self.prefix}upload:{upload_id}"

    async def create(self, upload: Upload) -> bool:
        fields = upload.to_fields()
        flat: list[Any] = [item for pair in fields.items() for item in pair]
        created = await self._create(keys=[self.key(upload.id), self._expiry_key], args=[upload.id, fields["expires"], *flat])
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
        keys = [self.key(upload_id), self._expiry_key]
        expiry = "" if expires is None else repr(expires)
        args = [str(expected), str(new), expiry, upload_id, _claim_field(claim) if claim else "", self.prefix]
        if fence is not None:
            keys.append(fence.key)
            args.append(fence.token)
        stored = await self._commit(keys=keys, args=args)
        if stored == -2:
            raise LockLost(upload_id)
        return None if stored < 0 else int(stored)

    async def declare_length(self, upload_id: str, length: int) -> bool:
        declared = await self._declare_length(keys=[self.key(upload_id), self._expiry_key], args=[str(length), upload_id, self.prefix])
        return bool(declared)

    async def expect_length(self, upload_id: str, length: int) -> bool:
        return bool(await self._expect_length(keys=[self.key(upload_id)], args=[str(length)]))

    async def record_digests(self, upload_id: str, digests: str) -> bool:
        return bool(await self._record_digests(keys=[self.key(upload_id)], args=[digests]))

    async def claim(self, upload_id: str, event: str) -> bool:
        return bool(await self._claim(keys=[self.key(upload_id)], args=[_claim_field(event)]))

    async def delete(self, upload_id: str) -> bool:
        deleted = await self._delete(
            keys=[self.key(upload_id), self._finals_key, self._expiry_key], args=[upload_id, self.prefix]
        )
        return bool(deleted)

    async def due_for_expiry(self, now: float, limit: int) -> list[str]:
        return list(await self.client.zrangebyscore(self._expiry_key, "-inf", now, start=0, num=limit))

    async def mark_expired(self, upload_id: str, now: float) -> bool:
        marked = await self._mark_expired(
            keys=[self.key(upload_id), self._expiry_key], args=[repr(now), upload_id, TOMBSTONE_SECONDS, self.prefix]
        )
        return bool(marked)

    async def forget_tombstones(self, before: float) -> int:
        return 0  # tombstone keys carry their own TTL (see _MARK_EXPIRED)

    async def create_final(self, upload: Upload) -> bool:
        fields = upload.to_fields()
        flat: list[Any] = [item for pair in fields.items() for item in pair]
        parts = sorted(set(upload.parts))
        keys = [self.key(upload.id), self._finals_key, self._ready_key, f"{self.prefix}unsettled:{upload.id}"]
        for part in parts:
            keys += [self._waiting_prefix + part, self.key(part)]
        created = await self._create_final(keys=keys, args=[upload.id, fields["created"], " ".join(parts), *flat])
        return bool(created)

    async def finals_waiting_on(self, part_id: str) -> list[str]:
        return sorted(await self.client.smembers(self._waiting_prefix + part_id))

    async def finals_ready(self, part_id: str) -> list[str]:
        return sorted(await self.client.sinter([self._waiting_prefix + part_id, self._ready_key]))

    async def ready_finals(self, limit: int) -> list[str]:
        if not self._adopted:
            await self._adopt_older_finals()
        return sorted(await self.client.srandmember(self._ready_key, limit) or [])

    async def _adopt_older_finals(self) -> None:
        start = 0
        while batch := await self.client.zrange(self._finals_key, start, start + ADOPT_BATCH - 1):
            for final_id in batch:
                keys = [self.key(final_id), self._ready_key, f"{self.prefix}unsettled:{final_id}"]
                await self._adopt(keys=keys, args=[final_id, self.prefix])
            start += ADOPT_BATCH
        self._adopted = True

    async def pending_finals(self, limit: int) -> list[str]:
        return list(await self.client.zrange(self._finals_key, 0, limit - 1))

    async def finish_final(self, final_id: str) -> bool:
        finished = await self._finish_final(
            keys=[self.key(final_id), self._finals_key], args=[final_id, self.prefix]
        )
        return bool(finished)

    async def drop_final(self, final_id: str, now: float) -> bool:
        dropped = await self._drop_final(
            keys=[self.key(final_id), self._finals_key],
            args=[final_id, self.prefix, repr(now), TOMBSTONE_SECONDS],
        )
        return bool(dropped)

    async def ping(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        await self.scripts.close()
        await self.client.aclose()
