"""Requests that speak the IETF resumable-upload draft, on the same uploads as tus requests.

The draft's rules, applied on the upload engine's public API (`engine.py`), as the
tus handler is: the same locks (and lock exchange), the same body writes and
commits, the same state and data stores. So a draft client and a tus client can
share uploads, instances and a cluster, and nothing about scale-out needs to know which protocol a request spoke.

How the draft maps onto the shared `Upload` record: completion is explicit in the
draft (the offset reaching the length completes nothing, checklist I-03), so a
draft upload keeps `length` unset, as a tus upload with a deferred length, until
a request with `Upload-Complete: ?1` has been fully processed; the length it
announced before that is `expected_length`, which bounds the offset. Completing
declares the length, which finishes the upload for both protocols at once.

Interop version 6 (draft -05) is served as tusd serves it: a length announced with
`Upload-Length` is the upload's length, reached means complete. Its one real client,
tus-js-client's `ietf-draft-05`, depends on that: reading from a file in chunks, it
never sends `Upload-Complete: ?1` (its node FileSource marks only a chunk that covers
the whole file as the last), and takes the offset reaching the size for success.
"""

from __future__ import annotations

import contextlib
import time
from typing import Awaitable, Callable, cast

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response

from tusd_py import ietf, protocol as p
from tusd_py.body import BodyReader
from tusd_py.digests import Digests
from tusd_py.download import download_response
from tusd_py.engine import UploadEngine
from tusd_py.interim import send_interim
from tusd_py.locks.base import Lock, LockTimeout
from tusd_py.state.base import FINISHED, FullStateStore, Upload
from tusd_py.storage.base import ReadableDataStore
from tusd_py.urls import upload_url
from tusd_py.writes import Checksum, WriteResult

Endpoint = Callable[[Request, int], Awaitable[Response]]


