"""The upload engine's write result (one Stop per body, and whether a creation keeps its
upload), capabilities derived from what the stores declare, and one StateUnavailable
whatever the state backend."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from tusd_py import protocol as p
from tusd_py.capabilities import Capabilities
from tusd_py.checksum import new_hasher
from tusd_py.config import Config
from tusd_py.engine import UploadEngine
from tusd_py.handlers import TusHandler
from tusd_py.locks.memory import MemoryLocker
from tusd_py.state.base import StateUnavailable, Upload
from tusd_py.state.local import LocalStateStore
from tusd_py.state.redis import RedisStateStore
from tusd_py.storage.files import FileStore
from tusd_py.writes import Stop


def body(*chunks: bytes, disconnect: bool = False) -> Any:
    messages: list[dict[str, Any]] = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    messages.append({"type": "http.disconnect"} if disconnect else {"type": "http.request", "body": b"", "more_body": False})

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return receive


async def write(tmp_path: Path, length: int, receive: Any, checksum: Any = None) -> tuple[Any, UploadEngine]:
    config = Config(data_dir=tmp_path)
    engine = UploadEngine(config, LocalStateStore(tmp_path / "s.sqlite3"), FileStore(tmp_path), MemoryLocker())
    upload = await engine.create(Upload(id=p.new_upload_id(), length=length))
    result = await engine.write_new(upload, engine.reader(receive), checksum)
    await engine.state.close()
    return result, engine


@pytest.mark.parametrize(
    ("chunks", "disconnect", "length", "stop", "keeps", "offset"),
    [
        ((b"abc",), False, 3, Stop.COMPLETE, True, 3),
        ((b"ab",), True, 3, Stop.DISCONNECTED, True, 2),
        ((b"ab", b"cd"), False, 3, Stop.OVERFLOW, False, 0),
    ],
)
def test_each_body_ends_with_one_stop(
    tmp_path: Path, chunks: tuple[bytes, ...], disconnect: bool, length: int, stop: Stop, keeps: bool, offset: int
) -> None:
    result, _ = asyncio.run(write(tmp_path, length, body(*chunks, disconnect=disconnect)))
    assert (result.stop, result.keeps_upload, result.upload.offset) == (stop, keeps, offset)
    assert (result.error is None) is (stop is Stop.COMPLETE)


def test_a_checksum_mismatch_commits_nothing_and_loses_the_creation(tmp_path: Path) -> None:
    checksum = (new_hasher("sha1"), b"\0" * 20)
    result, _ = asyncio.run(write(tmp_path, 3, body(b"abc"), checksum))
    assert result.stop is Stop.CHECKSUM_MISMATCH and not result.keeps_upload and result.upload.offset == 0
    assert result.error is not None and result.error.code == p.ERR_CHECKSUM_MISMATCH.code


class CoreOnlyData:
    """A data store with the core only: no ranged reads, no server-side copy."""

    name = "core"

    async def create(self, upload_id: str) -> None: ...
    def writer(self, upload_id: str, offset: int, hasher: Any = None) -> Any: ...
    async def delete(self, upload_id: str) -> None: ...
    def writable(self) -> bool:
        return True


def test_features_follow_the_stores_capabilities(tmp_path: Path) -> None:
    state = LocalStateStore(tmp_path / "s.sqlite3")
    full = Capabilities.of(state, FileStore(tmp_path), Config(data_dir=tmp_path))
    assert full.tus_extensions().split(",") == [
        "creation", "creation-with-upload", "creation-defer-length", "termination", "checksum",
        "concatenation", "concatenation-unfinished", "expiration",
    ]
    assert full.draft and full.download
    core = Capabilities.of(state, CoreOnlyData(), Config(data_dir=tmp_path))  # type: ignore[arg-type]
    assert "concatenation" not in core.tus_extensions() and not core.download and not core.draft
    engine = UploadEngine(Config(data_dir=tmp_path), state, CoreOnlyData(), MemoryLocker())  # type: ignore[arg-type]
    assert "GET" not in TusHandler(engine).upload_methods and engine.concat is None


def test_redis_failures_leave_the_store_as_state_unavailable() -> None:
    server = fakeredis.FakeServer()
    server.connected = False
    store = RedisStateStore(fakeredis.FakeAsyncRedis(server=server, decode_responses=True), prefix="t:")

    async def main() -> None:
        with pytest.raises(StateUnavailable):
            await store.get("a" * 32)
        with pytest.raises(StateUnavailable):
            await store.commit_offset("a" * 32, 0, 1, None)

    asyncio.run(main())


def test_sqlite_failures_leave_the_store_as_state_unavailable(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path / "missing" / "dir" / "s.sqlite3")
    (tmp_path / "missing").write_text("a file where the directory should be")

    async def main() -> None:
        with pytest.raises(StateUnavailable):
            await store.get("a" * 32)

    asyncio.run(main())
