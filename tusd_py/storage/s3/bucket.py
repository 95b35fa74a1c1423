"""Every S3 call the store makes, one method each, with its errors mapped.

Nothing above this module touches the aiobotocore client or botocore's
exceptions: the writer, the store and the concatenation speak in upload
handles, part numbers and bytes.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import payload as aiohttp_payload
from aiohttp.abc import AbstractStreamWriter

from tusd_py.storage.base import Described
from tusd_py.storage.s3.errors import StorageUnavailable, UploadNotFound, mapped
from tusd_py.storage.s3.keys import incomplete_key, info_key

READ_SIZE = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Handle:
    """What the store needs to find an upload's objects: kept in its `.info` object."""

    upload_id: str  # the tus upload's id
    key: str  # the object's full key (prefix included)
    multipart_id: str  # S3's UploadId of its multipart upload
    part_size: int

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Handle:
        fields = json.loads(data)
        return cls(str(fields["upload_id"]), str(fields["key"]), str(fields["multipart_id"]), int(fields["part_size"]))


@dataclasses.dataclass(frozen=True)
class Part:
    number: int
    size: int
    etag: str
    modified: datetime.datetime


@dataclasses.dataclass(frozen=True)
class Pending:
    """A multipart upload found in the bucket (ListMultipartUploads)."""

    key: str
    multipart_id: str
    initiated: datetime.datetime
    upload_id: str | None = None  # whose it is, where the store can tell (`S3Store.orphans`)


class PartBody(io.RawIOBase):
    """A part's bytes as a seekable stream, so the HTTP client sends them without a copy.

    Given `bytes`, aiohttp hands the whole part to the transport, which keeps a
    copy of what the socket did not take at once (most of it); given a BytesIO,
    aiohttp exports its buffer, which copies it too. Read in pieces, a part in
    flight costs its own size once. Seekable, so botocore can hash it for SigV4
    and rewind it for a retry. `read` hands out views of the part, not copies:
    botocore's SigV4 hash reads it in 1 MiB pieces and aiohttp in 256 KiB ones,
    and `io.RawIOBase.read` would copy every piece twice (into a bytearray, then
    into bytes), for both (measured: 0.2 s of CPU per GiB).
    """

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        super().__init__()
        self._view = memoryview(data)
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        self._position = max(0, min(base + offset, len(self._view)))
        return self._position

    def read(self, size: int | None = -1) -> memoryview:
        """The next `size` bytes (all that are left for -1/None), as a view of the part."""
        end = len(self._view) if size is None or size < 0 else min(self._position + size, len(self._view))
        piece = self._view[self._position:end]
        self._position = max(self._position, end)
        return piece

    def readinto(self, buffer: Any) -> int:
        piece = self._view[self._position:self._position + len(buffer)]
        buffer[:len(piece)] = piece
        self._position += len(piece)
        return len(piece)

    def __len__(self) -> int:
        return len(self._view)


class PartPayload(aiohttp_payload.Payload):
    """How aiohttp sends a `PartBody`: its views written from the event loop, 1 MiB at a time.

    aiohttp's own payload for a stream (`IOBasePayload`) reads every 256 KiB in a
    thread of the default executor: 32 thread hand-overs per 8 MiB part, 6% of the
    server's busy time on the S3 path in a profile, and each hand-over waits for a
    thread to be scheduled, which on a loaded machine delays every part. The bytes
    are in memory already: nothing here blocks. Registered below for `PartBody`
    only (aiobotocore hands aiohttp the body in a transparent proxy, which the
    registry's isinstance check sees through).
    """

    PIECE = 1024 * 1024

    def __init__(self, value: PartBody, *args: Any, **kwargs: Any) -> None:
        super().__init__(value, *args, **kwargs)
        self._size = len(value) - value.tell()

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a part's bytes are not text")

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: AbstractStreamWriter, content_length: int | None) -> None:
        body: PartBody = self._value
        remaining = content_length
        while remaining is None or remaining > 0:
            piece = body.read(self.PIECE if remaining is None else min(self.PIECE, remaining))
            if not piece:
                return
            await writer.write(piece)  # waits for the socket when aiohttp's buffer is full
            if remaining is not None:
                remaining -= len(piece)


aiohttp_payload.PAYLOAD_REGISTRY.register(PartPayload, PartBody, order=aiohttp_payload.Order.try_first)


