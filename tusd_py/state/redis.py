"""The Redis state store, shared by every instance.

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
keys of the finals waiting on it (`_SETTLE`): the settle is part of the atomic step.

On a Redis Cluster each upload's keys and its group's slice of the indexes share one
hash slot (`KeyLayout`: `upload:{t}<id>`, `waiting:{t}<part>`, `unsettled:{t}<final>`,
`expiry:{t}`, `finals:{t}`, `ready:{t}`, `settle:{t}`), so every script touches one slot;
the indexes are read group by group (one pipeline, one round trip per master). A final
upload's parts may be in other groups, so what crosses groups is split in one-slot steps,
each safe to repeat, with a record of what is owed kept in the same atomic step:
- a part that finishes, expires or is deleted is added to its group's `settle:` set by
  that step's script (`_SETTLE_LATER`, in place of `_SETTLE`), whose reply says so; the
  store then settles each final waiting on it with `_SETTLE_FINAL` in the final's slot and
  clears the entry, before it answers: O(finals waiting on the part), as on one Redis;
- a final is created after its parts' `waiting:` sets name it, with every part unsettled
  and a `settle:` entry of its own; then the parts' states are read and the settled ones
  settled. A part finishing meanwhile is seen by one side or the other (its commit and
  the `waiting:` write are in the same slot, the state read comes after the final exists);
- a crash or a failed call in between leaves the `settle:` entry, which the sweep's
  `ready_finals` pays before it reads the `ready:` sets (settling twice changes nothing);
- the parts' `waiting:` sets of a final that is finished or dropped are cleaned after its
  script; a crash in between leaves a `waiting:` entry naming a final that is done, which
  `concat` takes for what it is.
No release before this one ran on a Cluster, so there is nothing to adopt there.

`--redis-min-replicas N`: creations, offset commits and length declarations wait for N
replicas (`Scripts`, WAIT) before the caller is answered.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import inspect
import logging
from typing import Any, Awaitable, Callable, Sequence, TypeVar

from redis.exceptions import RedisError

from tusd_py.locks.base import Fence, Lock, LockLost
from tusd_py.locks.redis import RedisLease, RedisLocker
from tusd_py.redis_connect import RedisClient, close, connect, is_clustered
from tusd_py.redis_keys import DEFAULT_SHARDS, KeyLayout
from tusd_py.redis_scripts import Scripts
from tusd_py.state.base import StateUnavailable, Upload

C = TypeVar("C")


def _texts(values: Any) -> list[str]:
    """A reply's members, as the client gives them: str (it decodes responses)."""
    return list(values)


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

    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and name != "close" and inspect.iscoroutinefunction(member):
            setattr(cls, name, wrap(member))
    return cls

logger = logging.getLogger("tusd_py.state")

TOMBSTONE_SECONDS = 7 * 24 * 3600
ADOPT_BATCH = 500

_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
if ARGV[2] ~= '' then redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1]) end
return 1
"""

# The part ARGV names (by id) is finished, expired or gone: settle the waits on it (see
# `StateStore.finals_ready`); a final with no unsettled part left becomes ready. `prefix`: the key prefix.
# One Redis: prepended to the scripts that finish, expire or delete an upload (`_settling`).
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

# A Redis Cluster's `settle` (the finals waiting on the part are in other slots): the part's
# group's `settle:` set (`owed`, in the part's slot) records that the settle is owed, and the
# script's reply says so: `{reply}` instead of `reply` (`_settling`; the module docstring).
_SETTLE_LATER = """
local owes = false
local function settle(owed, id)
  redis.call('SADD', owed, 'p:' .. id)
  owes = true
end
"""

# KEYS: record, expiry set[, lock]. ARGV: expected, new, expires ('' = never), id,
# claim field ('' = none), settle's argument (`_settling`)[, lock token]. Returns the stored offset, -1 if gone, -2 if the
# lock (the fence) is no longer the committer's. The offset only moves forward, from
# exactly `expected`, and never past the length. A commit that finishes the upload
# also records the claim (one round trip for both, see StateStore.commit_offset), and
# one that finishes a partial upload settles the waits on it.
_COMMIT = """
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

