"""GET on an upload: its bytes as a download (not part of tus, but every server has it).

Only committed bytes are served: everything below the committed offset is never
written again, so no lock is needed. A finished upload also gets the validators
its data store gives (`DescribingDataStore`: ETag, Last-Modified) and answers
conditional requests with them (`conditional.py`), so browsers and CDNs can keep
it and revalidate it; an unfinished one has none, as its bytes still grow.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import AsyncIterator
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tusd_py import conditional, protocol as p
from tusd_py.state.base import Upload
from tusd_py.storage.base import DescribingDataStore, ReadableDataStore

# Types a browser may render inline without risk (tusd's list); everything else is an attachment.
SAFE_TYPES = frozenset(
    {
        "text/plain",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/bmp",
        "image/webp",
        "audio/wave",
        "audio/wav",
        "audio/x-wav",
        "audio/x-pn-wav",
        "audio/webm",
        "audio/ogg",
        "video/mp4",
        "video/webm",
        "video/ogg",
        "application/ogg",
    }
)
_RANGE_RE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
# Positions past this are all "beyond any content": compared, never converted, since
# int() refuses more than 4300 digits (and a 19-digit position is past any file already).
_BEYOND = 10**18


def content_type(metadata: dict[str, bytes]) -> tuple[str, bool]:
    """(Content-Type, inline?) from the `filetype` metadata."""
    filetype = metadata.get("filetype", b"").decode("ascii", "replace").split(";")[0].strip().lower()
    if filetype in SAFE_TYPES:
        return filetype, True
    return "application/octet-stream", False


def safe_filename(raw: bytes) -> str:
    """A file name fit for a header: no path, no control or quote characters."""
    name = raw.decode("utf-8", "replace").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C" and ch not in '"')
    return name.strip().strip(".") or "download"


def content_disposition(metadata: dict[str, bytes], inline: bool) -> str:
    """RFC 6266: an ASCII fallback in `filename`, the real name in `filename*`."""
    disposition = "inline" if inline else "attachment"
    raw = metadata.get("filename")
    if raw is None:
        return disposition
    name = safe_filename(raw)
    fallback = name.encode("ascii", "replace").decode("ascii").replace("?", "_")
    value = f'{disposition}; filename="{fallback}"'
    if fallback != name:
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A single `bytes=` range as [start, end); None means serve everything.

    Several ranges, or a malformed header, are ignored (RFC 9110 allows that);
    a well-formed range outside the content is a 416.
    """
    if header is None:
        return None
    match = _RANGE_RE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":
        suffix = _position(last)
        if suffix == 0:
            raise p.ERR_RANGE_NOT_SATISFIABLE(Content_Range=f"bytes */{size}")
        return max(size - suffix, 0), size
    start = _position(first)
    end = min(_position(last) + 1, size) if last else size
    if start >= size or (last and _position(last) < start):
        raise p.ERR_RANGE_NOT_SATISFIABLE(Content_Range=f"bytes */{size}")
    return start, end


def _position(digits: str) -> int:
    """A range position (1*DIGIT, any length: RFC 9110 sets no bound), capped at `_BEYOND`."""
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) <= 18 else _BEYOND


async def validators(upload: Upload, data: ReadableDataStore) -> tuple[str | None, int | None]:
    """A finished upload's ETag and Last-Modified (whole seconds, never in the future:
    RFC 9110 8.8.2.1); none for an unfinished upload or a store without them."""
    if not upload.finished or not isinstance(data, DescribingDataStore):
        return None, None
    described = await data.describe(upload.id)
    return described.etag, min(int(described.last_modified.timestamp()), int(time.time()))


async def download_response(request: Request, upload: Upload, data: ReadableDataStore) -> Response:
    """The upload's committed bytes (or the asked range), streamed.

    The first chunk is read before anything is answered: a store that cannot be
    read (S3 down) raises here, and the client gets the error table's 503 with
    Retry-After instead of a 200 whose body breaks off after the headers.
    """
    size = upload.offset
    try:
        metadata = p.parse_metadata(upload.metadata)
    except p.TusError:
        metadata = {}
    media_type, inline = content_type(metadata)
    headers = {"Cache-Control": "no-store" if not upload.finished else "private, max-age=0"}
    etag, modified = await validators(upload, data)
    if etag is not None:
        headers["ETag"] = etag
    if modified is not None:
        headers["Last-Modified"] = p.format_http_date(modified)
    if conditional.not_modified(request.headers, etag, modified):
        return Response(status_code=304, headers=headers)  # the validators and Cache-Control only (RFC 9110 15.4.5)
    headers["Content-Disposition"] = content_disposition(metadata, inline)
    headers["Accept-Ranges"] = "bytes"
    ranged = conditional.range_applies(request.headers, etag, modified)
    byte_range = parse_range(request.headers.get("range") if ranged else None, size)
    start, end = byte_range if byte_range is not None else (0, size)
    headers["Content-Length"] = str(end - start)
    status = 200
    if byte_range is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    if start == end:
        return Response(b"", status_code=status, headers=headers, media_type=media_type)
    chunks = aiter(data.read(upload.id, start, end))
    first = await anext(chunks, b"")
    return StreamingResponse(_after(first, chunks), status_code=status, headers=headers, media_type=media_type)


async def _after(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk
