"""Every setting of the server in one place, with its default.

The command line (`cli.py`) fills this in from flags and `TUSD_PY_*` variables;
tests build it directly and pass it to `create_app`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# An absolute http(s) URL with nothing that could end a CSP directive or an HTML attribute.
_ENDPOINT_RE = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+(/[^\s;,'\"<>\\]*)?")
# One CSP source expression: 'self', 'none', a scheme, a host (wildcards and port allowed).
_SOURCE_RE = re.compile(r"'self'|'none'|[A-Za-z][A-Za-z0-9+.\-]*:(//[A-Za-z0-9.*\-\[\]:]+)?|[A-Za-z0-9.*\-]+(:[0-9*]+)?")


@dataclass
class Config:
    host: str = "127.0.0.1"
    port: int = 1080
    base_path: str = "/files/"
    data_dir: Path = field(default_factory=lambda: Path("./data"))
    redis_url: str | None = None  # None: the embedded SQLite state store
    redis_prefix: str = "tusd-py:"
    redis_timeout: float = 2.0  # seconds one Redis call may take (connect or read) before it counts as failed (503)
    max_size: int = 0  # bytes; 0 = no limit
    expire_after: float = 86400.0  # seconds an unfinished upload lives after its last write; 0 = never
    sweep_interval: float = 60.0  # how often expired uploads are looked for
    cors_origins: tuple[str, ...] = ("*",)
    behind_proxy: bool = False
    fsync: bool = False
    log_level: str = "info"
    lock_wait: float = 3.0  # how long a request waits for an upload's lock before 423
    release_grace: float = 1.0  # how long a busy holder may go on after another request asks for its lock
    network_timeout: float = 60.0  # idle seconds allowed between two reads of a request body
    max_header_size: int = 64 * 1024  # bytes of request line and headers; 431 above
    max_metadata_size: int = 16 * 1024  # bytes of Upload-Metadata; 400 above
    max_metadata_keys: int = 64
    max_concat_parts: int = 1000  # partial uploads one final upload may list; 400 above
    max_concurrent_uploads: int = 0  # request bodies streaming at once per instance; 429 above; 0 = no cap
    shutdown_timeout: float = 10.0  # graceful shutdown: how long in-flight requests get to finish
    write_batch_size: int = 1024 * 1024  # bytes gathered before one positional write
    direct_io: bool = True  # large writes with O_DIRECT, past the page cache (storage/files.py)
    # Hooks (see hooks/ and docs/hooks.md)
    hooks_module: str | None = None  # a Python module with functions named after the events
    hooks_http: str | None = None  # a URL each event is POSTed to as JSON
    hooks_http_forward_headers: tuple[str, ...] = ()  # client request headers copied onto webhook requests
    hooks_http_timeout: float = 10.0  # seconds one webhook attempt may take
    hooks_http_retries: int = 2  # further attempts after a webhook failed (5xx, network error, timeout)
    hooks_http_backoff: float = 1.0  # seconds before the first retry; doubles with each
    hooks_redis_stream: str | None = None  # a Redis stream post-* events are added to (XADD)
    hooks_redis_url: str | None = None  # the Redis of that stream; default: redis_url
    hooks_events: tuple[str, ...] = (
        "authorize", "pre-create", "post-create", "post-receive", "pre-finish", "post-finish", "pre-terminate", "post-terminate",
    )
    hooks_timeout: float = 30.0  # seconds a blocking hook may take in all (retries included) before 504
    hooks_queue_size: int = 10_000  # notifications waiting per transport and kind (progress past it: dropped)
    hooks_concurrency: int = 16  # blocking hook calls at once (more get 503); plain functions get twice as many threads
    progress_interval: float = 1.0  # post-receive: at most once per this many seconds per upload
    # Operations
    log_format: str = "text"  # or "json": one JSON object per line
    expose_metrics: bool = True  # serve Prometheus metrics on /metrics
    ui: bool = True  # the browser upload page at / (tusd_py/ui.py)
    ui_endpoints: tuple[str, ...] = ()  # other tus endpoints the page's ?endpoint= may name (absolute http(s) URLs)
    ui_frame_ancestors: str = "'self'"  # the page's CSP frame-ancestors: who may frame it
    ietf_draft: bool = True  # also serve the IETF resumable-upload draft (interop 6 and 8) on the same uploads
    ietf_interim: bool = True  # send its 104 interim responses (off behind proxies that mishandle 1xx, e.g. nginx)
    remove_parts_after_concat: bool = False  # delete partial uploads once a final upload is assembled from them

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if not self.base_path.startswith("/"):
            self.base_path = "/" + self.base_path
        if not self.base_path.endswith("/"):
            self.base_path += "/"
        if self.max_size < 0:
            raise ValueError("max_size must be >= 0")
        if self.expire_after < 0:
            raise ValueError("expire_after must be >= 0")
        if self.log_format not in ("text", "json"):
            raise ValueError("log_format must be text or json")
        for endpoint in self.ui_endpoints:
            if _ENDPOINT_RE.fullmatch(endpoint) is None:
                raise ValueError(f"ui_endpoints: {endpoint!r} is not an absolute http(s) URL")
        sources = self.ui_frame_ancestors.split()
        if not sources or not all(_SOURCE_RE.fullmatch(source) for source in sources):
            raise ValueError(f"ui_frame_ancestors: {self.ui_frame_ancestors!r} is not a list of CSP sources ('self', 'none', origins)")
        self.ui_frame_ancestors = " ".join(sources)
