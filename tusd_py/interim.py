"""1xx interim responses over ASGI and HTTP/1.1: the one thing ASGI has no message for.

ASGI's early-hints extension carries only `Link` fields (and uvicorn sends it over
HTTP/2 only); uvicorn's HTTP/1.1 protocols send no 1xx but `100 Continue`. The
IETF draft announces an upload with `104 Upload Resumption Supported`, so the
server (`server.py`) accepts `{"type": INFORMATIONAL, "status": 1xx, "headers":
[...]}` before the response starts and says so in the scope's `extensions`.

This module is at the bottom: the draft handler sends with `send_interim`, the
server writes the head with `interim_response`; neither imports the other.
"""

from __future__ import annotations

import http

from starlette.requests import Request

from tusd_py.compat import HEADER_RE, HEADER_VALUE_RE, request_send

INFORMATIONAL = "http.response.informational"  # the ASGI extension (our own name; ASGI defines none)
_REASONS = {104: "Upload Resumption Supported"}


def interim_response(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    """An HTTP/1.1 1xx interim response head; never 101, which switches protocols."""
    if not 100 <= status <= 199 or status == 101:
        raise RuntimeError(f"not an interim status: {status}")
    try:
        reason = _REASONS.get(status) or http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Informational"
    lines = [f"HTTP/1.1 {status} {reason}\r\n".encode("ascii")]
    for name, value in headers:
        if HEADER_RE.search(name) or HEADER_VALUE_RE.search(value):
            raise RuntimeError("Invalid HTTP header in an interim response.")
        lines.append(name.lower() + b": " + value + b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


async def send_interim(request: Request, headers: dict[str, str]) -> bool:
    """Send `104 Upload Resumption Supported` now, if the server can; False if it cannot."""
    if INFORMATIONAL not in request.scope.get("extensions", {}):
        return False
    raw = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
    await request_send(request)({"type": INFORMATIONAL, "status": 104, "headers": raw})
    return True
