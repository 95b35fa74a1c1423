"""Fixtures shared by the unit tests: the asyncio backend for anyio's pytest plugin, and
both state stores (SQLite, and Redis through fakeredis) behind one parametrized fixture."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import fakeredis
import pytest

from tusd_py.state.base import StateStore
from tusd_py.state.local import LocalStateStore
from tusd_py.state.redis import RedisStateStore


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["sqlite", "sqlite-fsync", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    if request.param == "sqlite":  # statements on the event loop
        state: StateStore = LocalStateStore(tmp_path / "state.sqlite3")
    elif request.param == "sqlite-fsync":  # statements on the dedicated thread
        state = LocalStateStore(tmp_path / "state.sqlite3", fsync=True)
    else:
        state = RedisStateStore(fakeredis.FakeAsyncRedis(decode_responses=True), prefix="t:")
    yield state
    await state.close()
