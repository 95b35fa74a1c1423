"""The Redis store's concatenation: final uploads, and the waits a part's change settles.

On one Redis (standalone or Sentinel) a part's change settles the waits on it in
the same script (`_SETTLE`, run by store.py's scripts that finish, expire or delete
an upload). Finals stored by releases before waits were settled are adopted once per
process by the first `ready_finals` (`_ADOPT`).

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
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Sequence

from redis.exceptions import RedisError

from tusd_py.state.base import Upload
from tusd_py.state.redis.connection import TOMBSTONE_SECONDS, RedisConnection, oldest, texts

logger = logging.getLogger("tusd_py.state")

ADOPT_BATCH = 500

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
FORGET_WAITS = """
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
_FINISH_FINAL = FORGET_WAITS + """
local cur = redis.call('HMGET', KEYS[1], 'state', 'length', 'parts')
if not cur[1] or cur[1] == 'finished' or cur[1] == 'expired' or not cur[3] or cur[3] == '' or cur[2] == '' then
  return 0
end
redis.call('HSET', KEYS[1], 'offset', cur[2], 'state', 'finished', 'expires', '')
forget_waits(cur[3])
return 1
"""

# KEYS: upload, finals, ready, unsettled:<id>. ARGV: id, key prefix, now, tombstone seconds.
_DROP_FINAL = FORGET_WAITS + """
local cur = redis.call('HMGET', KEYS[1], 'state', 'parts')
forget_waits(cur[2])
if not cur[1] or cur[1] == 'finished' or cur[1] == 'expired' or not cur[2] or cur[2] == '' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'expired', 'expires', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""


class RedisFinals(RedisConnection):
    """`ConcatStateStore`, and the `settle` that store.py's scripts run when a part changes."""

    def _register_scripts(self) -> None:
        super()._register_scripts()
        self._create_final = self.scripts.register(_CREATE_FINAL_ON_CLUSTER if self._clustered else _CREATE_FINAL, durable=True)
        self._settle_final = self.scripts.register(_SETTLE_FINAL)
        self._finish_final = self.scripts.register(_FINISH_FINAL)
        self._drop_final = self.scripts.register(_DROP_FINAL)
        self._adopt = self.scripts.register(_ADOPT)
        self._adopted = self._clustered  # finals of older releases adopted (the module docstring)

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
        return sorted(texts(await self.client.smembers(self.layout.waiting(part_id))))

    async def finals_ready(self, part_id: str) -> list[str]:
        if self._clustered:
            return await self._settle_waits_on(part_id)
        return sorted(texts(await self.client.sinter([self.layout.waiting(part_id), self.layout.ready(0)])))

    async def ready_finals(self, limit: int) -> list[str]:
        if self._clustered:
            await self._pay_owed(limit)
            pipe = self.client.pipeline(transaction=False)
            for shard in range(self.layout.shards):
                pipe.srandmember(self.layout.ready(shard), limit)
            return sorted(final for ready in await pipe.execute() for final in ready or [])[:limit]
        if not self._adopted:
            await self._adopt_older_finals()
        return sorted(texts(await self.client.srandmember(self.layout.ready(0), limit) or []))

    async def _adopt_older_finals(self) -> None:
        start = 0
        while batch := texts(await self.client.zrange(self.layout.finals(0), start, start + ADOPT_BATCH - 1)):
            for final_id in batch:
                keys = [self.key(final_id), self.layout.ready(0), self.layout.unsettled(final_id)]
                await self._adopt(keys=keys, args=[final_id, self.prefix])
            start += ADOPT_BATCH
        self._adopted = True

    async def pending_finals(self, limit: int) -> list[str]:
        if not self._clustered:
            return texts(await self.client.zrange(self.layout.finals(0), 0, limit - 1))
        pipe = self.client.pipeline(transaction=False)
        for shard in range(self.layout.shards):
            pipe.zrange(self.layout.finals(shard), 0, limit - 1, withscores=True)
        return oldest(await pipe.execute(), limit)

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
        return sorted(set(texts((await self.client.hget(self.key(upload_id), "parts") or "").split())))

    async def _forget_waits(self, final_id: str, parts: Sequence[str]) -> None:
        if parts:
            pipe = self.client.pipeline(transaction=False)
            for part in parts:
                pipe.srem(self.layout.waiting(part), final_id)
            await pipe.execute()
