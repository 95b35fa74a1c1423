"""Lua scripts sent to Redis with little between the caller and the socket.

redis-py's `Script` goes through `Redis.execute_command`: every argument encoded
in Python one by one, the connection pool's lock, and an event and observability
records for each call. Measured here, that is ~150 us of CPU per EVALSHA against
~85 us for the same call packed by hiredis (in C) on a connection this module
keeps, and every small upload makes four such calls (docs/performance.md).

What stays redis-py's: the connections (made by the client's pool with its
settings: address, timeouts, decoding), reading and parsing replies, the client's
retry policy, and the error classes.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError


class Scripts:
    """Runs the scripts registered with it over connections it keeps for itself:
    one per call in flight, kept for the next call when the call went well."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._retry: Retry = client.get_retry() or Retry(NoBackoff(), 0)
        self._idle: list[AbstractConnection] = []

    def register(self, source: str) -> Script:
        return Script(self, source)

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._retry.call_with_retry(lambda: self._run_once(script, keys, args), self._failed)

    async def _run_once(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        connection = self._idle.pop() if self._idle else self.client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        try:
            await connection.connect()  # nothing to do when connected
            await connection.send_packed_command(hiredis.pack_command(("EVALSHA", script.sha, len(keys), *keys, *args)), False)
            try:
                reply = await connection.read_response()
            except NoScriptError:  # Redis restarted or its script cache was flushed: EVAL caches it again
                await connection.send_packed_command(hiredis.pack_command(("EVAL", script.source, len(keys), *keys, *args)), False)
                reply = await connection.read_response()
        except BaseException:
            await connection.disconnect()  # its state is unknown (a cancelled read, an error): never reused
            raise
        self._idle.append(connection)
        return reply

    async def _failed(self, error: Exception) -> None:
        """Before a retry: the other idle connections most likely broke the same way."""
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.disconnect()

    async def close(self) -> None:
        await self._failed(ConnectionError("closing"))


class Script:
    """Called as redis-py's `Script` is: `await script(keys=[...], args=[...])`."""

    def __init__(self, scripts: Scripts, source: str) -> None:
        self.scripts = scripts
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, keys: Sequence[str] = (), args: Sequence[Any] = ()) -> Any:
        return await self.scripts.run(self, keys, args)