class IetfHandler:
    """The draft, interop versions 6, 8 and 9 (`ietf.VERSIONS`)."""

    name = "ietf-draft"

    def __init__(self, engine: UploadEngine) -> None:
        self.engine = engine
        self.config = engine.config
        self.data = cast(ReadableDataStore, engine.data)  # the draft needs ranged reads (capabilities.py)
        self.digests = Digests(cast(FullStateStore, engine.state), self.data)
        self.creation_methods: dict[str, Endpoint] = {"POST": self.post, "OPTIONS": self.options}
        self.upload_methods: dict[str, Endpoint] = {
            "GET": self.get,
            "HEAD": self.head,
            "PATCH": self.patch,
            "DELETE": self.delete,
            "OPTIONS": self.options,
        }

    # -- the router's questions ------------------------------------------------------

    @staticmethod
    def version(headers: Headers) -> int | None:
        """The interop version the request speaks, or None: then it is no draft request."""
        return ietf.interop_version(headers)

    @staticmethod
    def check_version(request: Request, method: str, version: int) -> None:
        """The interop version was checked when the protocol was picked."""

    def error_response(self, error: p.TusError, request: Request, version: int) -> Response:
        return ietf.error_response(error, request, version, ietf.upload_limit(self.config, version))

    # -- OPTIONS (I-08) ------------------------------------------------------------

    async def options(self, request: Request, version: int) -> Response:
        response = Response(status_code=200, headers=self.engine.capabilities.tus_headers(self.config.max_size))
        response.headers["Upload-Limit"] = ietf.upload_limit(self.config, version)
        # Drafts -10 and -11 asked for it on the creation URI; -12 dropped it there (PATCH does not
        # work on that URI, #3440). On an upload resource it stays true: PATCH takes that type.
        if version < 9 or "upload_id" in request.path_params:
            response.headers["Accept-Patch"] = ietf.PARTIAL_UPLOAD
        response.headers["Upload-Draft-Interop-Version"] = str(version)
        return response

    # -- POST: upload creation (I-10 to I-18) --------------------------------------

    async def post(self, request: Request, version: int) -> Response:
        headers = request.headers
        fields = ietf.request_fields(headers)
        if fields.complete is None:
            raise p.ERR_INVALID_UPLOAD_COMPLETE()
        expected = ietf.announced_length(fields, offset=0, known=None)
        if expected is not None and self.config.max_size and expected > self.config.max_size:
            raise p.ERR_MAX_SIZE_EXCEEDED()
        metadata = ietf.metadata(headers)
        self.engine.check_metadata(metadata)
        has_body = ietf.has_content(headers, fields)
        checksum = None
        if has_body:
            self._check_content_fits(0, expected, fields.content_length)
            checksum = ietf.content_checksum(request.headers)
        tus_length = expected if version < 7 and fields.length is not None else None  # see the module doc
        upload = Upload(
            id=p.new_upload_id(),
            length=tus_length,  # else set when the upload completes (I-03)
            expected_length=None if tus_length is not None else expected,
            state=FINISHED if tus_length == 0 else "created",
            metadata=metadata,
            created=time.time(),
            expires=self.engine.expiry(False),
            repr_digest=ietf.repr_digest(headers),
            want_repr_digest=ietf.want_repr_digest(headers),
        )
        with self.engine.body_slot() if has_body else contextlib.nullcontext():
            return await self._create(request, version, upload, fields, has_body, checksum)

    async def _create(
        self,
        request: Request,
        version: int,
        upload: Upload,
        fields: ietf.Fields,
        has_body: bool,
        checksum: Checksum | None,
    ) -> Response:
        engine = self.engine
        upload = await engine.create(upload)
        location = upload_url(request, self.config, upload.id)
        headers = {"Location": location, "Upload-Limit": ietf.upload_limit(self.config, version, upload)}
        if upload.finished:  # draft -05, an empty upload
            await self.engine.finish(upload)
        if has_body:  # the resource exists: say where, before reading the content (I-10, I-11)
            await self._interim(request, {**headers, "Upload-Draft-Interop-Version": str(version)})
        digest: dict[str, str] = {}
        if (has_body or fields.complete) and not upload.finished:
            reader = self.engine.reader(request.receive)
            try:
                async with self.engine.lock(upload.id, reader) as lock:
                    if has_body:
                        result = await self.engine.write(upload, reader, lock, checksum, self._progress(request, version))
                        upload = result.upload
                        if result.error is not None:
                            raise await self._body_error(result, version, Location=location)
                    if fields.complete:
                        upload, digest = await self._complete(request, upload, lock)
            except LockTimeout:
                raise p.ERR_UPLOAD_LOCKED(Location=location) from None
            except p.TusError as error:
                error = self._limited(error, version, upload)
                if version >= 9 and all(name != "Location" for name, _ in error.headers):
                    error = error.with_headers(Location=location)  # resumable (`?0`) even without the 104
                raise error from None
        headers.update(ietf.state_headers(upload, version), **digest)
        headers["Upload-Limit"] = ietf.upload_limit(self.config, version, upload)
        return Response(status_code=201, headers=headers)

    # -- HEAD: offset retrieval (I-19 to I-21) -------------------------------------

    async def head(self, request: Request, version: int) -> Response:
        if version < 7 and any(name in request.headers for name in ietf.DRAFT_FIELDS):
            raise p.ERR_UNEXPECTED_UPLOAD_FIELD()  # -05: a 400 (I-21)
        async with self.engine.locked(request.path_params["upload_id"]) as (_, upload):
            pass  # read under the lock: a running append is asked to stop first (I-30)
        ietf.check_representable(upload)
        headers = self._answer_headers(upload, version)
        headers["Cache-Control"] = "no-store"
        headers.update(await self._wanted_digest(request, upload))
        return Response(status_code=204, headers=headers)

    # -- PATCH: upload append (I-22 to I-28) ---------------------------------------

    async def patch(self, request: Request, version: int) -> Response:
        headers = request.headers
        upload_id = request.path_params["upload_id"]
        if not p.is_valid_id(upload_id):
            raise p.ERR_NOT_FOUND()
        if p.media_type(headers) != ietf.PARTIAL_UPLOAD:
            raise p.ERR_INVALID_PARTIAL_UPLOAD()
        fields = ietf.request_fields(headers)
        if fields.offset is None:
            raise p.ERR_INVALID_OFFSET()
        if fields.complete is None:
            raise p.ERR_INVALID_UPLOAD_COMPLETE()
        checksum = ietf.content_checksum(request.headers)
        with self.engine.body_slot():
            return await self._append(request, version, upload_id, fields, checksum, self.engine.reader(request.receive))

    async def _append(
        self,
        request: Request,
        version: int,
        upload_id: str,
        fields: ietf.Fields,
        checksum: Checksum | None,
        reader: BodyReader,
    ) -> Response:
        has_body = ietf.has_content(request.headers, fields)
        digest: dict[str, str] = {}
        async with self.engine.locked(upload_id, reader) as (lock, upload):
            ietf.check_representable(upload)
            if upload.final:
                raise p.ERR_MODIFY_FINAL()
            if version >= 9 and fields.offset != upload.offset:  # -12: also on a completed upload (a MUST)
                raise p.ERR_MISMATCHED_OFFSET(Upload_Offset=str(upload.offset), Upload_Complete="?0")
            if upload.finished:
                return await self._append_to_complete(request, version, upload, fields, has_body)
            if fields.offset != upload.offset:
                raise p.ERR_MISMATCHED_OFFSET(Upload_Offset=str(upload.offset), Upload_Complete="?0")
            try:
                upload = await self._record_length(upload, fields, version)
                if has_body:
                    await self._check_fits(upload, fields.content_length, version)
                    result = await self.engine.write(upload, reader, lock, checksum, self._progress(request, version))
                    upload = result.upload
                    if result.error is not None:
                        raise await self._body_error(result, version)
            except p.TusError as error:
                raise self._limited(error, version, upload) from None
            if fields.complete:
                upload, digest = await self._complete(request, upload, lock)
        headers = self._answer_headers(upload, version)
        headers.update(digest)
        if upload.finished:  # what the creation would have answered, marked as the upload's end (I-24)
            headers["Location"] = upload_url(request, self.config, upload.id)
            return Response(status_code=200, headers=headers)
        return Response(status_code=204, headers=headers)

    async def _append_to_complete(
        self, request: Request, version: int, upload: Upload, fields: ietf.Fields, has_body: bool
    ) -> Response:
        """An append to an upload already complete changes nothing (I-26). From -12 on (interop 9)
        nothing must be rejected as such: the valid request (the completing one again) is
        answered with the final response again, anything else is refused as what it is, a
        request of the upload protocol (`Upload-Complete: ?0`, no `completed-upload` problem)."""
        if version >= 7 and fields.complete and not has_body and fields.offset == upload.offset:
            # The completing request's response was lost: answer it again.
            headers = self._answer_headers(upload, version)
            headers["Location"] = upload_url(request, self.config, upload.id)
            headers.update(await self._wanted_digest(request, upload))
            return Response(status_code=200, headers=headers)
        if version >= 7 and has_body:
            raise p.ERR_INCONSISTENT_LENGTH("the upload is complete: no more content can be appended", Upload_Complete="?1")
        raise p.ERR_UPLOAD_COMPLETED(Upload_Complete="?1")

    # -- DELETE: cancellation (I-29) and GET ---------------------------------------

    async def delete(self, request: Request, version: int) -> Response:
        if version < 7 and any(name in request.headers for name in ("upload-offset", "upload-complete")):
            raise p.ERR_UNEXPECTED_UPLOAD_FIELD()  # -05: a 400
        async with self.engine.locked(request.path_params["upload_id"]) as (_, upload):  # a running append stops first
            await self.engine.hooks.pre_terminate(upload)  # may refuse
            await self.engine.terminate(upload)
        return Response(status_code=204, headers={"Upload-Draft-Interop-Version": str(version)})

    async def get(self, request: Request, version: int) -> Response:
        """The bytes so far (tus-py's download), with the offset fields: from -12 on (interop 9)
        a GET is offset retrieval like HEAD (#3467), with the same fields and `no-store`."""
        upload = await self.engine.load(request.path_params["upload_id"])
        ietf.check_representable(upload)
        await self.engine.readable(upload)
        response = download_response(request, upload, self.data)
        response.headers.update(self._answer_headers(upload, version))
        if version >= 9:
            response.headers["Cache-Control"] = "no-store"
        return response

    # -- the rules -----------------------------------------------------------------

    async def _record_length(self, upload: Upload, fields: ietf.Fields, version: int) -> Upload:
        """Record a length an append announces (I-14); it must agree with the one known."""
        length = ietf.announced_length(fields, offset=upload.offset, known=upload.bound)
        if length is None or upload.bound is not None:
            return upload
        if self.config.max_size and length > self.config.max_size:
            raise p.ERR_MAX_SIZE_EXCEEDED()
        if version < 7 and fields.length is not None:  # draft -05: the tus length (module doc)
            upload = await self.engine.declare_length(upload, length)
            if upload.finished:
                await self.engine.finish(upload)
            return upload
        if not await self.engine.expect_length(upload, length):
            raise p.ERR_INCONSISTENT_LENGTH()
        return upload.replace(expected_length=length)

    def _check_content_fits(self, offset: int, bound: int | None, content_length: int | None) -> None:
        if content_length is None:
            return
        if bound is not None and offset + content_length > bound:
            raise p.ERR_INCONSISTENT_LENGTH("the content would take the upload past its length")
        if self.config.max_size and offset + content_length > self.config.max_size:
            raise p.ERR_MAX_SIZE_EXCEEDED()

    async def _check_fits(self, upload: Upload, content_length: int | None, version: int) -> None:
        """The offset never passes a known length (I-05): from -08 on, a request that would
        make it do so also ends the upload, which takes no further requests."""
        try:
            self._check_content_fits(upload.offset, upload.bound, content_length)
        except p.TusError as error:
            if error.code == p.ERR_INCONSISTENT_LENGTH.code and version >= 7:
                raise await self._cancel(upload, "the content would take the upload past its length") from None
            raise

    async def _body_error(self, result: WriteResult, version: int, **extra: str) -> p.TusError:
        """What a body that did not fully arrive, or did not match, is answered with.

        What did arrive is kept (I-17, I-28) unless a Content-Digest was to be checked,
        which nothing partial can pass (I-33); the upload stays incomplete.
        """
        assert result.error is not None
        error, upload = result.error, result.upload
        if error.code == p.ERR_CHECKSUM_MISMATCH.code:
            error = p.ERR_CONTENT_DIGEST_MISMATCH()
        elif error.code == p.ERR_UPLOAD_SIZE_EXCEEDED.code:  # more content than the length (I-05)
            if version >= 7:
                return (await self._cancel(upload, "the content went past the upload's length")).with_headers(**extra)
            error = p.ERR_INCONSISTENT_LENGTH("the content went past the upload's length")
        headers = {**ietf.state_headers(upload, version), **extra}
        if result.close:
            headers["Connection"] = "close"
        return error.with_headers(**headers)

    async def _complete(self, request: Request, upload: Upload, lock: Lock) -> tuple[Upload, dict[str, str]]:
        """All content arrived with `Upload-Complete: ?1`: check the representation, then
        complete the upload (I-03, I-13, I-24, I-33). The caller holds the upload's lock.

        Returns the upload and the `Repr-Digest` header asked for, if any.
        """
        if upload.bound is not None and upload.offset != upload.bound:
            raise p.ERR_INCONSISTENT_LENGTH(f"the content ends at {upload.offset}, the upload's length is {upload.bound}")
        expected = ietf.parse_repr_digest(upload.repr_digest) if upload.repr_digest else {}
        if upload.repr_digest is None and (sent := ietf.repr_digest(request.headers)) is not None:
            expected = ietf.parse_repr_digest(sent)
        want = upload.want_repr_digest or ietf.want_repr_digest(request.headers)
        algorithms = set(expected) | ({want} if want else set())
        if algorithms:  # the bytes as they will be: an object store completes them first
            await self.engine.readable(upload, completing=True)
        computed = await self.digests.compute(upload, algorithms) if algorithms else {}
        if any(computed[name] != digest for name, digest in expected.items()):
            # The upload failed: nothing is processed (I-33).
            why = "Repr-Digest does not match the uploaded representation"
            raise await self._cancel(upload, why, p.ERR_REPR_DIGEST_MISMATCH, Upload_Complete="?1")
        if not lock.valid():
            raise p.ERR_LOCK_LOST(Connection="close")
        if upload.length is None:
            upload = await self.engine.complete(upload)  # through pre-finish, which may refuse
        # else a tus upload, which the commit that reached its length finished already.
        upload = await self.digests.keep(upload, computed)  # so HEAD never computes them again
        digest = {"Repr-Digest": ietf.format_digests({want: computed[want]})} if want else {}
        return upload, digest

    async def _wanted_digest(self, request: Request, upload: Upload) -> dict[str, str]:
        """`Repr-Digest` of a complete upload, when the request asks for it (I-33)."""
        want = ietf.want_repr_digest(request.headers)
        if want is None or not upload.finished:
            return {}
        await self.engine.readable(upload)
        return {"Repr-Digest": ietf.format_digests({want: await self.digests.of(upload, want)})}

    async def _cancel(
        self, upload: Upload, why: str, error: p.Error = p.ERR_INCONSISTENT_LENGTH, **headers: str
    ) -> p.TusError:
        """The error for a request that ends the upload by the draft's rules (I-05, I-33), once
        the upload is cancelled: as for a DELETE, pre-terminate is asked first. A refusal, or
        a hook that fails, keeps the upload as it is (nothing is deleted); the request is
        refused either way (issue 13, item 3). The caller holds the upload's lock."""
        try:
            await self.engine.hooks.pre_terminate(upload)
        except p.TusError:
            return error(f"{why}: the upload was kept (the server refused to cancel it)", **headers)
        await self.engine.terminate(upload)
        return error(f"{why}: the upload was cancelled", **headers)

    def _limited(self, error: p.TusError, version: int, upload: Upload) -> p.TusError:
        """From -12 on, a 413 carries all limits of the upload resource (#3466): its time left too."""
        if error.status == 413 and version >= 9 and all(name != "Upload-Limit" for name, _ in error.headers):
            return error.with_headers(Upload_Limit=ietf.upload_limit(self.config, version, upload))
        return error

    def _answer_headers(self, upload: Upload, version: int) -> dict[str, str]:
        headers = ietf.state_headers(upload, version)
        headers["Upload-Limit"] = ietf.upload_limit(self.config, version, upload)
        return headers

    async def _interim(self, request: Request, headers: dict[str, str]) -> None:
        """A 104, unless turned off: nginx, for one, takes an upstream 1xx for the final
        response and then waits for the upstream connection to close (see README)."""
        if self.config.ietf_interim:
            await send_interim(request, headers)

    def _progress(self, request: Request, version: int) -> Callable[[Upload], Awaitable[None]]:
        """Interim 104s with the offset as commits happen while content streams (I-15, I-27)."""

        async def progress(upload: Upload) -> None:
            await self._interim(request, {"Upload-Offset": str(upload.offset), "Upload-Draft-Interop-Version": str(version)})

        return progress
