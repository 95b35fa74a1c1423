"""The Redis state store, shared by every instance: records, offsets, claims, lengths, expiry.

Layout (all keys under one prefix; the names in `redis_keys.py`):
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
does. On one Redis (standalone or Sentinel) the scripts that forget a final upload's waits
build the `waiting:` keys from its `parts` field, and those that settle a part build the
keys of the finals waiting on it (`finals._SETTLE`): the settle is part of the atomic step.

The concatenation half (final uploads, and what a part's change settles; on a
Redis Cluster, what crosses hash slots) is `RedisFinals` (finals.py), which this
store extends: the scripts here that finish, expire or delete a part run its `settle`.

`--redis-min-replicas N`: creations, offset commits and length declarations wait for N
replicas (`Scripts`, WAIT) before the caller is answered.
"""

from __future__ import annotations

import functools
import inspect
import time
from typing import Any, Awaitable, Callable, TypeVar

from redis.exceptions import RedisError

from tusd_py.locks.base import Fence, Lock, LockLost
from tusd_py.locks.redis import RedisFence, RedisLease
from tusd_py.state.base import StateUnavailable, Upload
from tusd_py.state.redis.connection import TOMBSTONE_SECONDS, oldest, texts
from tusd_py.state.redis.finals import FORGET_WAITS, RedisFinals

C = TypeVar("C")


def _unavailable_on_redis_errors(cls: type[C]) -> type[C]:
    """Every public coroutine of the store raises StateUnavailable for a RedisError, as
    every state store does whatever its backend (errors.py answers it with a 503)."""

    def wrap(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return await method(*args, **kwargs)
            except RedisError as exc:
                raise StateUnavailable(f"Redis: {exc}") from exc

        return call

    for name in dir(cls):  # its own and those it inherits (RedisFinals, RedisConnection)
        member = getattr(cls, name)
        if not name.startswith("_") and name != "close" and inspect.iscoroutinefunction(member):
            setattr(cls, name, wrap(member))
    return cls


_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
if ARGV[2] ~= '' then redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1]) end
return 1
"""

# KEYS: record, expiry set[, lock]. ARGV: expected, new, expires ('' = never), id,
# claim field ('' = none), settle's argument (`_settling`)[, lock token[, '1' = let go of the lock
# when this finishes the upload ('' = not), channel ('' = nobody asked), message, PUBLISH or
# SPUBLISH, lock TTL ms]]. Returns the stored offset, -1 if gone, -2 if the lock (the fence) is no
# longer the committer's. A fenced commit whose token matches extends the lock key's TTL, as the
# lease's renewal does (`locks/redis.py`): a holder that commits needs no renewal. A stale holder's
# finds another token, or no key at all once it expired, and neither commits nor extends.
# The offset only moves forward, from exactly `expected`, and never past the length. A commit
# that finishes the upload also records the claim (one round trip for both, see
# StateStore.commit_offset), its value the lock's token when fenced; one that finishes a partial
# upload settles the waits on it. One that lets go of the lock deletes it as the release script
# does (`locks/redis.py`) whenever it returns `new` (the record finished at `new`): one round trip
# for the commit and the release. Tried again after a lost reply, the claim holding our token says
# that the earlier try was ours and went through (and let go of the lock already).
_COMMIT = """
if KEYS[3] and redis.call('GET', KEYS[3]) ~= ARGV[7] then
  if ARGV[8] == '1' and ARGV[5] ~= '' and redis.call('HGET', KEYS[1], ARGV[5]) == ARGV[7] then return tonumber(ARGV[2]) end
  return -2
end
if ARGV[12] then redis.call('PEXPIRE', KEYS[3], ARGV[12]) end
local function let_go()
  if ARGV[8] ~= '1' then return end
  redis.call('DEL', KEYS[3])
  if ARGV[9] ~= '' then redis.call(ARGV[11], ARGV[9], ARGV[10]) end
end
local cur = redis.call('HMGET', KEYS[1], 'offset', 'state', 'length', 'partial')
if not cur[1] or cur[2] == 'expired' then return -1 end
if cur[1] ~= ARGV[1] then
  if cur[1] == ARGV[2] and cur[3] == ARGV[2] then let_go() end
  return tonumber(cur[1])
end
local new = tonumber(ARGV[2])
if new < tonumber(cur[1]) or (cur[3] ~= '' and new > tonumber(cur[3])) then return tonumber(cur[1]) end
local state = 'uploading'
if cur[3] == ARGV[2] then state = 'finished' end
redis.call('HSET', KEYS[1], 'offset', ARGV[2], 'expires', ARGV[3], 'state', state)
if state == 'finished' and ARGV[5] ~= '' then redis.call('HSETNX', KEYS[1], ARGV[5], ARGV[7] or '1') end
if state == 'finished' and cur[4] == '1' then settle(ARGV[6], ARGV[4]) end
if ARGV[3] == '' then redis.call('ZREM', KEYS[2], ARGV[4]) else redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4]) end
if state == 'finished' then let_go() end
return tonumber(ARGV[2])
"""

# KEYS: record, expiry set. ARGV: length, id, settle's argument. Sets a deferred length once, never
# below the offset; a length equal to the offset finishes the upload, which then never expires.
_DECLARE_LENGTH = """
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

# ARGV: now, id, tombstone seconds, settle's argument. ZREM is the claim: only one caller, on any instance, wins it.
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
if redis.call('HGET', KEYS[1], 'partial') == '1' then settle(ARGV[4], ARGV[2]) end
return 1
"""


# ARGV: the claim's field name. The claim is a field of the upload's hash: it goes with the record.
_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HSETNX', KEYS[1], ARGV[1], '1')
"""

