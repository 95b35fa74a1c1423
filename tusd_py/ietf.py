"""The fields of the IETF draft "Resumable Uploads for HTTP" (draft-ietf-httpbis-resumable-upload).

A request speaks the draft when it carries `Upload-Draft-Interop-Version` with a
version served here: 6 (drafts -04 and -05, tus-js-client's `ietf-draft-05`), 8
(drafts -09 to -11) or 9 (drafts -12 to the latest text). Anything else is a tus
1.0.0 request.

What 9 changes for a server (SPEC_NOTES.md, issue 16): `Upload-Complete` on a
creation or append response says whose semantics it carries, so every error there
is `?0` but a failed representation (`UPLOAD_COMPLETE_ERRORS`); the
`completed-upload` problem type is gone; OPTIONS on the creation URI drops
`Accept-Patch`; GET is offset retrieval like HEAD.

This module parses the draft's request fields and shapes its response fields and
errors; it knows nothing about stores. `ietf_handler.py` applies the rules.
Structured fields (RFC 9651) are parsed by `http_sf`; a field whose value is not
valid is ignored as a whole, as the draft asks of receivers (checklist I-01).
"""

from __future__ import annotations

import email.message
import email.utils
import json
import re
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable

import http_sf
from http_sf import StructuredFieldError
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response

from tusd_py import protocol as p
from tusd_py.checksum import DIGEST_ALGORITHMS, Hasher
from tusd_py.config import Config
from tusd_py.state.base import Upload

# http_sf's own annotations describe every structured value at once; these two are used
# on values whose shape each caller knows (an Item, a Dictionary).
parse: Callable[..., Any] = http_sf.parse
ser: Callable[..., str] = http_sf.ser

VERSIONS = (6, 8, 9)
LATEST = 9
PARTIAL_UPLOAD = "application/partial-upload"
DRAFT_FIELDS = ("upload-offset", "upload-complete", "upload-length")
PROBLEM_BASE = "https://iana.org/assignments/http-problem-types#"
# Errors answered with an RFC 9457 problem document, by code: the draft's problem types.
PROBLEMS = {
    p.ERR_MISMATCHED_OFFSET.code: ("mismatching-upload-offset", "offset from request does not match offset of resource"),
    p.ERR_INCONSISTENT_LENGTH.code: ("inconsistent-upload-length", "inconsistent length values for upload"),
    p.ERR_UPLOAD_COMPLETED.code: ("completed-upload", "upload is already completed"),
}
# Interop 9: the errors on creation and append that come from processing the representation
# (`Upload-Complete: ?1`, the client must not resume); every other one is the protocol's (`?0`).
UPLOAD_COMPLETE_ERRORS = frozenset({p.ERR_REPR_DIGEST_MISMATCH.code})
_VERSION_RE = re.compile(r"[0-9]{1,3}")
# Content types that label the transfer, not the representation (tus-js-client sends
# application/partial-upload on a creation request that carries data).
_TRANSFER_TYPES = {PARTIAL_UPLOAD, p.OFFSET_CONTENT_TYPE}
_EXT_FILENAME_RE = re.compile(r";\s*filename\*\s*=\s*([^;\s]+)", re.IGNORECASE)
# RFC 8187 charsets: the two every recipient must support; anything else is not decoded.
_FILENAME_CHARSETS = {"utf-8": "utf-8", "iso-8859-1": "latin-1"}
# RFC 9651: an sf-Integer has at most 15 digits. A longer offset or length cannot be sent
# in the draft's fields, so such an upload is refused to draft requests up front (a 413).
MAX_INTEGER = 999_999_999_999_999


def interop_version(headers: Headers) -> int | None:
    """The draft version a request speaks, or None: then it is a tus request."""
    value = headers.get("upload-draft-interop-version")
    if value is None or _VERSION_RE.fullmatch(value.strip()) is None:
        return None
    version = int(value.strip())
    return version if version in VERSIONS else None


# -- request fields -------------------------------------------------------------------


def _item(headers: Headers, name: str) -> Any:
    """The bare value of an sf-Item field, or None when absent or not a valid Item."""
    values = headers.getlist(name)
    if not values:
        return None
    try:
        value, _params = parse(",".join(values).encode("latin-1"), tltype="item")
    except (StructuredFieldError, UnicodeEncodeError):
        return None
    return value


def boolean(headers: Headers, name: str) -> bool | None:
    value = _item(headers, name)
    return value if isinstance(value, bool) else None


