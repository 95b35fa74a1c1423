"""The tus 1.0.0 wire format: header values, the metadata codec and the error table.

Everything here is pure: it parses and formats strings and knows nothing about
HTTP frameworks, storage or state. The handlers turn these values into responses.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import re
import secrets
from dataclasses import dataclass
from typing import Mapping

TUS_VERSION = "1.0.0"
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"

# Ids are random hex from `new_upload_id`; hooks may pick their own within this
# alphabet. No dot and no slash, so an id can never name a path outside the data dir.
ID_PATTERN = r"[A-Za-z0-9_-]{1,128}"
_ID_RE = re.compile(ID_PATTERN)
_DIGITS_RE = re.compile(r"[0-9]{1,19}")  # int() accepts '+5', '5_0', ' 5' and '٥'
_LENGTH_RE = re.compile(r"[0-9]+")
# The largest length (and offset) the server stores: SQLite's INTEGER is a signed 64-bit
# integer, and both state stores must answer alike. Longer lengths are a 413, not a 400.
MAX_LENGTH = 2**63 - 1
_METADATA_KEY_RE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")  # printable ASCII, no space, no comma
_B64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_URL_RE = re.compile(r"[\x21-\x7e]+")


class TusError(Exception):
    """A protocol error, raised by handlers and answered as `status` with a one-line body."""

    def __init__(self, status: int, code: str, message: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers

    def with_headers(self, **headers: str) -> TusError:
        return TusError(self.status, self.code, self.message, self.headers + _header_items(headers))


def _header_items(headers: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple((name.replace("_", "-"), value) for name, value in headers.items())


@dataclass(frozen=True)
class Error:
    """One row of the error table. Calling it makes the exception to raise:
    `raise ERR_MISMATCHED_OFFSET(Upload_Offset="5")` or `raise ERR_INVALID_METADATA("why")`.

    Every error the server can return is declared once below, as in tusd's
    `unrouted_handler.go`; handlers raise these and never invent a status inline.
    """

    status: int
    code: str
    message: str

    def __call__(self, message: str | None = None, **headers: str) -> TusError:
        return TusError(self.status, self.code, message or self.message, _header_items(headers))


ERR_UNSUPPORTED_VERSION = Error(412, "ERR_UNSUPPORTED_VERSION", "missing, invalid or unsupported Tus-Resumable header")
ERR_INVALID_CONTENT_TYPE = Error(415, "ERR_INVALID_CONTENT_TYPE", "missing or invalid Content-Type header")
ERR_INVALID_UPLOAD_LENGTH = Error(400, "ERR_INVALID_UPLOAD_LENGTH", "missing or invalid Upload-Length header")
ERR_AMBIGUOUS_UPLOAD_LENGTH = Error(400, "ERR_AMBIGUOUS_UPLOAD_LENGTH", "both Upload-Length and Upload-Defer-Length are set")
ERR_INVALID_UPLOAD_LENGTH_DEFER = Error(400, "ERR_INVALID_UPLOAD_LENGTH_DEFER", "invalid Upload-Defer-Length header")
ERR_INVALID_OFFSET = Error(400, "ERR_INVALID_OFFSET", "missing or invalid Upload-Offset header")
ERR_INVALID_CONTENT_LENGTH = Error(400, "ERR_INVALID_CONTENT_LENGTH", "invalid Content-Length header")
ERR_INVALID_METADATA = Error(400, "ERR_INVALID_METADATA", "invalid Upload-Metadata header")
ERR_METADATA_TOO_LARGE = Error(400, "ERR_METADATA_TOO_LARGE", "Upload-Metadata has too many bytes or keys")
ERR_HEADERS_TOO_LARGE = Error(431, "ERR_HEADERS_TOO_LARGE", "request head too large")  # server.py, before any handler
ERR_TOO_MANY_UPLOADS = Error(429, "ERR_TOO_MANY_UPLOADS", "too many uploads in progress, retry later")
ERR_INVALID_CHECKSUM = Error(400, "ERR_INVALID_CHECKSUM", "invalid Upload-Checksum header")
ERR_UNSUPPORTED_CHECKSUM = Error(400, "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM", "unsupported checksum algorithm")
ERR_CHECKSUM_MISMATCH = Error(460, "ERR_CHECKSUM_MISMATCH", "checksum mismatch")
ERR_INVALID_CONCAT = Error(400, "ERR_INVALID_CONCAT", "invalid Upload-Concat header")
ERR_TOO_MANY_PARTS = Error(400, "ERR_TOO_MANY_PARTS", "too many partial uploads in Upload-Concat")
ERR_NOT_PARTIAL = Error(400, "ERR_NOT_PARTIAL_UPLOAD", "a listed upload is not a partial upload")
ERR_UPLOAD_INTERRUPTED = Error(400, "ERR_UPLOAD_INTERRUPTED", "upload has been interrupted by another request for this upload resource")
ERR_UNEXPECTED_EOF = Error(400, "ERR_UNEXPECTED_EOF", "request body ended before all bytes were received")
ERR_INVALID_LENGTH_CHANGE = Error(400, "ERR_INVALID_UPLOAD_LENGTH", "Upload-Length is already set or smaller than the offset")
ERR_MODIFY_FINAL = Error(403, "ERR_MODIFY_FINAL", "modifying a final upload is not allowed")
ERR_NOT_FOUND = Error(404, "ERR_UPLOAD_NOT_FOUND", "upload not found")
ERR_DATA_NOT_FOUND = Error(404, "ERR_UPLOAD_NOT_FOUND", "the upload's data is not in the data store")
ERR_METHOD_NOT_ALLOWED = Error(405, "ERR_METHOD_NOT_ALLOWED", "method not allowed")
ERR_MISMATCHED_OFFSET = Error(409, "ERR_MISMATCHED_OFFSET", "Upload-Offset does not match the upload's offset")
ERR_NOT_FINISHED = Error(409, "ERR_UPLOAD_NOT_FINISHED", "this server serves an upload's bytes once it is finished: resume it first")
ERR_GONE = Error(410, "ERR_UPLOAD_GONE", "upload expired")
ERR_MAX_SIZE_EXCEEDED = Error(413, "ERR_MAX_SIZE_EXCEEDED", "maximum size exceeded")
ERR_UPLOAD_SIZE_EXCEEDED = Error(413, "ERR_UPLOAD_SIZE_EXCEEDED", "request body exceeds the upload's length")
ERR_LENGTH_TOO_LARGE = Error(413, "ERR_MAX_SIZE_EXCEEDED", "the length is above the largest this server can store (2^63-1 bytes)")
ERR_UPLOAD_ALREADY_COMPLETE = Error(413, "ERR_UPLOAD_SIZE_EXCEEDED", "the upload is complete: it takes no more bytes")
ERR_DATA_TOO_LARGE = Error(413, "ERR_MAX_SIZE_EXCEEDED", "the upload is larger than the data store can hold (an S3 object: 5 TiB in at most 10,000 parts)")
ERR_RANGE_NOT_SATISFIABLE = Error(416, "ERR_RANGE_NOT_SATISFIABLE", "requested range not satisfiable")
ERR_UPLOAD_LOCKED = Error(423, "ERR_UPLOAD_LOCKED", "upload is in use by another request, try again")
ERR_READ_TIMEOUT = Error(408, "ERR_READ_TIMEOUT", "no data received within the network timeout")
ERR_LOCK_LOST = Error(423, "ERR_LOCK_LOST", "lost the upload's lock while writing, resume the upload")
ERR_STORAGE_FULL = Error(507, "ERR_STORAGE_FULL", "not enough storage, resume the upload later")
ERR_STORAGE = Error(503, "ERR_STORAGE_UNAVAILABLE", "storage unavailable, resume the upload later")
ERR_STATE_UNAVAILABLE = Error(503, "ERR_STATE_UNAVAILABLE", "upload state store unavailable, try again")
ERR_SERVER_SHUTDOWN = Error(503, "ERR_SERVER_SHUTDOWN", "server is shutting down, resume the upload")
# The IETF resumable-upload draft (ietf.py); the three marked * are its problem types.
ERR_INVALID_UPLOAD_COMPLETE = Error(400, "ERR_INVALID_UPLOAD_COMPLETE", "missing or invalid Upload-Complete header")
ERR_INCONSISTENT_LENGTH = Error(400, "ERR_INCONSISTENT_UPLOAD_LENGTH", "inconsistent length values for upload")  # *
ERR_UPLOAD_COMPLETED = Error(400, "ERR_UPLOAD_COMPLETED", "upload is already completed")  # *
ERR_UNEXPECTED_UPLOAD_FIELD = Error(400, "ERR_UNEXPECTED_UPLOAD_FIELD", "Upload-Offset, Upload-Complete or Upload-Length is not allowed here")
ERR_INVALID_PARTIAL_UPLOAD = Error(415, "ERR_INVALID_CONTENT_TYPE", "Content-Type must be application/partial-upload")
ERR_INVALID_DIGEST = Error(400, "ERR_INVALID_DIGEST", "invalid Content-Digest, Repr-Digest or Want-Repr-Digest header")
ERR_CONTENT_DIGEST_MISMATCH = Error(400, "ERR_CONTENT_DIGEST_MISMATCH", "Content-Digest does not match the content: nothing was appended")
ERR_REPR_DIGEST_MISMATCH = Error(400, "ERR_REPR_DIGEST_MISMATCH", "Repr-Digest does not match the uploaded representation: the upload failed")
ERR_INVALID_CONTENT_DISPOSITION = Error(400, "ERR_INVALID_CONTENT_DISPOSITION", "Content-Disposition filename* has a charset other than UTF-8 or ISO-8859-1, or does not decode in it")
ERR_DRAFT_LENGTH_TOO_LARGE = Error(413, "ERR_DRAFT_LENGTH_TOO_LARGE", "the upload's length is beyond 999999999999999, the largest the draft's fields can carry: use tus")
# Hooks (see hooks/). A hook that rejects may answer with its own status (4xx/5xx) and message;
# the code stays the one below. A hook that fails or times out gives the 5xx rows.
ERR_UPLOAD_REJECTED = Error(400, "ERR_UPLOAD_REJECTED", "upload rejected by the server's hook")
ERR_FINISH_REJECTED = Error(400, "ERR_FINISH_REJECTED", "completing the upload was rejected by the server's hook")
ERR_TERMINATION_REJECTED = Error(400, "ERR_UPLOAD_TERMINATION_REJECTED", "termination rejected by the server's hook")
ERR_UNAUTHORIZED = Error(401, "ERR_UNAUTHORIZED", "authorization required")
ERR_FORBIDDEN = Error(403, "ERR_FORBIDDEN", "not allowed to access this upload")
ERR_ID_TAKEN = Error(409, "ERR_UPLOAD_ID_TAKEN", "an upload with the id chosen by the pre-create hook exists")
ERR_HOOK_FAILED = Error(502, "ERR_HOOK_FAILED", "a hook of the server failed, try again later")
ERR_HOOKS_BUSY = Error(503, "ERR_HOOKS_BUSY", "the server's hooks are busy, try again shortly")
ERR_HOOK_TIMEOUT = Error(504, "ERR_HOOK_TIMEOUT", "a hook of the server did not answer in time, try again later")


def media_type(headers: Mapping[str, str]) -> str:
    """The request's Content-Type without parameters, lower-case ("" when absent)."""
    return headers.get("content-type", "").split(";")[0].strip().lower()


