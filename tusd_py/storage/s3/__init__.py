"""The S3 data store: each upload one object in an S3-compatible bucket (`--s3-bucket`).

Modules, one job each: `options` (settings, the client), `errors` (the three
exceptions and the mapping from S3's), `partsize` (the part size rule), `keys`
(where objects live), `bucket` (every S3 call), `writer` (a body into parts),
`concat` (final uploads), `store` (the upload's life; the adapter to the
contract of `storage.base`), `startup` (the start-up check).

How it fits the contract of `storage.base` (mypy checks it at the end of
`store.py`), and what the engine gives it:
1. Creation: `create(upload_id, length, max_size=, key=, content_type=,
   metadata=)`. The part size is fixed here, from the length or, deferred,
   `--max-size`; an upload S3 cannot hold (5 TiB, 10,000 parts) is
   `UploadTooLarge` (413) before anything exists, and the engine drops the
   record. `content_type` is the safe `filetype` (as `download.py` decides),
   `key` and `metadata` the pre-create hook's `storage` answer, checked by the
   hooks (`protocol.object_key_problem`, else 502); final uploads too.
2. Writing: the engine opens `writer(upload_id, offset, hasher, length=)`, so a
   short last part is sent as the last part rather than kept as the incomplete
   part and copied in at completion.
3. Checksums before durability: with a hasher the writer holds full parts back
   in temporary files; the engine compares the digest first and calls
   `finish(verified=...)`: a mismatch sends nothing, so no part is left behind.
4. Completion (`CompletingDataStore.finish`): CompleteMultipartUpload, for
   empty uploads, deferred lengths, the draft's completion and assembled finals
   alike; idempotent, and free for uploads this process completed. The engine
   calls it again before every read of a finished upload (`UploadEngine.readable`),
   which completes an upload whose instance died between the commit that
   finished it and the completion.
5. Errors: `UploadNotFound` is the contract's `DataNotFound` (404),
   `UploadTooLarge` its `DataTooLarge` (413), `StorageUnavailable` an OSError
   (503 with Retry-After): nothing from botocore leaves the package.
6. Reads: `reads_unfinished` is False: GET of an unfinished upload is 409
   (`ERR_UPLOAD_NOT_FINISHED`); the draft's digests of a complete upload are
   read from the object (completed first). `describe` gives ETag /
   Last-Modified / Content-Type. Concatenation copies parts of 5 MiB and more
   (UploadPartCopy), else streams them, and completes the final object.
7. Serving (`storage.open_data_store`, `app.py`, `sweeper.py`): `start()` then
   `check_bucket()` at start-up, `close()` at shutdown, `writable()` for
   readiness; the sweeper deletes expired uploads and aborts `orphans(age)`.

Not done: keeping the `Handle` (object key, multipart id, part size) in the
upload's state record, which would save the `.info` GET on an instance that
has not seen the upload (today the store caches handles per process).
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