def integer(headers: Headers, name: str) -> int | None:
    """A non-negative sf-Integer (`True` is an int in Python, but not an Integer here)."""
    value = _item(headers, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


@dataclass(frozen=True)
class Fields:
    """The draft's fields on one request; None when absent or invalid (and so ignored)."""

    complete: bool | None
    offset: int | None
    length: int | None
    content_length: int | None  # Content-Length (a 400 when malformed, as for tus)

    def implied_length(self, offset: int) -> int | None:
        """`Upload-Complete: ?1` with a Content-Length: the request ends the representation."""
        if self.complete and self.content_length is not None:
            return offset + self.content_length
        return None


def request_fields(headers: Headers) -> Fields:
    return Fields(
        complete=boolean(headers, "upload-complete"),
        offset=integer(headers, "upload-offset"),
        length=integer(headers, "upload-length"),
        content_length=p.parse_uint(headers.get("content-length"), p.ERR_INVALID_CONTENT_LENGTH),
    )


def has_content(headers: Headers, fields: Fields) -> bool:
    if fields.content_length is not None:
        return fields.content_length > 0
    return "transfer-encoding" in headers


def metadata(headers: Headers) -> str | None:
    """The upload's metadata in tus form, so tus clients and GET see it too.

    `Upload-Metadata` if the client sent it (tus-js-client does in draft mode), else the
    representation's own fields, as tusd maps them: `Content-Type` -> `filetype`, the
    `Content-Disposition` file name -> `filename` (I-18).
    """
    if headers.get("upload-metadata") is not None:
        return headers["upload-metadata"]
    values: dict[str, bytes] = {}
    content_type = headers.get("content-type", "").strip()
    if content_type and p.media_type(headers) not in _TRANSFER_TYPES:
        values["filetype"] = content_type.encode("utf-8", "replace")
    filename = _filename(headers.get("content-disposition"))
    if filename:
        values["filename"] = filename.encode("utf-8", "replace")
    return p.encode_metadata(values) if values else None


def _filename(disposition: str | None) -> str | None:
    """The file name of a `Content-Disposition`: `filename*` (RFC 8187) before `filename`, as
    RFC 6266 asks (the stdlib parser keeps whichever comes last). GET makes it safe to send back.

    `filename*` is decoded strictly, in UTF-8 or ISO-8859-1 only: Python's other codecs
    (`idna`, `punycode`, `undefined`, ...) are no charsets, and some of them fail on any
    input. One that is not decoded falls back to `filename`, as RFC 6266 (4.3) designs it;
    without that fallback the request is a 400 (issue 13, item 14).
    """
    if not disposition:
        return None
    message = email.message.Message()
    message["content-disposition"] = disposition
    params = message.get_params(header="content-disposition") or []
    fallback = next((value for name, value in params if name == "filename" and isinstance(value, str)), None)
    extended = _EXT_FILENAME_RE.search(disposition)
    if extended is not None:
        charset, _language, encoded = email.utils.decode_rfc2231(extended.group(1))
        if charset is not None:
            codec = _FILENAME_CHARSETS.get(charset.lower())
            try:
                if codec is None:
                    raise LookupError(charset)
                return urllib.parse.unquote(encoded, encoding=codec, errors="strict")
            except (LookupError, UnicodeDecodeError):
                if fallback is None:
                    raise p.ERR_INVALID_CONTENT_DISPOSITION() from None
    return fallback


def announced_length(fields: Fields, *, offset: int, known: int | None) -> int | None:
    """The length this request and earlier ones agree on, or None if none is known (I-04).

    `Upload-Length`, and `Upload-Complete: ?1` with a Content-Length, each give one;
    they must match each other and whatever was recorded before.
    """
    for length in (fields.length, fields.implied_length(offset)):
        if length is None:
            continue
        check_length(length)
        if known is not None and length != known:
            raise p.ERR_INCONSISTENT_LENGTH()
        known = length
    if known is not None and known < offset:
        raise p.ERR_INCONSISTENT_LENGTH("the length is below the upload's offset")
    return known


def check_representable(upload: Upload) -> None:
    """A tus upload may be longer than the draft's fields can say: a 413, before anything (issue 13, item 15)."""
    check_length(max(upload.offset, upload.bound or 0))


def check_length(length: int | None) -> None:
    """A length or offset a draft answer could not carry is a 413 before anything happens (issue 13, item 15)."""
    if length is not None and length > MAX_INTEGER:
        raise p.ERR_DRAFT_LENGTH_TOO_LARGE(Upload_Limit=ser({"max-size": MAX_INTEGER}))


# -- digests (RFC 9530) ---------------------------------------------------------------


def _dictionary_field(headers: Headers, name: str) -> dict[str, Any] | None:
    """A digest field as a structured-field dictionary (all its lines joined); None when absent."""
    values = headers.getlist(name)
    if not values:
        return None
    try:
        members: dict[str, Any] = parse(",".join(values).encode("latin-1"), tltype="dictionary")
        return members
    except (StructuredFieldError, UnicodeEncodeError):
        raise p.ERR_INVALID_DIGEST() from None


def _digests(headers: Headers, name: str) -> dict[str, bytes] | None:
    """The digests of a `Content-Digest` or `Repr-Digest` field for the algorithms we know.

    Algorithms we do not know are ignored (RFC 9530 lets a recipient ignore any digest);
    a field that is not a dictionary, or a known algorithm without a byte sequence, is a 400.
    """
    members = _dictionary_field(headers, name)
    if members is None:
        return None
    digests: dict[str, bytes] = {}
    for algorithm, member in members.items():
        if algorithm in DIGEST_ALGORITHMS:
            value = member[0] if isinstance(member, tuple) else None
            if not isinstance(value, bytes):
                raise p.ERR_INVALID_DIGEST()
            digests[algorithm] = value
    return digests


def content_digest(headers: Headers) -> tuple[str, bytes] | None:
    """The `Content-Digest` to verify the content with: the strongest algorithm we know."""
    digests = _digests(headers, "content-digest")
    if not digests:
        return None
    algorithm = max(digests, key=list(DIGEST_ALGORITHMS).index)
    return algorithm, digests[algorithm]


def content_checksum(headers: Headers) -> tuple[Hasher, bytes] | None:
    """The hasher to feed the content to, and the `Content-Digest` it must give (I-33)."""
    parsed = content_digest(headers)
    if parsed is None:
        return None
    algorithm, digest = parsed
    return DIGEST_ALGORITHMS[algorithm](), digest


def repr_digest(headers: Headers) -> str | None:
    """`Repr-Digest` restricted to the algorithms we know, serialised for the upload record."""
    digests = _digests(headers, "repr-digest")
    return ser(digests) if digests else None


def parse_repr_digest(value: str) -> dict[str, bytes]:
    """The record's `repr_digest` back into digests (it was serialised by `repr_digest`)."""
    return {name: member[0] for name, member in parse(value.encode("ascii"), tltype="dictionary").items()}


def want_repr_digest(headers: Headers) -> str | None:
    """The algorithm to answer `Want-Repr-Digest` with: the most preferred one we know,
    else sha-256 unless the client ruled it out (preference 0)."""
    members = _dictionary_field(headers, "want-repr-digest")
    if members is None:
        return None
    preferences: dict[str, int] = {}
    for algorithm, member in members.items():
        weight = member[0] if isinstance(member, tuple) else None
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 10:
            raise p.ERR_INVALID_DIGEST()
        preferences[algorithm] = weight
    known = {name: weight for name, weight in preferences.items() if name in DIGEST_ALGORITHMS and weight > 0}
    if known:
        return max(known, key=lambda name: (known[name], list(DIGEST_ALGORITHMS).index(name)))
    return None if preferences.get("sha-256") == 0 else "sha-256"


def format_digests(digests: dict[str, bytes]) -> str:
    return ser(digests)


# -- response fields -------------------------------------------------------------------


def upload_limit(config: Config, version: int, upload: Upload | None = None) -> str:
    """`Upload-Limit` (I-06, I-08): the size cap and the time left, or `min-size=0`
    when there is no limit (the field is never empty). For a new upload (OPTIONS, 413
    on creation) the time left is the whole `expire_after`."""
    limits: dict[str, int] = {}
    if config.max_size:
        limits["max-size"] = min(config.max_size, MAX_INTEGER)  # the draft cannot carry more (check_length)
    age: float | None = None
    if upload is None:
        age = config.expire_after or None
    elif upload.expires is not None and not upload.finished:
        age = max(upload.expires - time.time(), 0.0)
    if age is not None:
        limits["max-age" if version >= 7 else "expires"] = int(age)  # -05 called it `expires`
    return ser(limits or {"min-size": 0})


def state_headers(upload: Upload, version: int) -> dict[str, str]:
    """Offset, completeness and the length if known: what every successful answer about
    an upload says (I-12, I-13, I-19, I-24, I-25)."""
    headers = {
        "Upload-Draft-Interop-Version": str(version),
        "Upload-Offset": ser(upload.offset),
        "Upload-Complete": ser(upload.finished),
    }
    if upload.bound is not None:
        headers["Upload-Length"] = ser(upload.bound)
    return headers


def error_response(error: p.TusError, request: Request, version: int, limit: str) -> Response:
    """An error for a draft request: the draft's problem types as RFC 9457 documents
    (I-04, I-23, I-26), every other error as the usual one line; `Upload-Limit` on 413 (I-09)."""
    headers = {"Upload-Draft-Interop-Version": str(version)}
    if error.status == 413:
        headers["Upload-Limit"] = limit
    headers.update(error.headers)
    if version >= 9 and request.method in ("POST", "PATCH"):  # whose semantics the answer carries (-12)
        headers["Upload-Complete"] = ser(error.code in UPLOAD_COMPLETE_ERRORS)
    body = b""
    media_type = "text/plain; charset=utf-8"
    problem = PROBLEMS.get(error.code)
    if version >= 9 and error.code == p.ERR_UPLOAD_COMPLETED.code:
        problem = None  # -12 removed the `completed-upload` problem type
    if problem is not None:
        document: dict[str, object] = {"type": PROBLEM_BASE + problem[0], "title": problem[1], "detail": error.message}
        if error.code == p.ERR_MISMATCHED_OFFSET.code:
            expected = {name.lower(): value for name, value in error.headers}.get("upload-offset")
            document["expected-offset"] = int(expected) if expected is not None else None
            document["provided-offset"] = integer(request.headers, "upload-offset")
        body = json.dumps(document).encode()
        media_type = "application/problem+json"
    elif request.method != "HEAD":
        body = f"{error}\n".encode()
    if request.method == "HEAD":
        body = b""
    return Response(body, status_code=error.status, media_type=media_type, headers=headers)
