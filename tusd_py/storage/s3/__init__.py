"""The S3 data store: each upload one object in an S3-compatible bucket (store only, not yet served).

Modules, one job each: `options` (settings, the client), `errors` (the three
exceptions and the mapping from S3's), `partsize` (the part size rule), `keys`
(where objects live), `bucket` (every S3 call), `writer` (a body into parts),
`concat` (final uploads), `store` (the upload's life; the adapter to the
contract of `storage.base`).

Against the engine redesign (issue 14) the store already fits the core
`DataStore` (create, writer, delete, writable; `name` "s3"), its `Writer`
(`position`, `written` = what S3 acknowledged, `checkpoint`, `finish`, `error`),
and the capabilities `ReadableDataStore` and `ConcatenatingDataStore`; the
contract's append-only writes (every writer opened at the committed offset,
nothing overwritten past it) are what an object store needs. mypy checks that
at the end of `store.py`. What the engine must still give it for the wiring
step (the handlers and the engine are unchanged until then):

1. Creation: `engine.create` and `Concatenator.store_final` call
   `create(upload_id)` only. The store wants `create(upload_id, length,
   max_size=..., key=..., content_type=..., metadata=...)`: the length (or,
   deferred, `--max-size`) at creation, because the part size is fixed then;
   the object key and metadata from the pre-create hook and the Content-Type
   from safe `filetype` metadata. It raises `UploadTooLarge` before anything
   exists. Without them it uses the preferred part size (and so at most
   10,000 of it) and the upload id as the key.
2. The length at writing: `engine._stream` opens `writer(upload_id, offset,
   hasher)`; the store takes `length=` too, so a last part under 5 MiB is sent
   as the last part instead of kept as the incomplete part and copied in by
   `finish`.
3. Checksums before durability: with a hasher the writer holds the body back
   (temporary files) until `finish(verified=digest_matched)`; `verified=False`
   sends nothing. `engine._stream` calls `writer.finish()` (so verified=True)
   before `_settle` compares the digest: a mismatch then commits nothing but
   leaves the held parts in the multipart upload. The engine must compare
   first and pass the verdict (an optional capability of the writer, e.g.
   `VerifyingWriter.finish(verified=)`). Mid-body checkpoints are already
   skipped while a checksum is pending.
4. Completion: `engine.finish` calls `finish(upload_id, length)` only on a
   `RandomAccessDataStore` (`_trims`, "drop bytes past the length"). This
   store matches that protocol by shape and needs the same call, with another
   meaning (CompleteMultipartUpload, also for empty uploads, deferred lengths
   and assembled finals): the contract should name completion as its own
   capability. Nothing calls it again when an instance dies between the
   commit that finished an upload and the completion: the sweeper or a GET of
   a finished upload whose object is missing must (the call is idempotent).
5. Errors: `errors.to_tus_error` turns every OSError into 503/507
   (`storage_error`); `UploadNotFound` must become 404 and `UploadTooLarge`
   413 (rows of the table in `protocol.py`), `StorageUnavailable` stays 503
   with Retry-After.
6. Reads: `read` serves finished uploads only (an unfinished object does
   not exist yet). `ReadableDataStore` also feeds GET of unfinished uploads
   (`download.py`) and the draft's digests: the capability must say
   "finished only", or GET answer a clear 4xx for unfinished S3 uploads.
   `describe` gives ETag / Last-Modified / Content-Type for the GET's
   validators. Concatenation: `concatenate` after `create(final_id)` (the
   total length when known) completes the final object, so the engine's
   later `finish` finds it done.
7. The sweeper calls only `delete`; it must also call `orphans(age)` /
   `abort_orphan(...)` for multipart uploads the state no longer knows.
   Start-up calls `start()` then `check_bucket()` (exit with its message),
   shutdown `close()`; readiness uses `writable()`.
8. Settings: an `S3Options` from the configuration (`config.py` `setting`:
   bucket, endpoint, region, prefix, part size, path style, request checksums,
   concurrency, timeouts, `temp_dir` for bodies waiting on their checksum:
   under `--dir`), and `--s3-bucket` choosing this store.
9. Optional: keep the `Handle` (object key, multipart id, part size) in the
   upload's state record and pass it back, saving the `.info` GET on a cold
   instance (today the store caches it per process).
"""

from tusd_py.storage.s3.bucket import Handle, Pending
from tusd_py.storage.s3.errors import (
    S3StoreError,
    StorageUnavailable,
    UploadNotFound,
    UploadTooLarge,
)
from tusd_py.storage.s3.options import S3Options
from tusd_py.storage.s3.partsize import part_size
from tusd_py.storage.s3.store import S3Store
from tusd_py.storage.s3.writer import S3Writer

__all__ = [
    "Handle", "Pending", "S3Options", "S3Store", "S3StoreError", "S3Writer",
    "StorageUnavailable", "UploadNotFound", "UploadTooLarge", "part_size",
]