def new_upload_id() -> str:
    """128 random bits as 32 hex characters: unguessable, URL-safe, a safe file name."""
    return secrets.token_hex(16)


_MAX_KEY_BYTES = 960  # S3's 1,024 less room for a prefix
RESERVED_KEY_PREFIX = ".tusd/"  # a data store's own objects (records, incomplete parts)


def object_key_problem(key: str) -> str | None:
    """Why `key` cannot name an upload's object (relative to the store's prefix), or None.

    For keys a pre-create hook chooses: relative, no empty, '.' or '..' segment (it
    cannot leave the prefix), no control characters, at most 960 bytes, not under
    the store's own `.tusd/`.
    """
    if not key or key.startswith("/") or len(key.encode("utf-8", "surrogatepass")) > _MAX_KEY_BYTES:
        return "an object key must be 1 to 960 bytes and relative to the prefix (no leading '/')"
    if any(segment in ("", ".", "..") for segment in key.split("/")):
        return "an object key must not have empty, '.' or '..' segments"
    if any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F or 0xD800 <= ord(char) <= 0xDFFF for char in key):
        return "an object key must not contain control characters"
    if key.startswith(RESERVED_KEY_PREFIX):
        return f"object keys under {RESERVED_KEY_PREFIX!r} are the data store's own"
    return None


