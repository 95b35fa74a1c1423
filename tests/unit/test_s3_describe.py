"""The S3 store's validators (`Bucket.describe`): HeadObject's answer as the GET's ETag and
Last-Modified. A stub client stands for services that answer differently from SeaweedFS (the
e2e tests on SeaweedFS are in tests/e2e/test_conditional_get.py)."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

from tusd_py.storage.s3.bucket import Bucket

MODIFIED = datetime.datetime(2026, 12, 1, 12, 0, 0, tzinfo=datetime.UTC)


class HeadOnly:
    def __init__(self, etag: str) -> None:
        self.etag = etag

    async def head_object(self, **kwargs: Any) -> dict[str, Any]:
        return {"ContentLength": 5, "ETag": self.etag, "LastModified": MODIFIED, "ContentType": "text/plain"}


def describe(etag: str) -> Any:
    return asyncio.run(Bucket(HeadOnly(etag), "b", "p/").describe("p/key"))


def test_the_objects_etag_and_last_modified() -> None:
    described = describe('"9b2cf535f27731c974343645a3985328-2"')
    assert (described.size, described.etag, described.last_modified, described.content_type) == (
        5, '"9b2cf535f27731c974343645a3985328-2"', MODIFIED, "text/plain")


def test_an_etag_without_quotes_is_quoted() -> None:
    assert describe("9b2cf535f27731c974343645a3985328-2").etag == '"9b2cf535f27731c974343645a3985328-2"'