# The same on a Redis Cluster, where the parts are in other slots. KEYS: upload, finals,
# unsettled:<id>, settle:. ARGV: id, created, the distinct part ids (space-separated), fields...
# Every part starts unsettled; the entry in `settle:` says that the parts' states are still to
# be read (`RedisStateStore._settle_parts`).
_CREATE_FINAL_ON_CLUSTER = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
for part in string.gmatch(ARGV[3], '%S+') do redis.call('SADD', KEYS[3], part) end
redis.call('HSET', KEYS[1], 'settles', '1')
redis.call('SADD', KEYS[4], 'f:' .. ARGV[1])
return 1
"""

# A Redis Cluster: settle one final's waits on the parts ARGV names. KEYS: unsettled:<id>,
# ready. ARGV: id, parts... Returns 1 if the final is ready. A final already finished or
# dropped has no `unsettled:` set: nothing changes.
_SETTLE_FINAL = """
if #ARGV > 1 and redis.call('SREM', KEYS[1], unpack(ARGV, 2)) > 0 and redis.call('SCARD', KEYS[1]) == 0 then
  redis.call('SADD', KEYS[2], ARGV[1])
end
return redis.call('SISMEMBER', KEYS[2], ARGV[1])
"""

# KEYS: upload, ready, unsettled:<id>. ARGV: id, key prefix. One Redis only. A final stored by an older
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

# Forgets what a final upload waits on. KEYS[2]: finals, KEYS[3]: ready, KEYS[4]: unsettled:<id>.
# ARGV[1]: id, ARGV[2]: the key prefix ('' on a Redis Cluster: the caller forgets the parts'
# `waiting:` entries, in their own slots).
_FORGET_WAITS = """
local function forget_waits(parts)
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('SREM', KEYS[3], ARGV[1])
  redis.call('DEL', KEYS[4])
  if parts and ARGV[2] ~= '' then
    for part in string.gmatch(parts, '%S+') do redis.call('SREM', ARGV[2] .. 'waiting:' .. part, ARGV[1]) end
  end
end
"""

# KEYS: upload, finals, ready, unsettled:<id>. ARGV: id, key prefix. The claim of a finished assembly.
_FINISH_FINAL = _FORGET_WAITS + """
local cur = redis.call('HMGET', KEYS[1], 'state', 'length', 'parts')
if not cur[1] or cur[1] == 'finished' or cur[1] == 'expired' or not cur[3] or cur[3] == '' or cur[2] == '' then
  return 0
end
redis.call('HSET', KEYS[1], 'offset', cur[2], 'state', 'finished', 'expires', '')
forget_waits(cur[3])
return 1
"""

# KEYS: upload, finals, ready, unsettled:<id>. ARGV: id, key prefix, now, tombstone seconds.
_DROP_FINAL = _FORGET_WAITS + """
local cur = redis.call('HMGET', KEYS[1], 'state', 'parts')
forget_waits(cur[2])
if not cur[1] or cur[1] == 'finished' or cur[1] == 'expired' or not cur[2] or cur[2] == '' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'expired', 'expires', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""

