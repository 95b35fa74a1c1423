"""What is in the test bucket, seen from outside the server: the check of the S3 scenario tests.

The scenario tests (tests/e2e/test_s3_clients.py, test_s3_instances.py,
test_s3_faults.py) upload through real tusd-py processes and then look into the
bucket with a plain botocore client of their own: the finished object's MD5,
what is left under the test's key prefix, the multipart uploads still open.
The server's own GET is not enough there: it could serve bytes from somewhere
else than the object a user of the bucket reads.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support import S3_ACCESS_KEY, S3_SECRET_KEY, S3Server, TusServer

MiB = 1024 * 1024
PART = 5 * MiB  # the S3 minimum, which SeaweedFS enforces: the part size of every scenario


def s3_flags(s3: S3Server, view: BucketView, **more: object) -> dict[str, object]:
    """The server flags of the S3 store under `view`'s prefix, 5 MiB parts (for Cluster and other hand-made servers)."""
    return {**s3.server_flags(view.prefix), "s3_part_size": PART, **more}


class BucketView:
    """A botocore client on the test S3 server, limited to one key prefix."""

    def __init__(self, endpoint: str, bucket: str, prefix: str) -> None:
        import botocore.session
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.client: Any = botocore.session.get_session().create_client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=S3_ACCESS_KEY,
            aws_secret_access_key=S3_SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 2}, read_timeout=30),
        )

    def md5(self, key: str) -> tuple[int, str]:
        """(size, MD5 hex) of the object `key` (relative to the prefix), read back whole in 1 MiB pieces."""
        digest = hashlib.md5()
        size = 0
        body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"]
        try:
            for chunk in iter(lambda: body.read(MiB), b""):
                digest.update(chunk)
                size += len(chunk)
        finally:
            body.close()
        return size, digest.hexdigest()

    def keys(self) -> list[str]:
        """Every object under the prefix, relative to it (the server's own `.tusd/` records included)."""
        found: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix, PaginationConfig={"MaxItems": 10_000}):
            found += [item["Key"][len(self.prefix):] for item in page.get("Contents", [])]
        return sorted(found)

    def open_uploads(self) -> list[str]:
        """Keys (relative to the prefix) of the multipart uploads still open under the prefix."""
        response = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.prefix)
        return sorted(item["Key"][len(self.prefix):] for item in response.get("Uploads", []))

    def parts(self, key: str) -> list[tuple[int, int]]:
        """(number, size) of the parts S3 holds of the open multipart upload of `key`."""
        uploads = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.prefix + key).get("Uploads", [])
        found: list[tuple[int, int]] = []
        for upload in uploads:
            if upload["Key"] == self.prefix + key:
                listed = self.client.list_parts(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                found += [(int(part["PartNumber"]), int(part["Size"])) for part in listed.get("Parts", [])]
        return sorted(found)

    def close(self) -> None:
        self.client.close()


def md5_of(data: bytes) -> tuple[int, str]:
    return len(data), hashlib.md5(data).hexdigest()


def upload_id(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[1]


def assert_stored(view: BucketView, url: str, data: bytes) -> None:
    """The upload at `url` is one finished object in the bucket, byte for byte, and nothing of it is left open."""
    key = upload_id(url)
    assert view.md5(key) == md5_of(data)
    assert key not in view.open_uploads()
    assert f".tusd/{key}.part" not in view.keys()  # the incomplete part went with the completion


# -- fixtures (a module imports them: `from tests.s3bucket import bucket, data_backend, s3_make_server`) ----------------

@pytest.fixture
def bucket(s3_server: S3Server) -> Iterator[BucketView]:
    """The session's SeaweedFS bucket, seen under a key prefix of this test's own."""
    view = BucketView(s3_server.endpoint, s3_server.bucket, f"scenario-{secrets.token_hex(4)}/")
    yield view
    view.close()


@pytest.fixture
def s3_make_server(make_server: Callable[..., TusServer], bucket: BucketView) -> Callable[..., TusServer]:
    """`make_server` on the S3 store (a module sets `data_backend` to "s3"): every server of
    the test on `bucket`'s prefix, with 5 MiB parts."""
    def make(**flags: object) -> TusServer:
        return make_server(s3_prefix=bucket.prefix, s3_part_size=PART, **flags)
    return make


@pytest.fixture
def data_backend() -> str:
    return "s3"