class Bucket:
    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client = client
        self.name = bucket
        self.prefix = prefix

    # -- the upload's record -------------------------------------------------

    async def put_info(self, handle: Handle) -> None:
        with mapped(f"write the record of {handle.upload_id}"):
            await self.client.put_object(Bucket=self.name, Key=info_key(self.prefix, handle.upload_id), Body=handle.to_json())

    async def get_info(self, upload_id: str) -> Handle:
        with mapped(f"read the record of {upload_id}"):
            response = await self.client.get_object(Bucket=self.name, Key=info_key(self.prefix, upload_id))
            async with response["Body"] as body:
                data = await body.read()
        try:
            return Handle.from_json(data)
        except (KeyError, TypeError, ValueError) as error:
            raise StorageUnavailable(f"the record of {upload_id} in the bucket is not one of ours: {error}") from error

    # -- the multipart upload ------------------------------------------------

    async def create_multipart(self, key: str, content_type: str | None, metadata: dict[str, str]) -> str:
        extra: dict[str, Any] = {"ContentType": content_type} if content_type else {}
        with mapped(f"create the multipart upload of {key}"):
            response = await self.client.create_multipart_upload(Bucket=self.name, Key=key, Metadata=metadata, **extra)
        return str(response["UploadId"])

    async def upload_part(self, handle: Handle, number: int, data: bytes | bytearray | memoryview) -> str:
        """Part `number` := `data`; its ETag."""
        return (await self.put_part(handle, number, data))[0]

    async def put_part(self, handle: Handle, number: int, data: bytes | bytearray | memoryview) -> tuple[str, int]:
        """`upload_part`, and how many times botocore retried it (0: the first attempt went through)."""
        with mapped(f"upload part {number} of {handle.upload_id}"):
            response = await self.client.upload_part(
                Bucket=self.name, Key=handle.key, UploadId=handle.multipart_id, PartNumber=number, Body=PartBody(data)
            )
        return str(response["ETag"]), int(response.get("ResponseMetadata", {}).get("RetryAttempts", 0))

    async def copy_part(self, handle: Handle, number: int, source_key: str, start: int, end: int) -> str:
        """Part `number` := bytes [start, end) of `source_key`, copied inside S3."""
        with mapped(f"copy part {number} of {handle.upload_id} from {source_key}"):
            response = await self.client.upload_part_copy(
                Bucket=self.name, Key=handle.key, UploadId=handle.multipart_id, PartNumber=number,
                CopySource={"Bucket": self.name, "Key": source_key}, CopySourceRange=f"bytes={start}-{end - 1}",
            )
        return str(response["CopyPartResult"]["ETag"])

    async def list_parts(self, handle: Handle) -> list[Part]:
        """Every part listed, in S3's order (some services list a replaced part twice)."""
        parts: list[Part] = []
        marker = 0
        with mapped(f"list the parts of {handle.upload_id}"):
            for _ in range(1000):  # 10,000 parts at 1,000 a page, with room for duplicates
                response = await self.client.list_parts(
                    Bucket=self.name, Key=handle.key, UploadId=handle.multipart_id, PartNumberMarker=marker
                )
                for part in response.get("Parts", []):
                    parts.append(Part(int(part["PartNumber"]), int(part["Size"]), str(part["ETag"]), part["LastModified"]))
                if not response.get("IsTruncated"):
                    break
                marker = int(response["NextPartNumberMarker"])
        return parts

    async def complete(self, handle: Handle, etags: list[tuple[int, str]]) -> None:
        parts = [{"PartNumber": number, "ETag": etag} for number, etag in etags]
        with mapped(f"complete the multipart upload of {handle.upload_id}"):
            await self.client.complete_multipart_upload(
                Bucket=self.name, Key=handle.key, UploadId=handle.multipart_id, MultipartUpload={"Parts": parts}
            )

    async def abort(self, key: str, multipart_id: str) -> None:
        """Abort a multipart upload; one already gone is no error."""
        try:
            with mapped(f"abort the multipart upload of {key}"):
                await self.client.abort_multipart_upload(Bucket=self.name, Key=key, UploadId=multipart_id)
        except UploadNotFound:
            pass

    async def pending(self) -> AsyncIterator[Pending]:
        """The multipart uploads under the prefix, finished or not by the engine."""
        markers: dict[str, str] = {}
        with mapped("list multipart uploads"):
            for _ in range(100_000):
                response = await self.client.list_multipart_uploads(Bucket=self.name, Prefix=self.prefix, **markers)
                for upload in response.get("Uploads", []):
                    yield Pending(str(upload["Key"]), str(upload["UploadId"]), upload["Initiated"])
                if not response.get("IsTruncated"):
                    break
                markers = {"KeyMarker": response["NextKeyMarker"], "UploadIdMarker": response["NextUploadIdMarker"]}

    # -- the incomplete part -------------------------------------------------

    async def put_incomplete(self, handle: Handle, start: int, data: bytes) -> None:
        """Keep `data`, the bytes from offset `start` on that fill no part yet."""
        with mapped(f"write the incomplete part of {handle.upload_id}"):
            await self.client.put_object(
                Bucket=self.name, Key=incomplete_key(self.prefix, handle.upload_id), Body=data, Metadata={"start": str(start)}
            )

    async def get_incomplete(self, handle: Handle, start: int, size: int) -> bytes | None:
        """The first `size` bytes of the incomplete part, if the one in the bucket starts at `start`."""
        try:
            with mapped(f"read the incomplete part of {handle.upload_id}"):
                response = await self.client.get_object(
                    Bucket=self.name, Key=incomplete_key(self.prefix, handle.upload_id), Range=f"bytes=0-{size - 1}"
                )
                async with response["Body"] as body:
                    data: bytes = await body.read()
        except UploadNotFound:
            return None
        if response.get("Metadata", {}).get("start") != str(start) or len(data) != size:
            return None
        return data

    async def incomplete(self, handle: Handle) -> tuple[int, int] | None:
        """(start, size) of the incomplete part in the bucket, if there is one."""
        try:
            with mapped(f"look up the incomplete part of {handle.upload_id}"):
                response = await self.client.head_object(Bucket=self.name, Key=incomplete_key(self.prefix, handle.upload_id))
        except UploadNotFound:
            return None
        return int(response.get("Metadata", {}).get("start", -1)), int(response["ContentLength"])

    async def incomplete_tag(self, handle: Handle) -> str | None:
        """The ETag of the incomplete part in the bucket (None if there is none): a writer's
        check that no other writer replaced it meanwhile."""
        try:
            with mapped(f"look up the incomplete part of {handle.upload_id}"):
                response = await self.client.head_object(Bucket=self.name, Key=incomplete_key(self.prefix, handle.upload_id))
        except UploadNotFound:
            return None
        return str(response["ETag"])

    # -- plain objects -------------------------------------------------------

    async def size(self, key: str) -> int | None:
        try:
            with mapped(f"look up {key}"):
                response = await self.client.head_object(Bucket=self.name, Key=key)
        except UploadNotFound:
            return None
        return int(response["ContentLength"])

    async def describe(self, key: str) -> Described:
        """A finished object's validators (HeadObject): S3's ETag is strong, a hash of the bytes."""
        with mapped(f"look up {key}"):
            response = await self.client.head_object(Bucket=self.name, Key=key)
        etag = str(response["ETag"])
        if not etag.startswith('"'):
            etag = f'"{etag}"'  # a service that leaves the quotes out (the header needs them)
        return Described(int(response["ContentLength"]), etag, response["LastModified"], response.get("ContentType"))

    async def delete(self, key: str) -> None:
        with mapped(f"delete {key}"):
            await self.client.delete_object(Bucket=self.name, Key=key)

    async def get_small(self, key: str) -> bytes | None:
        """A small object whole (a record or a marker), None if there is none."""
        try:
            with mapped(f"read {key}"):
                response = await self.client.get_object(Bucket=self.name, Key=key)
                async with response["Body"] as body:
                    data: bytes = await body.read()
        except UploadNotFound:
            return None
        return data

    async def put(self, key: str, data: bytes) -> None:
        with mapped(f"write {key}"):
            await self.client.put_object(Bucket=self.name, Key=key, Body=data)

    async def head_bucket(self) -> None:
        with mapped(f"reach bucket {self.name}"):
            await self.client.head_bucket(Bucket=self.name)

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end) of an object, as they arrive (never the whole in memory)."""
        if end <= start:
            return
        with mapped(f"read {key}"):
            response = await self.client.get_object(Bucket=self.name, Key=key, Range=f"bytes={start}-{end - 1}")
        body = response["Body"]
        try:
            remaining = end - start
            while remaining > 0:
                with mapped(f"read {key}"):
                    chunk: bytes = await body.read(min(READ_SIZE, remaining))
                if not chunk:
                    raise UploadNotFound(f"read {key}: {remaining} bytes short")
                remaining -= len(chunk)
                yield chunk
        finally:
            body.close()
