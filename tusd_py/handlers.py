"""The tus 1.0.0 protocol: its headers and rules, on the upload engine.

Each method reads the request's headers, applies the spec's rules and calls the
engine (`engine.py`); it knows nothing about Redis, SQLite or files. The router
(`routing.py`) picks this protocol for every upload request that does not speak
the IETF draft, and runs the shared prelude first (method override, 405 from the
method table below, the Tus-Resumable check, authorize, errors -> `error_response`).
Every error comes from the table in `protocol.py`.
"""

from __future__ import annotations

import contextlib
import time
from typing import Awaitable, Callable, cast

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response

from tusd_py import protocol as p
from tusd_py.body import BodyReader
from tusd_py.checksum import new_hasher
from tusd_py.concat import Outcome
from tusd_py.download import download_response
from tusd_py.engine import UploadEngine
from tusd_py.state.base import FINISHED, Upload
from tusd_py.storage.base import ReadableDataStore
from tusd_py.urls import upload_url
from tusd_py.writes import Checksum

Endpoint = Callable[[Request, int], Awaitable[Response]]


def error_response(error: p.TusError, *, method: str = "GET") -> Response:
    """One line of text (`ERR_CODE: message`); HEAD answers carry no body."""
    body = b"" if method == "HEAD" else f"{error}\n".encode()
    response = Response(body, status_code=error.status, media_type="text/plain; charset=utf-8")
    for name, value in error.headers:
        response.headers[name] = value
    if error.status == 412:
        response.headers["Tus-Version"] = p.TUS_VERSION
    return response


