"""Upload URLs: building `Location`, and reading ids back out of URLs clients send."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from starlette.requests import Request

from tusd_py.config import Config
from tusd_py.protocol import is_valid_id

_HOST_RE = re.compile(r"[A-Za-z0-9.\-_]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
_FORWARDED_PAIR_RE = re.compile(r'(host|proto)=("[^"]*"|[^;,\s]*)', re.IGNORECASE)


def _forwarded(request: Request) -> tuple[str | None, str | None]:
    """host and proto from the first element of `Forwarded` (RFC 7239), then X-Forwarded-*."""
    host = proto = None
    forwarded = request.headers.get("forwarded")
    if forwarded:
        first = forwarded.split(",")[0]
        for name, value in _FORWARDED_PAIR_RE.findall(first):
            value = value.strip('"')
            if name.lower() == "host":
                host = value
            else:
                proto = value.lower()
    host = request.headers.get("x-forwarded-host", "").split(",")[0].strip() or host
    proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower() or proto
    return host, proto


def upload_url(request: Request, config: Config, upload_id: str) -> str:
    """An absolute URL, as tusd sends; relative if the Host header is not a plain host name."""
    scheme: str = request.scope["scheme"]  # what request.url.scheme says, without building the URL
    host = request.headers.get("host")
    if config.behind_proxy:
        forwarded_host, forwarded_proto = _forwarded(request)
        host = forwarded_host or host
        if forwarded_proto in ("http", "https"):
            scheme = forwarded_proto
    path = config.base_path + upload_id
    if not host or _HOST_RE.fullmatch(host) is None:
        return path
    if (scheme == "http" and host.endswith(":80")) or (scheme == "https" and host.endswith(":443")):
        host = host.rsplit(":", 1)[0]
    return f"{scheme}://{host}{path}"


def upload_id_from_url(url: str, config: Config) -> str | None:
    """The id in an upload URL (absolute, with any host, or relative), or None if it names none."""
    path = unquote(urlsplit(url).path)
    if not path.startswith(config.base_path):
        return None
    upload_id = path[len(config.base_path):]
    return upload_id if is_valid_id(upload_id) else None