# KEYS: upload, finals, ready, unsettled:<id>, expiry. ARGV: id, key prefix, settle's argument.
_DELETE = _FORGET_WAITS + """
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
        self._waiting_prefix = "" if self._clustered else self.prefix  # what the scripts build `waiting:` keys from
        self.scripts = Scripts(client, min_replicas=min_replicas, wait_ms=wait_ms)
        self._create = self.scripts.register(_CREATE, durable=True)
        self._commit = self.scripts.register(self._settling(_COMMIT), durable=True)
        self._declare_length = self.scripts.register(self._settling(_DECLARE_LENGTH), durable=True)
        self._expect_length = self.scripts.register(_EXPECT_LENGTH)
        self._mark_expired = self.scripts.register(self._settling(_MARK_EXPIRED))
        self._claim = self.scripts.register(_CLAIM)
        self._record_digests = self.scripts.register(_RECORD_DIGESTS)
        self._create_final = self.scripts.register(_CREATE_FINAL_ON_CLUSTER if self._clustered else _CREATE_FINAL, durable=True)
        self._settle_final = self.scripts.register(_SETTLE_FINAL)
        self._finish_final = self.scripts.register(_FINISH_FINAL)
        self._drop_final = self.scripts.register(_DROP_FINAL)
        self._delete = self.scripts.register(self._settling(_DELETE))
        self._adopt = self.scripts.register(_ADOPT)
        self._adopted = self._clustered  # finals of older releases (see the module docstring)

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

    def _settling(self, script: str) -> str:
        """A script that finishes, expires or deletes an upload, with the `settle` of the topology."""
        if not self._clustered:
            return _SETTLE + script
        wrapped = f"local function run()\n{script}\nend\nlocal reply = run()\nif owes then return {{reply}} end\nreturn reply\n"
        return _SETTLE_LATER + wrapped

    async def _settled(self, upload_id: str, reply: Any) -> Any:
        """A script's reply, once the settle it owes (a Cluster's `{reply}`) is paid. A failure here
        leaves it owed (in `settle:`) to the sweep: the script's own change stands, and so does the reply."""
        if not isinstance(reply, list):
            return reply
        try:
            await self._settle_waits_on(upload_id)
        except RedisError as error:
            logger.warning("upload %s: the final uploads waiting on it are left to the sweep: %s", upload_id, error)
        return reply[0]

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
        stored = await self._settled(upload_id, await self._commit(keys=keys, args=args))
        if stored == -2:
            raise LockLost(upload_id)
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
            return _texts(await self.client.zrangebyscore(self.layout.expiry(0), "-inf", now, start=0, num=limit))
        pipe = self.client.pipeline(transaction=False)
        for shard in range(self.layout.shards):
            pipe.zrangebyscore(self.layout.expiry(shard), "-inf", now, start=0, num=limit, withscores=True)
        return _oldest(await pipe.execute(), limit)

    async def mark_expired(self, upload_id: str, now: float) -> bool:
        keys = [self.key(upload_id), self._expiry(upload_id)]
        marked = await self._mark_expired(keys=keys, args=[repr(now), upload_id, TOMBSTONE_SECONDS, self._settle_arg(upload_id)])
        marked = await self._settled(upload_id, marked)
        return bool(marked)

    async def forget_tombstones(self, before: float) -> int:
        return 0  # tombstone keys carry their own TTL (see _MARK_EXPIRED)

    async def create_final(self, upload: Upload) -> bool:
        fields = upload.to_fields()
        flat: list[Any] = [item for pair in fields.items() for item in pair]
        parts = sorted(set(upload.parts))
        if self._clustered:
            return await self._create_final_on_cluster(upload, parts, flat)
        keys = [self.key(upload.id), self._finals(upload.id), self._ready(upload.id), self.layout.unsettled(upload.id)]
        for part in parts:
            keys += [self.layout.waiting(part), self.key(part)]
        created = await self._create_final(keys=keys, args=[upload.id, fields["created"], " ".join(parts), *flat])
        return bool(created)

    async def _create_final_on_cluster(self, upload: Upload, parts: list[str], flat: list[Any]) -> bool:
        """The parts' `waiting:` sets first, then the final's script, then its settled parts (module docstring)."""
        pipe = self.client.pipeline(transaction=False)
        for part in parts:
            pipe.sadd(self.layout.waiting(part), upload.id)
        await pipe.execute()
        keys = [self.key(upload.id), self._finals(upload.id), self.layout.unsettled(upload.id), self._settle_arg(upload.id)]
        if await self._create_final(keys=keys, args=[upload.id, upload.to_fields()["created"], " ".join(parts), *flat]):
            try:
                await self._settle_parts(upload.id, parts)
            except RedisError as error:  # the final exists, its `settle:` entry too: the sweep pays it
                logger.warning("final upload %s: its finished parts are left to the sweep: %s", upload.id, error)
            return True
        state, listed = await self.client.hmget(self.key(upload.id), ["state", "parts"])  # the id is taken
        kept = set((listed or "").split()) if state == "created" else set()
        await self._forget_waits(upload.id, [part for part in parts if part not in kept])
        return False

    async def _settle_parts(self, final_id: str, parts: Sequence[str]) -> None:
        """A Cluster: settle a final's waits on those of its parts that are finished, expired or gone."""
        pipe = self.client.pipeline(transaction=False)
        for part in parts:
            pipe.hget(self.key(part), "state")
        states = await pipe.execute()
        settled = [part for part, state in zip(parts, states) if state in (None, "finished", "expired")]
        await self._settle_one(final_id, settled)
        await self.client.srem(self._settle_arg(final_id), f"f:{final_id}")

    async def _settle_one(self, final_id: str, parts: Sequence[str]) -> bool:
        """A Cluster: settle the final's waits on `parts` in its slot; whether it is ready."""
        keys = [self.layout.unsettled(final_id), self._ready(final_id)]
        return bool(await self._settle_final(keys=keys, args=[final_id, *parts]))

    async def _settle_waits_on(self, part_id: str) -> list[str]:
        """A Cluster: pay the settle a part's change owes (if still owed) to each final waiting on it,
        each in the final's slot; the finals waiting on it that are ready."""
        owed_key, entry = self._settle_arg(part_id), f"p:{part_id}"
        pipe = self.client.pipeline(transaction=False)
        pipe.sismember(owed_key, entry)
        pipe.smembers(self.layout.waiting(part_id))
        owed, finals = await pipe.execute()
        settled = [part_id] if owed else []
        ready = await asyncio.gather(*(self._settle_one(final, settled) for final in finals))
        if owed:
            await self.client.srem(owed_key, entry)
        return sorted(final for final, is_ready in zip(finals, ready) if is_ready)

    async def _pay_owed(self, limit: int) -> None:
        """A Cluster: the settles a crash or a failed call left owed (at most `limit` per group)."""
        pipe = self.client.pipeline(transaction=False)
        for shard in range(self.layout.shards):
            pipe.srandmember(self.layout.settle(shard), limit)
        for entries in await pipe.execute():
            for entry in entries or []:
                kind, upload_id = entry[:2], entry[2:]
                if kind == "p:":
                    await self._settle_waits_on(upload_id)
                else:
                    await self._settle_parts(upload_id, await self._parts_of(upload_id))

    async def finals_waiting_on(self, part_id: str) -> list[str]:
        return sorted(_texts(await self.client.smembers(self.layout.waiting(part_id))))

    async def finals_ready(self, part_id: str) -> list[str]:
        if self._clustered:
            return await self._settle_waits_on(part_id)
        return sorted(_texts(await self.client.sinter([self.layout.waiting(part_id), self.layout.ready(0)])))

    async def ready_finals(self, limit: int) -> list[str]:
        if self._clustered:
            await self._pay_owed(limit)
            pipe = self.client.pipeline(transaction=False)
            for shard in range(self.layout.shards):
                pipe.srandmember(self.layout.ready(shard), limit)
            return sorted(final for ready in await pipe.execute() for final in ready or [])[:limit]
        if not self._adopted:
            await self._adopt_older_finals()
        return sorted(_texts(await self.client.srandmember(self.layout.ready(0), limit) or []))

    async def _adopt_older_finals(self) -> None:
        start = 0
        while batch := _texts(await self.client.zrange(self.layout.finals(0), start, start + ADOPT_BATCH - 1)):
            for final_id in batch:
                keys = [self.key(final_id), self.layout.ready(0), self.layout.unsettled(final_id)]
                await self._adopt(keys=keys, args=[final_id, self.prefix])
            start += ADOPT_BATCH
        self._adopted = True

    async def pending_finals(self, limit: int) -> list[str]:
        if not self._clustered:
            return _texts(await self.client.zrange(self.layout.finals(0), 0, limit - 1))
        pipe = self.client.pipeline(transaction=False)
        for shard in range(self.layout.shards):
            pipe.zrange(self.layout.finals(shard), 0, limit - 1, withscores=True)
        return _oldest(await pipe.execute(), limit)

    async def finish_final(self, final_id: str) -> bool:
        parts = await self._parts_of(final_id)
        finished = await self._finish_final(
            keys=[self.key(final_id), self._finals(final_id), self._ready(final_id), self.layout.unsettled(final_id)],
            args=[final_id, self._waiting_prefix],
        )
        await self._forget_waits(final_id, parts)
        return bool(finished)

    async def drop_final(self, final_id: str, now: float) -> bool:
        parts = await self._parts_of(final_id)
        dropped = await self._drop_final(
            keys=[self.key(final_id), self._finals(final_id), self._ready(final_id), self.layout.unsettled(final_id)],
            args=[final_id, self._waiting_prefix, repr(now), TOMBSTONE_SECONDS],
        )
        await self._forget_waits(final_id, parts)
        return bool(dropped)

    async def _parts_of(self, upload_id: str) -> list[str]:
        """On a Cluster: a final's distinct parts, whose keys its scripts cannot reach ([] on one Redis)."""
        if not self._clustered:
            return []
        return sorted(set(_texts((await self.client.hget(self.key(upload_id), "parts") or "").split())))

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
