"""The tus protocol handler: HTTP in, spec rules applied, stores called.

It knows requests, headers and status codes, and talks to the state store,
the data store and the locker only through their interfaces (see `state/`,
`storage/`, `locks/`). Every error it answers with comes from the table in
`protocol.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable, Iterator

from starlette.requests import Request
from starlette.responses import Response

from tusd_py import ietf
from tusd_py import protocol as p
from tusd_py.body import BodyReader
from tusd_py.checksum import ALGORITHMS, Hasher, new_hasher
from tusd_py.concat import Concatenator, Outcome
from tusd_py.config import Config
from tusd_py.download import download_response
from tusd_py.headers import index_headers
from tusd_py.hooks.base import AUTHORIZE, HOOK_ERROR_CODES, POST_RECEIVE, Hooks
from tusd_py.ietf_handler import IetfHandler
from tusd_py.locks.base import Lock, Locker, LockLost, LockTimeout
from tusd_py.metrics import Metrics
from tusd_py.state.base import EXPIRED, FINISH_ANNOUNCED, FINISHED, StateStore, Upload
from tusd_py.storage.base import DataStore
from tusd_py.urls import upload_url

logger = logging.getLogger("tusd_py")

COMMIT_INTERVAL = 1.0  # seconds between offset commits while a long body streams in
UPLOAD_METHODS = "GET, HEAD, PATCH, DELETE, OPTIONS"


def error_response(error: p.TusError, *, method: str = "GET") -> Response:
    """One line of text (`ERR_CODE: message`); HEAD answers carry no body."""
    body = b"" if method == "HEAD" else f"{error}\n".encode()
    response = Response(body, status_code=error.status, media_type="text/plain; charset=utf-8")
    for name, value in error.headers:
        response.headers[name] = value
    if error.status == 412:
        response.headers["Tus-Version"] = p.TUS_VERSION
    return response


@dataclass
class BodyResult:
    """What storing one request body came to."""

    upload: Upload  # as committed afterwards (offset, expiry)
    error: p.TusError | None = None  # the answer, when not plain success
    close: bool = False  # the body was not read to its end: close the connection


class TusHandler:
    def __init__(
        self,
        config: Config,
        state: StateStore,
        data: DataStore,
        locker: Locker,
        *,
        hooks: Hooks | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.state = state
        self.data = data
        self.locker = locker
        self.hooks = hooks or Hooks()
        self.metrics = metrics or Metrics()
        self.readers: set[BodyReader] = set()
        self.streaming = 0  # request bodies in progress (see _body_slot)
        self.shutting_down = False
        self.extensions = self._extensions()
        self.on_finish: list[Callable[[Upload], Awaitable[None]]] = []
        self.concat = Concatenator(config, state, data, locker, on_complete=self._finished, hooks=self.hooks)
        self.ietf = IetfHandler(self) if config.ietf_draft else None

    def _extensions(self) -> str:
        names = ["creation", "creation-with-upload", "creation-defer-length", "termination", "checksum"]
        names += ["concatenation", "concatenation-unfinished"]
        if self.config.expire_after > 0:
            names.append("expiration")
        return ",".join(names)

    # -- routing -------------------------------------------------------------------

    async def creation_endpoint(self, request: Request) -> Response:
        index_headers(request)
        method = self._method(request)
        if self.ietf is not None and (version := ietf.interop_version(request.headers)) is not None:
            return await self.ietf.creation_endpoint(request, method, version)
        return await self._dispatch(request, method, {"POST": self.post, "OPTIONS": self.options}, "POST, OPTIONS")

    async def upload_endpoint(self, request: Request) -> Response:
        index_headers(request)
        method = self._method(request)
        if self.ietf is not None and (version := ietf.interop_version(request.headers)) is not None:
            return await self.ietf.upload_endpoint(request, method, version)
        handlers = {"HEAD": self.head, "PATCH": self.patch, "DELETE": self.delete, "GET": self.get, "OPTIONS": self.options}
        return await self._dispatch(request, method, handlers, UPLOAD_METHODS)

    @staticmethod
    def _method(request: Request) -> str:
        # Browsers and proxies that only allow GET and POST send the real method here (as tusd: POST only).
        method: str = request.scope["method"]
        if method == "POST":
            override = request.headers.get("x-http-method-override")
            if override:
                return override.strip().upper()
        return method

    async def _dispatch(
        self,
        request: Request,
        method: str,
        handlers: dict[str, Callable[[Request], Awaitable[Response]]],
        allow: str,
    ) -> Response:
        handler = handlers.get(method)
        self.hooks.bind_request(request, method)
        try:
            if handler is None:
                raise p.ERR_METHOD_NOT_ALLOWED(Allow=allow)
            if method != "OPTIONS":
                self._check_version(request, method)
                await self._authorize(request)
            return await handler(request)
        except p.TusError as error:
            request.state.tus_error = error.code  # for metrics and the access log
            return error_response(error, method=method)

    async def _authorize(self, request: Request) -> None:
        """The authorize hook sees every request before anything happens, also before the
        lock is asked for: a stranger's PATCH must not make the owner's running PATCH let go.

        It is asked before 404 or 410 is decided, with the record when there is one (a
        tombstone too) and without one when there is none: the hook, not the answer's
        status, decides what a stranger learns about an id (no existence oracle). An id
        that does not match the pattern can name no upload: 404 before anything is asked.
        """
        if not self.hooks.wants(AUTHORIZE):
            return
        upload_id = request.path_params.get("upload_id")
        if upload_id is None:
            await self.hooks.authorize(None)  # a creation
            return
        if not p.is_valid_id(upload_id):
            raise p.ERR_NOT_FOUND()
        await self.hooks.authorize(await self.state.get(upload_id), upload_id)

    @staticmethod
    def _check_version(request: Request, method: str) -> None:
        version = request.headers.get("tus-resumable")
        if version is None:
            if method in ("GET", "HEAD"):  # tusd exempts these: browsers and plain HTTP tools read uploads too
                return
            raise p.ERR_UNSUPPORTED_VERSION()
        if version.strip() != p.TUS_VERSION:
            raise p.ERR_UNSUPPORTED_VERSION()

    # -- helpers -------------------------------------------------------------------

    async def _load(self, upload_id: str, lock: Lock | None = None) -> Upload:
        """The upload's record; under `lock`, pass it (the locker may have read the record already)."""
        if not p.is_valid_id(upload_id):
            raise p.ERR_NOT_FOUND()  # checked before any store is asked: ids never reach the disk unchecked
        upload = await self.state.get(upload_id, lock=lock)
        if upload is None:
            raise p.ERR_NOT_FOUND()
        if upload.state == EXPIRED or (upload.expires is not None and upload.expires <= time.time()):
            raise p.ERR_GONE()
        return upload

    def _expiry(self, finished: bool) -> float | None:
        if finished or self.config.expire_after <= 0:
            return None
        return time.time() + self.config.expire_after

    @staticmethod
    def _expires_header(headers: dict[str, str], upload: Upload) -> None:
        if upload.expires is not None and not upload.finished:
            headers["Upload-Expires"] = p.format_http_date(upload.expires)

    @contextlib.asynccontextmanager
    async def _lock(self, upload_id: str, reader: BodyReader | None = None) -> AsyncIterator[Lock]:
        """The upload's lock, for the `async with` body (LockTimeout if busy too long).

        A request holding the lock is asked to let go (as tusd does). With `reader`,
        this request can in turn be asked to let go while it streams its body.
        """
        release = None
        if reader is not None:

            def release() -> None:
                self.metrics.lock_exchanges.inc()
                reader.request_release()

        started = time.monotonic()
        acquired = False
        try:
            async with self.locker.hold(upload_id, wait=self.config.lock_wait, on_release_request=release) as lock:
                acquired = True
                self.metrics.lock_wait.observe(time.monotonic() - started)
                yield lock
        except LockTimeout:
            if not acquired:
                self.metrics.lock_timeouts.inc()
            raise

    @contextlib.asynccontextmanager
    async def _locked(self, upload_id: str, reader: BodyReader | None = None) -> AsyncIterator[tuple[Lock, Upload]]:
        """Hold the upload's lock and read its record under it; 423 if the lock stays busy."""
        if not p.is_valid_id(upload_id):
            raise p.ERR_NOT_FOUND()
        async with contextlib.AsyncExitStack() as stack:
            try:
                lock = await stack.enter_async_context(self._lock(upload_id, reader))
            except LockTimeout:
                raise p.ERR_UPLOAD_LOCKED() from None
            yield lock, await self._load(upload_id, lock)

    def _reader(self, request: Request) -> BodyReader:
        return BodyReader(request.receive, idle_timeout=self.config.network_timeout, release_grace=self.config.release_grace)

    # -- OPTIONS -------------------------------------------------------------------

    async def options(self, request: Request) -> Response:
        headers = {
            "Tus-Version": p.TUS_VERSION,
            "Tus-Extension": self.extensions,
            "Tus-Checksum-Algorithm": ",".join(ALGORITHMS),
        }
        if self.config.max_size:
            headers["Tus-Max-Size"] = str(self.config.max_size)
        # 200 rather than 204, as tusd: some browsers reject 204 answers to preflights.
        return Response(status_code=200, headers=headers)

    # -- POST (creation, creation-with-upload, creation-defer-length) --------------

    async def post(self, request: Request) -> Response:
        headers = request.headers
        concat = p.parse_concat(headers.get("upload-concat"))
        if concat is not None and concat.final:
            return await self._post_final(request, concat)
        length = self._creation_length(request)
        metadata_header = headers.get("upload-metadata")
        self._check_metadata(metadata_header)
        has_body = self._has_body(request)
        content_length = p.parse_uint(headers.get("content-length"), p.ERR_INVALID_CONTENT_LENGTH)
        checksum = None
        if has_body:
            self._check_body_fits(0, length, content_length)
            checksum = self._checksum(request)
        with self._body_slot() if has_body else contextlib.nullcontext():
            return await self._create(request, length, metadata_header, has_body, checksum, concat)

    async def _create(
        self,
        request: Request,
        length: int | None,
        metadata_header: str | None,
        has_body: bool,
        checksum: tuple[Hasher, bytes] | None,
        concat: p.Concat | None = None,  # `partial`, or None
    ) -> Response:
        upload = Upload(
            id=p.new_upload_id(),
            length=length,
            metadata=metadata_header,
            created=time.time(),
            expires=self._expiry(length == 0),
            concat=concat.raw if concat is not None else None,
            partial=concat is not None,
            state=FINISHED if length == 0 else "created",
        )
        upload = await self.store_new(upload)
        response_headers = {"Location": upload_url(request, self.config, upload.id)}
        if upload.finished:
            await self._finished(upload)
        elif has_body:
            result = await self._store_body(request, upload, checksum)
            upload = result.upload
            response_headers["Upload-Offset"] = str(upload.offset)
            # Interrupted bodies still get 201: the client learns the URL and resumes (CU-03).
            error = result.error
            if error is not None and (error.status in (413, 460, 503, 507) or error.code in HOOK_ERROR_CODES):
                raise error.with_headers(**response_headers)
        self._expires_header(response_headers, upload)
        return Response(status_code=201, headers=response_headers)

    async def _post_final(self, request: Request, concat: p.Concat) -> Response:
        """concatenation: a final upload made of partial uploads (Upload-Length is ignored, as tusd)."""
        metadata_header = request.headers.get("upload-metadata")
        self._check_metadata(metadata_header)
        if self._has_body(request):
            raise p.ERR_MODIFY_FINAL()  # checklist CU-07
        # Checked (each part through the authorize hook first), not yet stored: pre-create sees
        # the final upload as it will be (is_final, its parts, its length), for ownership and quotas.
        upload = await self.concat.new_final(concat, metadata_header)
        changed = await self.hooks.pre_create(upload)  # it may change the metadata, not the id
        if changed.id != upload.id:
            raise p.ERR_HOOK_FAILED("the pre-create hook cannot choose the id of a final upload")
        upload = await self.concat.store_final(upload.replace(metadata=changed.metadata))
        self.metrics.uploads_created.inc()
        self.hooks.post_create(upload)
        location = upload_url(request, self.config, upload.id)
        # Complete parts are joined now, before the 201 (CC-17); others when they finish.
        try:
            outcome = await self.concat.complete(upload.id)
        except p.TusError as error:  # pre-finish refused (or failed on) the assembled upload
            raise error.with_headers(Location=location) from None
        if outcome is Outcome.FAILED:
            raise p.ERR_NOT_FOUND("a partial upload went away while the final upload was created")
        return Response(status_code=201, headers={"Location": location})

    @staticmethod
    def _has_body(request: Request) -> bool:
        return p.media_type(request.headers) == p.OFFSET_CONTENT_TYPE

    async def store_new(self, upload: Upload) -> Upload:
        """Create an upload's record and data file, through the pre-create hook (which may reject
        it, or change its id and metadata); returns the upload as stored."""
        proposed = upload.id
        upload = await self.hooks.pre_create(upload)
        if upload.finished:
            await self.hooks.pre_finish(upload)
        # The record first: creating the data file of an id that is taken would truncate it.
        if not await self.state.create(upload):
            if upload.id != proposed:
                raise p.ERR_ID_TAKEN()
            raise RuntimeError("upload id collision")  # 128 random bits: a bug
        await self.data.create(upload.id)
        self.metrics.uploads_created.inc()
        self.hooks.post_create(upload)
        return upload

    @contextlib.contextmanager
    def _body_slot(self) -> Iterator[None]:
        """Counts request bodies streaming on this instance; past the cap, 429 (clients back off)."""
        limit = self.config.max_concurrent_uploads
        if limit and self.streaming >= limit:
            raise p.ERR_TOO_MANY_UPLOADS(Retry_After="1")
        self.streaming += 1
        try:
            yield
        finally:
            self.streaming -= 1

    def _check_metadata(self, header: str | None) -> None:
        if header is not None and len(header) > self.config.max_metadata_size:
            raise p.ERR_METADATA_TOO_LARGE()
        if len(p.parse_metadata(header)) > self.config.max_metadata_keys:
            raise p.ERR_METADATA_TOO_LARGE()

    def _creation_length(self, request: Request) -> int | None:
        length = p.parse_length(request.headers.get("upload-length"), p.ERR_INVALID_UPLOAD_LENGTH)
        defer = request.headers.get("upload-defer-length")
        if length is not None and defer is not None:
            raise p.ERR_AMBIGUOUS_UPLOAD_LENGTH()
        if defer is not None and defer.strip() != "1":
            raise p.ERR_INVALID_UPLOAD_LENGTH_DEFER()
        if length is None and defer is None:
            raise p.ERR_INVALID_UPLOAD_LENGTH()
        if length is not None and self.config.max_size and length > self.config.max_size:
            raise p.ERR_MAX_SIZE_EXCEEDED()
        return length

    def _room(self, offset: int, length: int | None) -> int | None:
        """How many more bytes the upload may take: up to its length, or max-size while deferred."""
        if length is not None:
            return length - offset
        if self.config.max_size:
            return max(self.config.max_size - offset, 0)
        return None

    def _check_body_fits(self, offset: int, length: int | None, content_length: int | None) -> None:
        room = self._room(offset, length)
        if content_length is not None and room is not None and content_length > room:
            raise p.ERR_UPLOAD_SIZE_EXCEEDED() if length is not None else p.ERR_MAX_SIZE_EXCEEDED()

    @staticmethod
    def _checksum(request: Request) -> tuple[Hasher, bytes] | None:
        parsed = p.parse_checksum(request.headers.get("upload-checksum"))
        if parsed is None:
            return None
        algorithm, digest = parsed
        return new_hasher(algorithm), digest

    # -- HEAD ----------------------------------------------------------------------

    async def head(self, request: Request) -> Response:
        # Under the lock (asking a running PATCH to let go, as tusd), so the offset
        # reported is not one that a PATCH still streaming is about to move.
        async with self._locked(request.path_params["upload_id"]) as (_, upload):
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

    async def patch(self, request: Request) -> Response:
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
        with self._body_slot():
            return await self._append(upload_id, offset, declared, content_length, checksum, self._reader(request))

    async def _append(
        self,
        upload_id: str,
        offset: int,
        declared: int | None,
        content_length: int | None,
        checksum: tuple[Hasher, bytes] | None,
        reader: BodyReader,
    ) -> Response:
        async with self._locked(upload_id, reader) as (lock, upload):
            if upload.final:
                raise p.ERR_MODIFY_FINAL()
            if offset != upload.offset:
                raise p.ERR_MISMATCHED_OFFSET(Upload_Offset=str(upload.offset))
            if upload.finished or (declared is not None and declared == offset and upload.length is None):
                # Complete, or completed by this request's Upload-Length: there is no room for a byte.
                await self._refuse_body(reader, content_length)
            if declared is not None:
                upload = await self._declare_length(upload, declared)
            response_headers: dict[str, str] = {}
            if upload.finished:
                # tusd: an empty PATCH to a complete upload changes nothing and reports the offset.
                if declared is not None:  # declaring the length completed it (checklist DL-08)
                    await self._finished(upload)
                response_headers["Upload-Offset"] = str(upload.offset)
                return Response(status_code=204, headers=response_headers)
            self._check_body_fits(offset, upload.bound, content_length)
            result = await self._write_body(upload, reader, lock, checksum)
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

    async def _declare_length(self, upload: Upload, length: int) -> Upload:
        if upload.length is not None or length < upload.offset:
            raise p.ERR_INVALID_LENGTH_CHANGE()
        if upload.expected_length is not None and length != upload.expected_length:
            raise p.ERR_INVALID_LENGTH_CHANGE("Upload-Length differs from the length announced when the upload was created")
        if self.config.max_size and length > self.config.max_size:
            raise p.ERR_MAX_SIZE_EXCEEDED()
        if length == upload.offset:  # declaring it completes the upload (DL-08)
            await self.hooks.pre_finish(upload.replace(length=length, state=FINISHED))
        if not await self.state.declare_length(upload.id, length):
            raise p.ERR_INVALID_LENGTH_CHANGE()
        finished = length == upload.offset
        return upload.replace(length=length, state=FINISHED if finished else upload.state, expires=None if finished else upload.expires)

    async def _store_body(self, request: Request, upload: Upload, checksum: tuple[Hasher, bytes] | None) -> BodyResult:
        """creation-with-upload: the POST body goes through the same path as a PATCH."""
        reader = self._reader(request)
        try:
            async with self._lock(upload.id, reader) as lock:
                return await self._write_body(upload, reader, lock, checksum)
        except LockTimeout:
            return BodyResult(upload, p.ERR_UPLOAD_LOCKED())

    async def _write_body(
        self,
        upload: Upload,
        reader: BodyReader,
        lock: Lock,
        checksum: tuple[Hasher, bytes] | None,
        on_commit: Callable[[Upload], Awaitable[None]] | None = None,
    ) -> BodyResult:
        """Stream the body to disk at the upload's offset and commit what may be committed.

        Without a checksum, every byte that reached the disk is committed, also when
        the client goes away or the reader is interrupted (checklist C-30), and the
        offset is committed every COMMIT_INTERVAL on the way, so a crash loses little.
        With a checksum nothing is committed unless the whole body arrived and matched.
        `on_commit` hears of each commit made while the body still streams.
        """
        loop = asyncio.get_running_loop()
        room = self._room(upload.offset, upload.bound)
        writer = self.data.writer(upload.id, upload.offset, checksum[0] if checksum else None)
        current = upload
        next_commit = loop.time() + COMMIT_INTERVAL
        next_progress = loop.time() + self.config.progress_interval if self.hooks.wants(POST_RECEIVE) else None
        overflow = lost = False
        self.readers.add(reader)
        self.metrics.active_uploads.inc()
        if self.shutting_down:
            reader.interrupt(p.ERR_SERVER_SHUTDOWN())
        try:
            async for chunk in reader:
                if room is not None and writer.position - upload.offset + len(chunk) > room:
                    overflow = True
                    break
                if not lock.valid():
                    lost = True
                    break
                await writer.write(chunk)
                if writer.error is not None:
                    break
                if checksum is None and loop.time() >= next_commit:
                    current = await self._commit(current, await writer.checkpoint(), lock)
                    next_commit = loop.time() + COMMIT_INTERVAL
                    if on_commit is not None:
                        await on_commit(current)
                if next_progress is not None and loop.time() >= next_progress:
                    self.hooks.post_receive(current.replace(offset=writer.position))
                    next_progress = loop.time() + self.config.progress_interval
        finally:
            self.readers.discard(reader)
            self.metrics.active_uploads.dec()
            written = await writer.finish()
            self.metrics.bytes_received.inc(max(writer.position - upload.offset, 0))

        if overflow:
            error = p.ERR_UPLOAD_SIZE_EXCEEDED() if upload.bound is not None else p.ERR_MAX_SIZE_EXCEEDED()
            return BodyResult(current, error, close=True)
        if lost or not lock.valid():
            return BodyResult(current, p.ERR_LOCK_LOST(), close=True)
        if checksum is not None:
            if reader.stopped_early or writer.error is not None:
                error = reader.error or self.storage_error(writer.error) or p.ERR_UNEXPECTED_EOF()
                return BodyResult(current, error, close=True)
            hasher, expected = checksum
            if hasher.digest() != expected:
                return BodyResult(current, p.ERR_CHECKSUM_MISMATCH())
        if upload.length is not None and written == upload.length:
            try:  # before the commit: a rejected upload does not become finished
                await self.hooks.pre_finish(current.replace(offset=written, state=FINISHED))
            except p.TusError as error:
                return BodyResult(current, error)
        current = await self._commit(current, written, lock)
        if written > upload.offset:
            self.hooks.post_receive(current)
        if current.finished:
            # A commit of this call finished it, and took the claim with it (`_commit`).
            await self._finished(current, claimed=not upload.finished)
        if writer.error is not None:
            return BodyResult(current, self.storage_error(writer.error), close=not reader.complete)
        if reader.error is not None:
            return BodyResult(current, reader.error, close=True)
        if reader.disconnected:
            return BodyResult(current, p.ERR_UNEXPECTED_EOF(), close=True)
        return BodyResult(current)

    async def _commit(self, upload: Upload, written: int, lock: Lock) -> Upload:
        """Move the committed offset up to `written` (compare-and-set) and slide the expiry.

        The lock's fence goes along: a lease that lapsed, however briefly, commits nothing."""
        if written <= upload.offset:
            return upload
        finished = upload.length is not None and written == upload.length
        expires = self._expiry(finished)
        claim = FINISH_ANNOUNCED if finished and not upload.partial else None  # `_finished` needs no round trip
        try:
            stored = await self.state.commit_offset(upload.id, upload.offset, written, expires, fence=lock.fence, claim=claim)
        except LockLost:
            raise p.ERR_LOCK_LOST(Connection="close") from None
        if stored is None:
            raise p.ERR_NOT_FOUND()
        if stored != written:
            # Someone else moved the offset although we held the lock: our lease must have lapsed.
            raise p.ERR_MISMATCHED_OFFSET(Upload_Offset=str(stored))
        return upload.replace(offset=written, expires=expires, state=FINISHED if finished else "uploading")

    @staticmethod
    def storage_error(error: OSError | None) -> p.TusError | None:
        if error is None:
            return None
        logger.error("storage error: %s", error)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            return p.ERR_STORAGE_FULL(Retry_After="5")
        return p.ERR_STORAGE(Retry_After="5")

    async def _finished(self, upload: Upload, *, claimed: bool = False) -> None:
        """The upload just became complete: trim scratch bytes, then tell whoever listens.

        A partial upload is no finished file (CC-07): only final uploads waiting on it
        hear of it, once our caller has let go of its lock. `claimed`: the commit that
        finished the upload recorded the FINISH_ANNOUNCED claim already.
        """
        if upload.length is not None:
            await self.data.finish(upload.id, upload.length)
        if upload.partial:
            self.concat.part_changed_soon(upload.id)
            return
        if not claimed and not await self.state.claim(upload.id, FINISH_ANNOUNCED):
            return  # announced already: by another request or instance that raced to the end
        self.metrics.uploads_finished.inc()
        await self.hooks.post_finish(upload)  # waits only while the hooks' queue of outcomes is full
        for callback in self.on_finish:
            await callback(upload)

    # -- DELETE (termination) ------------------------------------------------------

    async def delete(self, request: Request) -> Response:
        async with self._locked(request.path_params["upload_id"]) as (_, upload):
            await self.hooks.pre_terminate(upload)  # may refuse
            await self._terminate(upload)
        return Response(status_code=204)

    async def _terminate(self, upload: Upload) -> None:
        """Forget the upload and its bytes; the caller holds its lock (and asked pre-terminate)."""
        deleted = await self.state.delete(upload.id)
        await self.data.delete(upload.id)
        if deleted:  # true for one request only, whatever the instance
            self.metrics.uploads_terminated.inc()
            await self.hooks.post_terminate(upload)
        if upload.partial:
            self.concat.part_changed_soon(upload.id)  # final uploads waiting on it can never complete

    # -- GET (download, not part of tus) -------------------------------------------

    async def get(self, request: Request) -> Response:
        upload = await self._load(request.path_params["upload_id"])
        return download_response(request, upload, self.data)

    # -- shutdown ------------------------------------------------------------------

    def shutdown(self) -> None:
        """Graceful stop: running bodies end now, committing what they received (503)."""
        self.shutting_down = True
        for reader in list(self.readers):
            reader.interrupt(p.ERR_SERVER_SHUTDOWN(Retry_After="1"))
