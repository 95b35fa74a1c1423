"""A Redis lease lock, shared by every instance.

The lock is a key holding a random token, set with NX and a TTL (the lease), and
renewed at half the TTL while held. Only the holder's token releases it (atomic
check-and-delete). The holder counts its lease from the moment it *sent* each
renewal, minus a safety margin, so it stops writing before anyone else could
acquire the key.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tusd_py.locks.base import LockTimeout, ReleaseRequest

logger = logging.getLogger("tusd_py.locks")

_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class RedisLease:
    def __init__(self, key: str, token: str, valid_until: float, on_release_request: ReleaseRequest | None) -> None:
        self.key = key
        self.token = token
        self.valid_until = valid_until  # time.monotonic() deadline
        self.on_release_request = on_release_request
        self.renewer: asyncio.Task[None] | None = None

    def valid(self) -> bool:
        return time.monotonic() < self.valid_until


class RedisLocker:
    name = "Redis lease"

    def __init__(self, client: aioredis.Redis, *, prefix: str = "tusd-py:", ttl: float = 8.0, margin: float = 2.0) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl = ttl
        self.margin = margin
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def key(self, upload_id: str) -> str:
        return f"{self.prefix}lock:{upload_id}"

    @asynccontextmanager
    async def hold(
        self, upload_id: str, *, wait: float, on_release_request: ReleaseRequest | None = None
    ) -> AsyncIterator[RedisLease]:
        key, token = self.key(upload_id), secrets.token_hex(16)
        ttl_ms = int(self.ttl * 1000)
        deadline = time.monotonic() + wait
        delay = 0.01
        while True:
            sent = time.monotonic()
            if await self.client.set(key, token, nx=True, px=ttl_ms):
                break
            if time.monotonic() + delay > deadline:
                raise LockTimeout(upload_id)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
        lease = RedisLease(key, token, sent + self.ttl - self.margin, on_release_request)
        lease.renewer = asyncio.create_task(self._keep(lease, ttl_ms))
        try:
            yield lease
        finally:
            lease.renewer.cancel()
            try:
                await self._release(keys=[key], args=[token])
            except RedisError:
                logger.warning("could not release the lock of %s; it expires by itself", upload_id)

    async def _keep(self, lease: RedisLease, ttl_ms: int) -> None:
        """Renew the lease at half its TTL; tell the holder if it is lost."""
        while True:
            await asyncio.sleep(self.ttl / 2)
            sent = time.monotonic()
            try:
                renewed = await self._renew(keys=[lease.key], args=[lease.token, ttl_ms])
            except RedisError:
                renewed = None  # unknown: the lease still runs out at valid_until
            if renewed:
                lease.valid_until = sent + self.ttl - self.margin
            elif renewed == 0 or not lease.valid():
                lease.valid_until = 0.0
                if lease.on_release_request is not None:
                    lease.on_release_request()
                return

    async def close(self) -> None:
        pass