def is_valid_id(upload_id: str) -> bool:
    return _ID_RE.fullmatch(upload_id) is not None


def parse_uint(value: str | None, error: Error) -> int | None:
    """A strictly decimal, non-negative integer, or None when the header is absent."""
    if value is None:
        return None
    if _DIGITS_RE.fullmatch(value) is None:
        raise error()
    return int(value)


def parse_length(value: str | None, error: Error) -> int | None:
    """An upload's length: strict decimal digits as `parse_uint` (else `error`), and at most
    MAX_LENGTH, else 413: valid digits the server cannot store are a size, not a syntax, error.
    Any number of digits is judged without int() on them (which refuses over 4300 digits)."""
    if value is None:
        return None
    if _LENGTH_RE.fullmatch(value) is None:
        raise error()
    digits = value.lstrip("0") or "0"
    if len(digits) > len(str(MAX_LENGTH)) or int(digits) > MAX_LENGTH:
        raise ERR_LENGTH_TOO_LARGE()
    return int(digits)


def format_http_date(timestamp: float) -> str:
    """IMF-fixdate, as RFC 9110 asks of senders (`Wed, 25 Jun 2014 16:00:00 GMT`)."""
    return email.utils.formatdate(timestamp, usegmt=True)


def parse_metadata(header: str | None) -> dict[str, bytes]:
    """Decode `Upload-Metadata`, strictly: a malformed header is a 400, never silently dropped.

    Keys are printable ASCII without space or comma and unique; values are
    standard base64 (checked with validate=True, since the default decoder skips
    junk) and may be empty, with or without the separating space.
    """
    if header is None:
        return {}
    if header.strip() == "":
        return {}
    result: dict[str, bytes] = {}
    for pair in header.split(","):
        parts = pair.strip().split(" ")
        if len(parts) > 2:
            raise ERR_INVALID_METADATA(f"malformed metadata pair {pair.strip()[:40]!r}")
        key = parts[0]
        value = parts[1] if len(parts) == 2 else ""
        if _METADATA_KEY_RE.fullmatch(key) is None:
            raise ERR_INVALID_METADATA("metadata keys must be non-empty printable ASCII without spaces or commas")
        if key in result:
            raise ERR_INVALID_METADATA(f"duplicate metadata key {key!r}")
        if len(value) % 4 or _B64_RE.fullmatch(value) is None:
            raise ERR_INVALID_METADATA(f"metadata value for {key!r} is not valid base64")
        try:
            result[key] = base64.b64decode(value, validate=True)
        except binascii.Error:
            raise ERR_INVALID_METADATA(f"metadata value for {key!r} is not valid base64") from None
    return result


