"""tusd_py.redis_scripts against a real redis-server: the script cache going away,
Redis restarting under kept connections, and calls cancelled half-way."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.support import RedisServer
from tusd_py.app import build_engine
from tusd_py.config import Config
from tusd_py.redis_scripts import Scripts
from tusd_py.state.redis import RedisStateStore

ECHO = "redis.call('SET', KEYS[1], ARGV[1]) return {KEYS[1], ARGV[1], redis.call('GET', KEYS[1])}"
SLOW = "local n = 0 for i = 1, tonumber(ARGV[1]) do n = n + 1 end return ARGV[2]"


def client(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, decode_responses=True, socket_timeout=5, retry=Retry(NoBackoff(), 1))


def test_replies_as_redis_py_script_does(redis_url: str) -> None:
    async def main() -> None:
        redis = client(redis_url)
        scripts = Scripts(redis)
        ours = scripts.register(ECHO)
        theirs = redis.register_script(ECHO)
        for value in ("plain", "ünïcode", 7, ""):
            assert await ours(keys=["k"], args=[value]) == await theirs(keys=["k"], args=[value])
        await scripts.close()
        await redis.aclose()

    asyncio.run(main())


def test_a_flushed_script_cache_is_filled_again(redis_url: str) -> None:
    async def main() -> None:
        redis = client(redis_url)
        scripts = Scripts(redis)
        echo = scripts.register(ECHO)
        assert (await echo(keys=["k"], args=["1"]))[2] == "1"
        await redis.script_flush()
        assert not (await redis.script_exists(echo.sha))[0]
        assert (await echo(keys=["k"], args=["2"]))[2] == "2"  # EVAL after NOSCRIPT, on the same call
        assert (await redis.script_exists(echo.sha))[0]
        await scripts.close()
        await redis.aclose()

    asyncio.run(main())


def test_kept_connections_survive_a_redis_restart(tmp_path_factory: pytest.TempPathFactory) -> None:
    server = RedisServer(tmp_path_factory.mktemp("restart")).start()

    async def main() -> None:
        redis = client(server.url)
        scripts = Scripts(redis)
        echo = scripts.register(ECHO)
        # Several kept connections, all broken by the restart.
        assert len(await asyncio.gather(*(echo(keys=[f"k{i}"], args=[str(i)]) for i in range(4)))) == 4
        server.stop()
        server.start()  # same port; the script cache is empty too
        # One retry (the client's policy) suffices: the first failure drops every kept connection.
        assert (await echo(keys=["k"], args=["after"]))[2] == "after"
        server.stop()
        with pytest.raises(RedisConnectionError):
            await echo(keys=["k"], args=["down"])
        await scripts.close()
        await redis.aclose()

    try:
        asyncio.run(main())
    finally:
        server.stop()


def test_a_cancelled_call_leaves_no_reply_for_the_next(redis_url: str) -> None:
    async def main() -> None:
        redis = client(redis_url)
        scripts = Scripts(redis)
        slow, echo = scripts.register(SLOW), scripts.register(ECHO)
        await slow(keys=[], args=["1", "warm"])  # loaded, so the cancelled call is an EVALSHA in flight
        task = asyncio.create_task(slow(keys=[], args=["3000000", "late reply"]))
        await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for i in range(3):  # the cancelled call's reply must not answer any of these
            assert (await echo(keys=["k"], args=[str(i)]))[2] == str(i)
        await scripts.close()
        await redis.aclose()

    asyncio.run(main())


def test_the_state_store_and_the_locker_share_one_set_of_connections(redis_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    handler = build_engine(Config(data_dir=tmp_path, redis_url=redis_url))
    state = handler.state
    assert isinstance(state, RedisStateStore) and isinstance(state.scripts, Scripts)
    assert state._commit.scripts is state.scripts
    assert handler.locker._acquire.scripts is state.scripts  # type: ignore[attr-defined]

    async def close() -> None:
        await handler.locker.close()
        await state.close()

    asyncio.run(close())