# KEYS: upload, finals, ready, unsettled:<id>, expiry. ARGV: id, key prefix, settle's argument.
_DELETE = FORGET_WAITS + """
local cur = redis.call('HMGET', KEYS[1], 'parts', 'partial')
forget_waits(cur[1])
redis.call('ZREM', KEYS[5], ARGV[1])
local deleted = redis.call('DEL', KEYS[1])
if cur[2] == '1' then settle(ARGV[3], ARGV[1]) end
return deleted
"""


def _claim_field(event: str) -> str:
    return f"claimed:{event}"


@_unavailable_on_redis_errors
class RedisStateStore(RedisFinals):
    name = "Redis"

    def _register_scripts(self) -> None:
        super()._register_scripts()
        self._create = self.scripts.register(_CREATE, durable=True)
        self._commit = self.scripts.register(self._settling(_COMMIT), durable=True)
        self._declare_length = self.scripts.register(self._settling(_DECLARE_LENGTH), durable=True)
        self._expect_length = self.scripts.register(_EXPECT_LENGTH)
        self._mark_expired = self.scripts.register(self._settling(_MARK_EXPIRED))
        self._claim = self.scripts.register(_CLAIM)
        self._record_digests = self.scripts.register(_RECORD_DIGESTS)
        self._delete = self.scripts.register(self._settling(_DELETE))

    async def create(self, upload: Upload) -> bool:
        fields = upload.to_fields()
        flat: list[Any] = [item for pair in fields.items() for item in pair]
        keys = [self.key(upload.id), self._expiry(upload.id)]
        created = await self._create(keys=keys, args=[upload.id, fields["expires"], *flat])
        return bool(created)

    async def get(self, upload_id: str, *, lock: Lock | None = None) -> Upload | None:
        fields: dict[str, str] | None = None
        if isinstance(lock, RedisLease) and lock.record is not None:
            # read by the lock's acquiring script (RedisLocker preload): no round trip
            fields, lock.record = lock.record, None  # a snapshot: good once, right after acquiring
        else:
            fields = await self.client.hgetall(self.key(upload_id))  # type: ignore[assignment]  # decode_responses
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
        expiry = "" if expires is None else repr(expires)
        args = [str(expected), str(new), expiry, upload_id, _claim_field(claim) if claim else "", self._settle_arg(upload_id)]
        if fence is not None:
            keys.append(fence.key)
            args.append(fence.token)
        # The commit that finishes a whole upload (the one with the finish claim) lets go of its
        # lock too: nothing after it needs the lock (`locks/redis.py`). A partial upload's carries
        # no claim, and its hold releases the lock as before. Every one extends the lease.
        lease = fence.lease if isinstance(fence, RedisFence) else None
        lets_go = lease is not None and claim is not None
        if lease is not None:
            args += [*(["1", *lease.release_args()] if lets_go else ["", "", "", ""]), lease.extension_ttl()]
        sent = time.monotonic()
        stored = await self._settled(upload_id, await self._commit(keys=keys, args=args))
        if stored == -2:
            raise LockLost(upload_id)
        if lease is not None and lets_go and stored == new:
            lease.let_go_by_commit()
        elif lease is not None:  # the token was ours: the script extended the key
            lease.extended_at(sent)
        return None if stored < 0 else int(stored)

    async def declare_length(self, upload_id: str, length: int) -> bool:
        keys = [self.key(upload_id), self._expiry(upload_id)]
        declared = await self._declare_length(keys=keys, args=[str(length), upload_id, self._settle_arg(upload_id)])
        declared = await self._settled(upload_id, declared)
        return bool(declared)

    async def expect_length(self, upload_id: str, length: int) -> bool:
        return bool(await self._expect_length(keys=[self.key(upload_id)], args=[str(length)]))

    async def record_digests(self, upload_id: str, digests: str) -> bool:
        return bool(await self._record_digests(keys=[self.key(upload_id)], args=[digests]))

    async def claim(self, upload_id: str, event: str) -> bool:
        return bool(await self._claim(keys=[self.key(upload_id)], args=[_claim_field(event)]))

    async def delete(self, upload_id: str) -> bool:
        parts = await self._parts_of(upload_id)
        keys = [self.key(upload_id), self._finals(upload_id), self._ready(upload_id), self.layout.unsettled(upload_id)]
        keys.append(self._expiry(upload_id))
        deleted = await self._delete(keys=keys, args=[upload_id, self._waiting_prefix, self._settle_arg(upload_id)])
        deleted = await self._settled(upload_id, deleted)
        await self._forget_waits(upload_id, parts)
        return bool(deleted)

    async def due_for_expiry(self, now: float, limit: int) -> list[str]:
        if not self._clustered:
            return texts(await self.client.zrangebyscore(self.layout.expiry(0), "-inf", now, start=0, num=limit))
        pipe = self.client.pipeline(transaction=False)
        for shard in range(self.layout.shards):
            pipe.zrangebyscore(self.layout.expiry(shard), "-inf", now, start=0, num=limit, withscores=True)
        return oldest(await pipe.execute(), limit)

    async def mark_expired(self, upload_id: str, now: float) -> bool:
        keys = [self.key(upload_id), self._expiry(upload_id)]
        marked = await self._mark_expired(keys=keys, args=[repr(now), upload_id, TOMBSTONE_SECONDS, self._settle_arg(upload_id)])
        marked = await self._settled(upload_id, marked)
        return bool(marked)

    async def forget_tombstones(self, before: float) -> int:
        return 0  # tombstone keys carry their own TTL (see _MARK_EXPIRED)