def encode_metadata(metadata: dict[str, bytes]) -> str:
    """The inverse of `parse_metadata`, for clients and for metadata changed by hooks."""
    return ",".join(
        f"{key} {base64.b64encode(value).decode('ascii')}" if value else key for key, value in metadata.items()
    )


def parse_checksum(header: str | None) -> tuple[str, bytes] | None:
    """`Upload-Checksum: <algorithm> <base64 digest>` -> (algorithm, digest)."""
    if header is None:
        return None
    parts = header.strip().split(" ")
    if len(parts) != 2 or not parts[0] or len(parts[1]) % 4 or _B64_RE.fullmatch(parts[1]) is None:
        raise ERR_INVALID_CHECKSUM()
    try:
        return parts[0], base64.b64decode(parts[1], validate=True)
    except binascii.Error:
        raise ERR_INVALID_CHECKSUM() from None


@dataclass(frozen=True)
class Concat:
    """A parsed `Upload-Concat` header: a partial upload, or a final one made of parts."""

    raw: str
    partial: bool
    urls: tuple[str, ...] = ()

    @property
    def final(self) -> bool:
        return not self.partial


def parse_concat(header: str | None) -> Concat | None:
    if header is None:
        return None
    value = header.strip()
    if value == "partial":
        return Concat(raw=value, partial=True)
    if value.startswith("final;"):
        urls = tuple(value[len("final;"):].split(" "))
        urls = tuple(url for url in urls if url)  # tusd accepts extra spaces after "final;"
        # Printable ASCII only: the header is echoed back by HEAD, so it must be safe as a header.
        if urls and all(_URL_RE.fullmatch(url) for url in urls):
            return Concat(raw=value, partial=False, urls=urls)
    raise ERR_INVALID_CONCAT()

