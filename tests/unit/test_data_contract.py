"""The data store contract as the engine uses it for object storage: the pre-create hook's
`storage` answer (tusd's ChangeFileInfo.Storage) checked like every hook answer, the S3
store's exceptions as rows of the error table, and what the S3 store lets the server offer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tusd_py import protocol as p
from tusd_py.capabilities import Capabilities
from tusd_py.config import Config
from tusd_py.errors import to_tus_error
from tusd_py.hooks.base import DataChoice, HookEvent, HookFailed, HookResponse, Hooks
from tusd_py.state.base import Upload
from tusd_py.state.local import LocalStateStore
from tusd_py.storage.files import FileStore
from tusd_py.storage.s3 import S3Options, S3Store, StorageUnavailable, UploadNotFound, UploadTooLarge


class Answer:
    name = "answer"

    def __init__(self, answer: object) -> None:
        self.answer = answer

    def handles(self, event_type: str) -> bool:
        return True

    async def deliver(self, event: HookEvent) -> HookResponse | None:
        return self.answer  # type: ignore[return-value]

    async def close(self) -> None: ...


def upload() -> Upload:
    return Upload(id="abc", length=10, created=1.0)


def test_pre_create_chooses_the_object_key_and_metadata() -> None:
    hooks = Hooks([Answer({"storage": {"key": "users/42/report final.pdf", "metadata": {"owner": "42"}}})])
    changed, choice = asyncio.run(hooks.pre_create_data(upload()))
    assert changed == upload()
    assert choice == DataChoice("users/42/report final.pdf", {"owner": "42"})
    assert asyncio.run(Hooks().pre_create_data(upload()))[1] == DataChoice()


@pytest.mark.parametrize(
    "storage",
    [
        {"key": "../outside"}, {"key": "/absolute"}, {"key": "a//b"}, {"key": "a/./b"}, {"key": ""},
        {"key": "x\ny"}, {"key": ".tusd/abc.info"}, {"key": "k" * 961}, {"key": 5},
        {"metadata": {"a": 1}}, {"metadata": "x"}, {"path": "/tmp/x"}, "key",
    ],
)
def test_a_bad_storage_answer_is_a_failed_hook_502(storage: object) -> None:
    with pytest.raises(HookFailed):
        HookResponse.parse({"storage": storage})
    with pytest.raises(p.TusError) as raised:
        asyncio.run(Hooks([Answer({"storage": storage})]).pre_create_data(upload()))
    assert raised.value.status == 502 and raised.value.code == "ERR_HOOK_FAILED"


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (UploadNotFound("read x: NoSuchKey"), 404, "ERR_UPLOAD_NOT_FOUND"),
        (UploadTooLarge("6 TiB"), 413, "ERR_MAX_SIZE_EXCEEDED"),
        (StorageUnavailable("upload part 3: S3 answered SlowDown"), 503, "ERR_STORAGE_UNAVAILABLE"),
    ],
)
def test_the_s3_stores_errors_are_rows_of_the_table(error: OSError, status: int, code: str) -> None:
    row = to_tus_error(error)
    assert row is not None and (row.status, row.code) == (status, code)
    if status == 503:
        assert ("Retry-After", "5") in row.headers


def test_the_s3_store_serves_everything_but_reads_finished_uploads_only(tmp_path: Path) -> None:
    state = LocalStateStore(tmp_path / "s.sqlite3")
    config = Config(data_dir=tmp_path)
    s3 = Capabilities.of(state, S3Store(S3Options(bucket="b")), config)
    files = Capabilities.of(state, FileStore(tmp_path), config)
    assert s3.tus_extensions() == files.tus_extensions()
    assert s3.download and s3.draft and s3.concatenation
    assert files.reads_unfinished and not s3.reads_unfinished


def test_the_file_store_ignores_what_it_does_not_need_at_creation(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    asyncio.run(store.create("abc", 10, max_size=100, key="a/b", content_type="image/png", metadata={"x": "y"}))
    assert (tmp_path / "abc").stat().st_size == 0 and not (tmp_path / "a").exists()
