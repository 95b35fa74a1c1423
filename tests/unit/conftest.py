"""Fixtures shared by the unit tests: the asyncio backend for anyio's pytest plugin, and
both state stores (SQLite, and Redis through fakeredis) behind one parametrized fixture; `redis-cluster`
is the Redis store with a Redis Cluster's key layout and its one-slot steps (fakeredis is one node, so
it does not check the slots: the e2e tests on a real Cluster do)."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import fakeredis
import pytest

from tusd_py.redis_keys import KeyLayout
from tusd_py.state.base import StateStore
from tusd_py.state.local import LocalStateStore
from tusd_py.state.redis import RedisStateStore


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["sqlite", "sqlite-fsync", "redis", "redis-cluster"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    if request.param == "sqlite":  # statements on the event loop
        state: StateStore = LocalStateStore(tmp_path / "state.sqlite3")
    elif request.param == "sqlite-fsync":  # statements on the dedicated thread
        state = LocalStateStore(tmp_path / "state.sqlite3", fsync=True)
    elif request.param == "redis":
        state = RedisStateStore(fakeredis.FakeAsyncRedis(decode_responses=True), prefix="t:")
    else:
        layout = KeyLayout("t:", clustered=True, shards=4)
        state = RedisStateStore(fakeredis.FakeAsyncRedis(decode_responses=True), layout=layout)
    yield state
    await state.close()
