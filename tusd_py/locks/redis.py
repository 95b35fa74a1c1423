"""A Redis lease lock, shared by every instance, with lock exchange over pub/sub.

The lock is a key holding a random token, set with NX and a TTL (the lease), and
renewed at half the TTL while held. Only the holder's token releases it (atomic
check-and-delete). The holder counts its lease from the moment it *sent* each
renewal, minus a safety margin, so it stops writing before anyone else could
acquire the key; and its commits carry the lease as a `Fence` that the state
store checks in the same script, so a holder whose lease lapsed anyway (a long
pause) cannot commit. A holder that commits (a body being read commits about once a second,
`writes.COMMIT_INTERVAL`) needs no renewal at all: the fenced commit extends the key's TTL in
the same script when the token matches (`RedisLease.extension_ttl`, `extended_at`), counted
from the commit's send time as a renewal is, and pushes the next renewal back. Renewals remain
for holders that do not commit (a stalled body, HEAD and DELETE holds); 1,000 slow uploads held
open on one instance no longer need 1,000 renewal tasks answered in time on a loaded machine.

Lock exchange: each instance keeps one pub/sub subscription. A request that
finds an upload held publishes `release <id>`; the instance holding it calls the
holder's `on_release_request` (the body reader stops, the bytes so far are
committed, the lock is released). A release that was asked for publishes
`released <id>` from the release script itself, which wakes the waiters at once;
they also poll with backoff, as pub/sub messages can be lost when Redis restarts.
On a Redis Cluster the channel is sharded too (`redis_keys.KeyLayout.lock_channel`: one
per group of uploads, in the group's slot): SPUBLISH reaches only the master that owns
the slot and its replicas instead of every node of the cluster, the release script can
publish in its own slot, and each instance keeps one SSUBSCRIBE per group (redis-py's
`ClusterPubSub`, which follows the channels when their slots move).

Round trips: acquiring is one script that also reads the upload's state record
(`preload`), and the commit that finishes an upload also lets go of its lock (`RedisFence`,
the state store's commit script), so a PATCH of a small upload costs acquire+read and
commit+release: two. What the holder still does after that commit (completing the data,
the post-finish hook) is idempotent or needs no exclusion: a finished upload takes no bytes,
and `UploadEngine.readable` completes the data again, without the lock, before any read.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Coroutine

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterPubSub, RedisCluster
from redis.exceptions import RedisError

from tusd_py.locks.base import Fence, LockTimeout, ReleaseRequest
from tusd_py.redis_connect import RedisClient
from tusd_py.redis_keys import KeyLayout
from tusd_py.redis_scripts import ReplicasBehind, Scripts
from tusd_py.state.base import StateUnavailable

logger = logging.getLogger("tusd_py.locks")

# KEYS: lock[, record to read]. ARGV: token, ttl ms. Returns false when held, else the record's fields.
# Held with the caller's own token: an earlier try of this very hold took it and its answer was lost
# (a connection broken in a failover, then retried): that is the caller's lock.
_ACQUIRE = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if KEYS[2] then return redis.call('HGETALL', KEYS[2]) end
return {}
"""
_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
# ARGV: token, channel ('' = nobody asked, publish nothing), message, PUBLISH or SPUBLISH.
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[2] ~= '' then redis.call(ARGV[4], ARGV[2], ARGV[3]) end
return 1
"""

ASK_AGAIN = 1.0  # seconds before a waiter repeats its release request (messages can be lost)
MAX_POLL = 0.5  # longest sleep between two tries of a waiter that hears nothing
RENEW_RETRY = 0.5  # seconds before retrying a renewal that failed on a Redis error
CLOSE_TRIES = 50  # cancellations of the subscription task at close, 0.1 s apart
SHARDED_POLL = 0.05  # seconds a Cluster subscription waits on each master's connection in turn


@dataclass(frozen=True)
class RedisFence(Fence):
    """A fence that can also let go of its lease: the state store's commit that finishes an
    upload deletes the lock key in the same script (`release_args`, then `let_go_by_commit`)."""

    lease: RedisLease = field(compare=False, repr=False)


class RedisLease:
    def __init__(
        self,
        key: str,
        token: str,
        valid_until: float,
        on_release_request: ReleaseRequest | None,
        *,
        channel: str = "",
        message: str = "",
        publish: str = "PUBLISH",
        ttl: float,
        margin: float,
    ) -> None:
        self.key, self.token = key, token
        self.valid_until = valid_until  # time.monotonic() deadline
        self.renew_at = valid_until + margin - ttl / 2  # time.monotonic() when the next renewal is due
        self.ttl, self.margin = ttl, margin
        self.on_release_request = on_release_request
        self.record: dict[str, str] | None = None
        self.asked = False  # someone wants the lock: announce its release
        self.renewer: asyncio.TimerHandle | asyncio.Task[None] | None = None  # a timer until the first renewal
        self.released = False  # let go of by a commit (`let_go_by_commit`): nothing left to release
        self.announced = False  # that commit published `released <id>` too
        self._channel, self._message, self._publish = channel, message, publish

    @property
    def fence(self) -> RedisFence:
        # Made when asked, not kept: a fence kept here would refer back to its lease, and that
        # cycle made each hold (its release callback, the body reader, the request) garbage
        # for the cyclic collector instead of being freed when the hold ends.
        return RedisFence(self.key, self.token, self)

    def valid(self) -> bool:
        return time.monotonic() < self.valid_until

    def ask_release(self) -> None:
        self.asked = True
        if self.on_release_request is not None:
            self.on_release_request()

    def release_args(self) -> list[str]:
        """For a commit script that lets go of the lock: channel ('' = nobody asked), message, command."""
        self.announced = self.asked
        return [self._channel if self.asked else "", self._message, self._publish]

    def extension_ttl(self) -> str:
        """For a fenced commit script: the TTL (ms) it sets on the lock key when the token is ours."""
        return str(int(self.ttl * 1000))

    def extended_at(self, sent: float) -> None:
        """A fenced commit sent at `sent` (time.monotonic()) went through: it extended the key as a
        renewal sent then would have, so the lease runs from then and the next renewal waits."""
        self.valid_until = max(self.valid_until, sent + self.ttl - self.margin)
        self.renew_at = max(self.renew_at, sent + self.ttl / 2)

    def let_go_by_commit(self) -> None:
        """A commit deleted the lock key (`release_args`): the hold ends without a release of its own.
        `valid()` stays as it was: it says the lease was never lost, and nothing commits after."""
        self.released = True
        if self.renewer is not None:
            self.renewer.cancel()


class RedisLocker:
    name = "Redis lease"

    def __init__(
        self,
        client: RedisClient,
        *,
        prefix: str = "tusd-py:",
        layout: KeyLayout | None = None,
        ttl: float = 8.0,
        margin: float = 2.0,
        preload: Callable[[str], str] | None = None,
        scripts: Scripts | None = None,
    ) -> None:
        """`preload(upload_id)` names a hash to read atomically with acquiring (the state record);
        `scripts`: the state store's, so that both share one set of kept connections (its owner closes it);
        `layout`: the state store's key names (default: the one-Redis names under `prefix`)."""
        self.client = client
        self.layout = layout or KeyLayout(prefix)
        self.prefix = self.layout.prefix
        self.ttl = ttl
        self.margin = margin
        self.preload = preload
        self._sharded = isinstance(client, RedisCluster)
        self._publish = "SPUBLISH" if self._sharded else "PUBLISH"
        self._own_scripts = scripts is None
        self._scripts = scripts or Scripts(client)
        # Durable: under --redis-min-replicas the record it reads (HEAD's and PATCH's offset) is one
        # the replicas have too, never a write a failing master took alone (it would be lost).
        self._acquire = self._scripts.register(_ACQUIRE, durable=True)
        self._renew = self._scripts.register(_RENEW)
        self._release = self._scripts.register(_RELEASE)
        self._held: dict[str, RedisLease] = {}  # leases held in this instance
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()  # releases tried again (`_release_later`)

    def key(self, upload_id: str) -> str:
        return self.layout.lock(upload_id)

    def channel(self, upload_id: str) -> str:
        return self.layout.lock_channel(self.layout.shard_of(upload_id))

    @asynccontextmanager
    async def hold(
        self, upload_id: str, *, wait: float, on_release_request: ReleaseRequest | None = None
    ) -> AsyncIterator[RedisLease]:
        self._listen()
        key, token = self.key(upload_id), secrets.token_hex(16)
        keys = [key] if self.preload is None else [key, self.preload(upload_id)]
        ttl_ms = int(self.ttl * 1000)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        asked_at: float | None = None
        poll = 0.02
        try:
            while True:
                sent = time.monotonic()
                try:
                    record = await self._acquire(keys=keys, args=[token, ttl_ms])
                except ReplicasBehind:  # taken, but not on the replicas in time: let it go again
                    await self._let_go(upload_id, key, [token, "", "", self._publish])
                    raise
                if record is not None:
                    break
                now = loop.time()
                if now >= deadline:
                    raise LockTimeout(upload_id)  # wait=0 (the sweeper) never disturbs the holder
                if asked_at is None or now - asked_at >= ASK_AGAIN:
                    await self._ask_release(upload_id)
                    asked_at = now
                await self._wait_released(upload_id, min(poll, deadline - now))
                poll = min(poll * 2, MAX_POLL)
        except RedisError as exc:  # the lock lives with the state: unreachable alike (errors.py)
            raise StateUnavailable(f"Redis: {exc}") from exc
        channel, message = self.channel(upload_id), f"released {upload_id}"
        lease = RedisLease(
            key,
            token,
            sent + self.ttl - self.margin,
            on_release_request,
            channel=channel,
            message=message,
            publish=self._publish,
            ttl=self.ttl,
            margin=self.margin,
        )
        if self.preload is not None:
            lease.record = dict(zip(record[::2], record[1::2]))
        self._held[upload_id] = lease
        # A timer, not a task, until the first renewal is due: most holds end long before
        # (a task per hold cost small uploads a creation and a cancellation each).
        lease.renewer = loop.call_later(self.ttl / 2, self._start_keeping, lease, ttl_ms)
        try:
            yield lease
        finally:
            lease.renewer.cancel()
            if self._held.get(upload_id) is lease:
                del self._held[upload_id]
            if not lease.released:
                await self._let_go(upload_id, key, [token, channel if lease.asked else "", message, self._publish])
            elif lease.asked and not lease.announced:  # asked after the commit let go: tell the waiters
                await self._announce(channel, message)
            self._wake(upload_id)

    async def _announce(self, channel: str, message: str) -> None:
        try:
            await self.client.execute_command(self._publish, channel, message)
        except RedisError:
            pass  # waiters poll as well (messages can be lost)

    async def _let_go(self, upload_id: str, key: str, args: list[str]) -> None:
        try:
            await self._release(keys=[key], args=args)
        except RedisError:
            logger.warning("could not release the lock of %s; trying again until its lease runs out", upload_id)
            self._spawn(self._release_later(key, args, time.monotonic() + self.ttl))

    async def _release_later(self, key: str, args: list[str], until: float) -> None:
        """A release that failed (Redis away, a failover) is tried again, so the next request need
        not wait out the whole lease once Redis is back; the token check keeps it harmless."""
        while time.monotonic() < until:
            await asyncio.sleep(RENEW_RETRY)
            try:
                await self._release(keys=[key], args=args)
                return
            except RedisError:
                continue

    def _spawn(self, coroutine: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _ask_release(self, upload_id: str) -> None:
        local = self._held.get(upload_id)
        if local is not None:
            local.ask_release()
        else:
            await self.client.execute_command(self._publish, self.channel(upload_id), f"release {upload_id}")

    async def _wait_released(self, upload_id: str, timeout: float) -> None:
        waiter = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(upload_id, set())
        waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter, max(timeout, 0))
        except TimeoutError:
            pass
        finally:
            waiters.discard(waiter)
            if not waiters and self._waiters.get(upload_id) is waiters:
                del self._waiters[upload_id]

    def _wake(self, upload_id: str) -> None:
        for waiter in self._waiters.get(upload_id, ()):
            if not waiter.done():
                waiter.set_result(None)

    def _on_message(self, data: str) -> None:
        kind, _, upload_id = data.partition(" ")
        if kind == "release":
            lease = self._held.get(upload_id)
            if lease is not None:
                lease.ask_release()
        elif kind == "released":
            self._wake(upload_id)

    def _listen(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._subscription())

    async def _subscription(self) -> None:
        """One subscription per instance for the whole lifetime; it comes back after Redis does."""
        delay = 0.1
        channels = [self.layout.lock_channel(shard) for shard in range(self.layout.shards)]
        while True:
            pubsub = self.client.pubsub()
            try:
                if isinstance(pubsub, ClusterPubSub):
                    await pubsub.ssubscribe(*channels)
                else:
                    await pubsub.subscribe(*channels)
                delay = 0.1
                while True:
                    message = await self._next_message(pubsub)
                    if message is not None and message["type"] in ("message", "smessage"):
                        data = message["data"]
                        self._on_message(data.decode() if isinstance(data, bytes) else data)
            except (RedisError, OSError) as exc:
                logger.warning("lock channel lost (%s); subscribing again in %.1fs", exc, delay)
            finally:
                try:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                except (RedisError, OSError):
                    pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    @staticmethod
    async def _next_message(pubsub: PubSub) -> dict[str, Any] | None:
        if isinstance(pubsub, ClusterPubSub):
            # redis-py reads the masters' connections in turn, waiting `timeout` on each: a short
            # wait keeps a message's delay under SHARDED_POLL x masters (1 s each made it 2 s on 3).
            message: dict[str, Any] | None = await pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=SHARDED_POLL)
            return message
        plain: dict[str, Any] | None = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        return plain

    def _start_keeping(self, lease: RedisLease, ttl_ms: int) -> None:
        later = lease.renew_at - time.monotonic()
        if later > 0:  # a commit extended the lease meanwhile (`RedisLease.extended_at`)
            lease.renewer = asyncio.get_running_loop().call_later(later, self._start_keeping, lease, ttl_ms)
        else:
            lease.renewer = asyncio.create_task(self._keep(lease, ttl_ms))

    async def _keep(self, lease: RedisLease, ttl_ms: int) -> None:
        """Renew the lease at half its TTL after the last renewal or commit that extended it;
        tell the holder if it is lost."""
        while True:
            later = lease.renew_at - time.monotonic()
            if later > 0:
                await asyncio.sleep(later)
                continue  # a commit may have pushed `renew_at` back while this slept
            sent = time.monotonic()
            try:
                renewed = await self._renew(keys=[lease.key], args=[lease.token, ttl_ms])
            except RedisError:
                renewed = None  # unknown: the lease still runs out at valid_until
            if renewed:
                lease.extended_at(sent)
            elif renewed == 0 or not lease.valid():
                lease.valid_until = 0.0
                if lease.on_release_request is not None:
                    lease.on_release_request()
                return
            else:
                lease.renew_at = time.monotonic() + RENEW_RETRY

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._own_scripts:
            await self._scripts.close()
        if self._listener is not None:
            # redis-py's get_message can swallow a cancellation that lands while it waits
            # (the task then waits on for the next message): cancel until it ends, bounded.
            for _ in range(CLOSE_TRIES):
                self._listener.cancel()
                done, _ = await asyncio.wait({self._listener}, timeout=0.1)
                if done:
                    break
            if self._listener.done() and not self._listener.cancelled():
                self._listener.exception()  # retrieved: ending with an error is ending
            self._listener = None
