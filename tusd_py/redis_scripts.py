"""Lua scripts sent to Redis with little between the caller and the socket.

redis-py's `Script` goes through `Redis.execute_command`: every argument encoded
in Python one by one, the connection pool's lock, and an event and observability
records for each call. Measured here, that is ~150 us of CPU per EVALSHA against
~85 us for the same call packed by hiredis (in C) on a connection this module
keeps, and every small upload makes three such calls (docs/scale-out.md).

What stays redis-py's: the connections (made by the client's pool with its
settings: address, timeouts, decoding), reading and parsing replies, the client's
retry policy, and the error classes.

In every topology (`redis_connect.py`):
- one Redis, or the master Sentinel names: the client's pool makes the connections
  (under Sentinel, a connection asks the sentinels for the master when it connects, and
  fails with ConnectionError once its server was demoted, so a retry finds the new one);
- a Redis Cluster: the connection comes from the cluster client's node that owns the
  slot of the script's first key (every key of a script is in one slot, `redis_keys.py`).
  On a redirect (MOVED, ASK, TRYAGAIN, CLUSTERDOWN) or a broken connection, one plain
  redis-py call on the same key lets the cluster client follow the redirect and refresh
  its slot map, and the script is tried once more on the right node.

`min_replicas` (--redis-min-replicas): a script registered `durable` is sent together
with `WAIT min_replicas timeout` on the same connection, in the same write (still one
round trip), and the caller is answered only once that many replicas have the script's
writes; fewer in time raises `ReplicasBehind`, a RedisError, so the request gets a 503 and
the client asks again: an offset a client was told is on `min_replicas` replicas.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AskError, ClusterDownError, ConnectionError, NoScriptError, RedisError, TryAgainError

_REROUTE = (AskError, TryAgainError, ClusterDownError, ConnectionError)  # AskError covers MovedError


class ReplicasBehind(RedisError):
    """Fewer replicas than --redis-min-replicas acknowledged a write within the wait."""


class Scripts:
    """Runs the scripts registered with it over connections it keeps for itself:
    one per call in flight, kept for the next call when the call went well."""

    def __init__(self, client: aioredis.Redis | RedisCluster, *, min_replicas: int = 0, wait_ms: int = 1000) -> None:
        """`wait_ms`: how long WAIT may wait for the replicas; keep it under the socket timeout."""
        self.client = client
        self.min_replicas = min_replicas
        wait_command: tuple[str, ...] = ("WAIT", str(min_replicas), str(wait_ms))
        self._wait = hiredis.pack_command(wait_command) if min_replicas else b""  # type: ignore[arg-type]
        own_retry = None if isinstance(client, RedisCluster) else client.get_retry()  # a cluster retries per node
        self._retry: Retry = own_retry or Retry(NoBackoff(), 0)
        self._idle: list[AbstractConnection] = []

    def register(self, source: str, *, durable: bool = False) -> Script:
        """`durable`: a script whose writes are acknowledged only once on `min_replicas` replicas."""
        return Script(self, source, durable=durable)

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if isinstance(self.client, RedisCluster):
            return await self._run_on_cluster(self.client, script, keys, args)
        return await self._retry.call_with_retry(lambda: self._run_once(script, keys, args), self._failed)

    async def _run_once(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        connection = self._idle.pop() if self._idle else self.client.connection_pool.make_connection()  # type: ignore[union-attr]
        try:
            reply = await self._exchange(connection, script, keys, args)
        except ReplicasBehind:
            self._idle.append(connection)  # every reply was read: the connection is clean
            raise
        except BaseException:
            await connection.disconnect()  # its state is unknown (a cancelled read, an error): never reused
            raise
        self._idle.append(connection)
        return reply

    async def _run_on_cluster(self, client: RedisCluster, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        await client.initialize()  # the slot map (nothing to do once known)
        for attempt in (1, 2):
            node = client.get_node_from_key(keys[0])
            if node is None:
                raise ClusterDownError(f"no master serves the slot of {keys[0]}")
            connection = node.acquire_connection()
            try:
                reply = await self._exchange(connection, script, keys, args)
            except ReplicasBehind:
                node.release(connection)
                raise
            except BaseException as exc:
                await connection.disconnect()
                node.release(connection)
                if attempt == 2 or not isinstance(exc, _REROUTE):
                    raise
                await client.exists(keys[0])  # redis-py follows the redirect and refreshes its slot map
                continue
            node.release(connection)
            return reply

    async def _exchange(self, connection: AbstractConnection, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """EVALSHA (EVAL when the script is not cached) [+ WAIT] on one connection: one round trip."""
        wait = self._wait if script.durable else b""
        if not connection.is_connected:  # redis-py's connect() checks it too, behind its retry wrapper
            await connection.connect()  # type: ignore[no-untyped-call]
        await connection.send_packed_command(hiredis.pack_command(("EVALSHA", script.sha, len(keys), *keys, *args)) + wait, False)
        try:
            reply = await connection.read_response()
        except NoScriptError:  # Redis restarted or its script cache was flushed: EVAL caches it again
            if wait:
                await connection.read_response()  # the WAIT's reply
            await connection.send_packed_command(hiredis.pack_command(("EVAL", script.source, len(keys), *keys, *args)) + wait, False)
            reply = await connection.read_response()
        if wait:
            acknowledged = await connection.read_response()
            if acknowledged < self.min_replicas:
                raise ReplicasBehind(f"{acknowledged} of {self.min_replicas} replicas acknowledged the write in time")
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

    def __init__(self, scripts: Scripts, source: str, *, durable: bool = False) -> None:
        self.scripts = scripts
        self.source = source
        self.durable = durable
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, keys: Sequence[str] = (), args: Sequence[Any] = ()) -> Any:
        return await self.scripts.run(self, keys, args)
