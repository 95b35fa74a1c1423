"""The S3 store when S3 misbehaves: moto (ThreadedMotoServer on 127.0.0.1) behind a fault proxy.

Errors are retried with backoff, what could not be stored is reported as not
durable, and every failure surfaces as `StorageUnavailable` in bounded time.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.s3faults import FaultProxy
from tests.support import free_port
from tusd_py.storage.s3 import S3Options, S3Store, StorageUnavailable

MiB = 1024 * 1024
PART = 5 * MiB

pytestmark = pytest.mark.usefixtures("s3_credentials")


@pytest.fixture(scope="module")
def moto_port() -> Iterator[int]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield port
    finally:
        server.stop()


@pytest.fixture
def proxy(moto_port: int) -> Iterator[FaultProxy]:
    proxy = FaultProxy(moto_port).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def run(endpoint: str, body: Callable[[S3Store], Awaitable[Any]], **overrides: Any) -> Any:
    settings: dict[str, Any] = dict(bucket="faults", endpoint_url=endpoint, region="us-east-1", path_style=True,
                                    prefix=f"f-{secrets.token_hex(4)}/", part_size=PART, connect_timeout=1.0, read_timeout=2.0)
    settings.update(overrides)

    async def main() -> Any:
        async with S3Store(S3Options(**settings)) as store:
            with contextlib.suppress(ClientError):  # there already
                await store.bucket.client.create_bucket(Bucket="faults")
            return await body(store)
    return asyncio.run(main())


async def write(store: S3Store, upload_id: str, payload: bytes, length: int) -> tuple[int, OSError | None]:
    writer = store.writer(upload_id, 0, length=length)
    for start in range(0, len(payload), MiB):
        await writer.write(payload[start:start + MiB])
    return await writer.finish(), writer.error


def test_a_failed_part_is_retried_with_backoff(proxy: FaultProxy) -> None:
    payload = bytes(range(256)) * (2 * PART // 256)

    async def body(store: S3Store) -> None:
        await store.create("retry1", len(payload))
        proxy.fail(2, match="partNumber=2")  # two 503s, the third attempt goes through
        assert await write(store, "retry1", payload, len(payload)) == (len(payload), None)
        await store.finish("retry1", len(payload))
        assert b"".join([c async for c in store.read("retry1", 0, len(payload))]) == payload

    run(proxy.endpoint, body)
    assert proxy.failed == 2


def test_a_part_that_keeps_failing_leaves_only_what_is_durable(proxy: FaultProxy) -> None:
    payload = b"z" * (3 * PART + 10)

    async def body(store: S3Store) -> None:
        await store.create("fail1", len(payload))
        proxy.fail(100, match="partNumber=2")
        written, error = await write(store, "fail1", payload, len(payload))
        assert written == PART  # part 1 made it; 2 did not, so 3 does not count
        assert isinstance(error, StorageUnavailable) and "SlowDown" in str(error)

    run(proxy.endpoint, body, attempts=2)


def test_s3_errors_become_storage_unavailable(proxy: FaultProxy) -> None:
    async def body(store: S3Store) -> None:
        proxy.fail(10, match="uploads")
        with pytest.raises(StorageUnavailable, match="SlowDown"):
            await store.create("err1", 10)
        assert not store.writable()

    run(proxy.endpoint, body, attempts=2)


def test_slow_answers_give_up_in_bounded_time(proxy: FaultProxy) -> None:
    async def body(store: S3Store) -> None:
        proxy.delay = 3.0
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match="[Tt]imeout"):
            await store.check_bucket()
        assert time.monotonic() - started < 5

    run(proxy.endpoint, body, attempts=2, read_timeout=0.5)


def test_an_unreachable_endpoint_gives_up_in_bounded_time() -> None:
    async def body(store: S3Store) -> None:
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match="cannot reach bucket 'faults'"):
            await store.check_bucket()
        assert time.monotonic() - started < 5

    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = dict(bucket="faults", endpoint_url=closed, region="us-east-1", path_style=True, connect_timeout=0.5, attempts=2)

    async def main() -> None:
        async with S3Store(S3Options(**settings)) as store:  # type: ignore[arg-type]
            await body(store)
    asyncio.run(main())
