"""The S3 data store: each upload one object in an S3-compatible bucket (store only, not yet served).

Modules, one job each: `options` (settings, the client), `errors` (the three
exceptions and the mapping from S3's), `partsize` (the part size rule), `keys`
(where objects live), `bucket` (every S3 call), `writer` (a body into parts),
`concat` (final uploads), `store` (the upload's life; the adapter to today's
`storage.base.DataStore`).

What the engine of the store-capability redesign (issue 14) must give this store
for it to be served -- today's protocol falls short in exactly these points:

1. `create(upload_id, length, max_size=..., key=..., content_type=...,
   metadata=...)`: the length (or, deferred, the largest accepted size) at
   creation, because the part size is fixed then; the object key and metadata
   from the pre-create hook and the Content-Type from safe `filetype` metadata.
   It raises `UploadTooLarge` (-> 413) before anything exists.
2. Append-only writes: `writer(upload_id, offset, hasher, length=...)` is
   always opened at the committed offset, with the upload's length once known
   (the last part may be under 5 MiB only when the writer knows it is the last).
   Bytes past the committed offset are never "scratch space": the store has
   none, and `checkpoint()` returns only what S3 acknowledged.
3. Checksums before durability: with a hasher the writer holds the body back
   (temporary files) and the engine must call `finish(verified=digest_matched)`
   after the body ended and before it commits; `verified=False` sends nothing.
   Today's handler calls `finish()` first and compares the digest afterwards.
4. `finish(upload_id, length)` once the last byte is committed (also for empty
   uploads and deferred lengths), and it may be called again after a crash.
5. Errors: `StorageUnavailable` -> 503 with Retry-After, `UploadNotFound` ->
   404, `UploadTooLarge` -> 413 (all are OSError subclasses, so today's OSError
   -> 503 mapping already keeps them from being 500s).
6. Capabilities: ranged reads of finished uploads only (`read`), with
   `describe` for ETag / Last-Modified / Content-Type; server-side copy for
   concatenation (`concatenate`, after `create(final_id, total length)`; it
   completes the final object, so the engine's `finish` then finds it done);
   no random-access writes. The sweeper
   calls `orphans(age)` / `abort_orphan(...)` for multipart uploads the state
   no longer knows, and start-up calls `start()` then `check_bucket()` (exit
   with its message), `close()` at shutdown.
7. Settings: an `S3Options` from the configuration (bucket, endpoint, region,
   prefix, part size, path style, request checksums, concurrency, timeouts,
   `temp_dir` for bodies waiting on their checksum: under `--dir`).
8. Optional: keep the `Handle` (object key, multipart id, part size) in the
   upload's state record and pass it back, saving the `.info` GET on a cold
   instance (today the store caches it per process).
"""

from tusd_py.storage.s3.bucket import Handle, Pending, Stored
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
    "StorageUnavailable", "Stored", "UploadNotFound", "UploadTooLarge", "part_size",
]