class TusHandler:
    """tus 1.0.0: core, creation(-with-upload, -defer-length), termination, checksum,
    concatenation, expiration; GET downloads (not part of tus)."""

    name = "tus"

    def __init__(self, engine: UploadEngine) -> None:
        self.engine = engine
        self.config = engine.config
        self.creation_methods: dict[str, Endpoint] = {"POST": self.post, "OPTIONS": self.options}
        self.upload_methods: dict[str, Endpoint] = {}
        if engine.capabilities.download:
            self.upload_methods["GET"] = self.get
        self.upload_methods.update(HEAD=self.head, PATCH=self.patch, DELETE=self.delete, OPTIONS=self.options)

    # -- the router's questions ------------------------------------------------------

    @staticmethod
    def version(headers: Headers) -> int | None:
        """Every upload request may be a tus request (the draft is asked first)."""
        return 1

    @staticmethod
    def check_version(request: Request, method: str, version: int) -> None:
        """Tus-Resumable: 1.0.0 on every request but OPTIONS; GET and HEAD may go without
        (as tusd: browsers and plain HTTP tools read uploads too)."""
        value = request.headers.get("tus-resumable")
        if value is None:
            if method in ("GET", "HEAD"):
                return
            raise p.ERR_UNSUPPORTED_VERSION()
        if value.strip() != p.TUS_VERSION:
            raise p.ERR_UNSUPPORTED_VERSION()

    @staticmethod
    def error_response(error: p.TusError, request: Request, version: int) -> Response:
        return error_response(error, method=request.method)

    # -- OPTIONS -------------------------------------------------------------------

    async def options(self, request: Request, version: int) -> Response:
        # 200 rather than 204, as tusd: some browsers reject 204 answers to preflights.
        return Response(status_code=200, headers=self.engine.capabilities.tus_headers(self.config.max_size))

    # -- POST (creation, creation-with-upload, creation-defer-length) --------------

    async def post(self, request: Request, version: int) -> Response:
        headers = request.headers
        concat = p.parse_concat(headers.get("upload-concat"))
        if concat is not None and not self.engine.capabilities.concatenation:
            raise p.ERR_INVALID_CONCAT("this server's stores cannot concatenate uploads")
        if concat is not None and concat.final:
            return await self._post_final(request, concat)
        length = self._creation_length(request)
        metadata_header = headers.get("upload-metadata")
        self.engine.check_metadata(metadata_header)
        has_body = self._has_body(request)
        content_length = p.parse_uint(headers.get("content-length"), p.ERR_INVALID_CONTENT_LENGTH)
        checksum = None
        if has_body:
            self._check_body_fits(0, length, content_length)
            checksum = self._checksum(request)
        with self.engine.body_slot() if has_body else contextlib.nullcontext():
            return await self._create(request, length, metadata_header, has_body, checksum, concat)

    async def _create(
        self,
        request: Request,
        length: int | None,
        metadata_header: str | None,
        has_body: bool,
        checksum: Checksum | None,
        concat: p.Concat | None = None,  # `partial`, or None
    ) -> Response:
        engine = self.engine
        upload = Upload(
            id=p.new_upload_id(),
            length=length,
            metadata=metadata_header,
            created=time.time(),
            expires=engine.expiry(length == 0),
            concat=concat.raw if concat is not None else None,
            partial=concat is not None,
            state=FINISHED if length == 0 else "created",
        )
        upload = await engine.create(upload)
        response_headers = {"Location": upload_url(request, self.config, upload.id)}
        if upload.finished:
            await engine.finish(upload)
        elif has_body:
            result = await engine.write_new(upload, engine.reader(request.receive), checksum)
            upload = result.upload
            response_headers["Upload-Offset"] = str(upload.offset)
            # Interrupted bodies still get 201: the client learns the URL and resumes (CU-03).
            if result.error is not None and not result.keeps_upload:
                raise result.error.with_headers(**response_headers)
        self._expires_header(response_headers, upload)
        return Response(status_code=201, headers=response_headers)

    async def _post_final(self, request: Request, concat: p.Concat) -> Response:
        """concatenation: a final upload made of partial uploads (Upload-Length is ignored, as tusd)."""
        engine = self.engine
        assert engine.concat is not None  # `post` checked the capability
        metadata_header = request.headers.get("upload-metadata")
        engine.check_metadata(metadata_header)
        if self._has_body(request):
            raise p.ERR_MODIFY_FINAL()  # checklist CU-07
        # Checked (each part through the authorize hook first), not yet stored: pre-create sees
        # the final upload as it will be (is_final, its parts, its length), for ownership and quotas.
        upload = await engine.concat.new_final(concat, metadata_header)
        changed, choice = await engine.hooks.pre_create_data(upload)  # it may change the metadata and the key, not the id
        if changed.id != upload.id:
            raise p.ERR_HOOK_FAILED("the pre-create hook cannot choose the id of a final upload")
        upload = await engine.concat.store_final(upload.replace(metadata=changed.metadata), choice)
        engine.metrics.uploads_created.inc()
        engine.hooks.post_create(upload)
        location = upload_url(request, self.config, upload.id)
        # Complete parts are joined now, before the 201 (CC-17); others when they finish.
        try:
            outcome = await engine.concat.complete(upload.id)
        except p.TusError as error:  # pre-finish refused (or failed on) the assembled upload
            raise error.with_headers(Location=location) from None
        if outcome is Outcome.FAILED:
            raise p.ERR_NOT_FOUND("a partial upload went away while the final upload was created")
        return Response(status_code=201, headers={"Location": location})

    @staticmethod
    def _has_body(request: Request) -> bool:
        return p.media_type(request.headers) == p.OFFSET_CONTENT_TYPE

    def _creation_length(self, request: Request) -> int | None:
        length = p.parse_length(request.headers.get("upload-length"), p.ERR_INVALID_UPLOAD_LENGTH)
        defer = request.headers.get("upload-defer-length")
        if length is not None and defer is not None:
            raise p.ERR_AMBIGUOUS_UPLOAD_LENGTH()
        if defer is not None and (defer.strip() != "1" or not self.engine.capabilities.defer_length):
            raise p.ERR_INVALID_UPLOAD_LENGTH_DEFER()
        if length is None and defer is None:
            raise p.ERR_INVALID_UPLOAD_LENGTH()
        if length is not None and self.config.max_size and length > self.config.max_size:
            raise p.ERR_MAX_SIZE_EXCEEDED()
        return length

    def _check_body_fits(self, offset: int, length: int | None, content_length: int | None) -> None:
        room = self.engine.room(offset, length)
        if content_length is not None and room is not None and content_length > room:
            raise p.ERR_UPLOAD_SIZE_EXCEEDED() if length is not None else p.ERR_MAX_SIZE_EXCEEDED()

    @staticmethod
    def _checksum(request: Request) -> Checksum | None:
        parsed = p.parse_checksum(request.headers.get("upload-checksum"))
        if parsed is None:
            return None
        algorithm, digest = parsed
        return new_hasher(algorithm), digest

    @staticmethod
    def _expires_header(headers: dict[str, str], upload: Upload) -> None:
        if upload.expires is not None and not upload.finished:
            headers["Upload-Expires"] = p.format_http_date(upload.expires)

    # -- HEAD ----------------------------------------------------------------------

    async def head(self, request: Request, version: int) -> Response:
        # Under the lock (asking a running PATCH to let go, as tusd), so the offset
        # reported is not one that a PATCH still streaming is about to move.
        async with self.engine.locked(request.path_params["upload_id"]) as (_, upload):
            pass
        headers = {"Cache-Control": "no-store"}
        if not (upload.final and not upload.finished):  # a final upload has no offset until it is assembled
            headers["Upload-Offset"] = str(upload.offset)
        if upload.length is not None:
            headers["Upload-Length"] = str(upload.length)
        else:
            headers["Upload-Defer-Length"] = "1"
        if upload.metadata is not None:
            headers["Upload-Metadata"] = upload.metadata
        if upload.concat is not None:
            headers["Upload-Concat"] = upload.concat
        self._expires_header(headers, upload)
        return Response(status_code=200, headers=headers)

    # -- PATCH ---------------------------------------------------------------------

    async def patch(self, request: Request, version: int) -> Response:
        headers = request.headers
        upload_id = request.path_params["upload_id"]
        if not p.is_valid_id(upload_id):
            raise p.ERR_NOT_FOUND()
        if p.media_type(headers) != p.OFFSET_CONTENT_TYPE:
            raise p.ERR_INVALID_CONTENT_TYPE()
        offset = p.parse_uint(headers.get("upload-offset"), p.ERR_INVALID_OFFSET)
        if offset is None:
            raise p.ERR_INVALID_OFFSET()
        declared = p.parse_length(headers.get("upload-length"), p.ERR_INVALID_UPLOAD_LENGTH)
        content_length = p.parse_uint(headers.get("content-length"), p.ERR_INVALID_CONTENT_LENGTH)
        checksum = self._checksum(request)
        with self.engine.body_slot():
            return await self._append(upload_id, offset, declared, content_length, checksum, self.engine.reader(request.receive))

    async def _append(
        self,
        upload_id: str,
        offset: int,
        declared: int | None,
        content_length: int | None,
        checksum: Checksum | None,
        reader: BodyReader,
    ) -> Response:
        engine = self.engine
        async with engine.locked(upload_id, reader) as (lock, upload):
            if upload.final:
                raise p.ERR_MODIFY_FINAL()
            if offset != upload.offset:
                raise p.ERR_MISMATCHED_OFFSET(Upload_Offset=str(upload.offset))
            if upload.finished or (declared is not None and declared == offset and upload.length is None):
                # Complete, or completed by this request's Upload-Length: there is no room for a byte.
                await self._refuse_body(reader, content_length)
            if declared is not None:
                upload = await engine.declare_length(upload, declared)
            response_headers: dict[str, str] = {}
            if upload.finished:
                # tusd: an empty PATCH to a complete upload changes nothing and reports the offset.
                if declared is not None:  # declaring the length completed it (checklist DL-08)
                    await engine.finish(upload)
                response_headers["Upload-Offset"] = str(upload.offset)
                return Response(status_code=204, headers=response_headers)
            self._check_body_fits(offset, upload.bound, content_length)
            result = await engine.write(upload, reader, lock, checksum)
        if result.error is not None:
            raise result.error.with_headers(Connection="close") if result.close else result.error
        response_headers["Upload-Offset"] = str(result.upload.offset)
        self._expires_header(response_headers, result.upload)
        return Response(status_code=204, headers=response_headers)

    @staticmethod
    async def _refuse_body(reader: BodyReader, content_length: int | None) -> None:
        """413 for a body sent to an upload that takes no more bytes (its bytes would go
        nowhere); an empty body passes. Without Content-Length only reading tells."""
        if content_length is None:
            async for chunk in reader:
                if chunk:
                    raise p.ERR_UPLOAD_ALREADY_COMPLETE(Connection="close")  # the rest is not read
        elif content_length > 0:
            raise p.ERR_UPLOAD_ALREADY_COMPLETE()

    # -- DELETE (termination) ------------------------------------------------------

    async def delete(self, request: Request, version: int) -> Response:
        async with self.engine.locked(request.path_params["upload_id"]) as (_, upload):
            await self.engine.hooks.pre_terminate(upload)  # may refuse
            await self.engine.terminate(upload)
        return Response(status_code=204)

    # -- GET (download, not part of tus) -------------------------------------------

    async def get(self, request: Request, version: int) -> Response:
        upload = await self.engine.load(request.path_params["upload_id"])
        await self.engine.readable(upload)  # 409 for an unfinished upload on a store that reads finished ones only
        return download_response(request, upload, cast(ReadableDataStore, self.engine.data))  # GET is there only then
