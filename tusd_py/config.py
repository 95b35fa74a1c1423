"""Every setting of the server in one place: its default, its help text, its flag.

`Config` is what the app is built from (`create_app(Config(...))` in tests). Each
field is declared with `setting(default, help, ...)`, and the command line
(`cli.py`) is built from these declarations: one `--flag` and one `TUSD_PY_FLAG`
variable per field, so a default or a help text is never written twice and no
setting is out of reach of the CLI.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# An absolute http(s) URL with nothing that could end a CSP directive or an HTML attribute.
_ENDPOINT_RE = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+(/[^\s;,'\"<>\\]*)?")
# One CSP source expression: 'self', 'none', a scheme, a host (wildcards and port allowed).
_SOURCE_RE = re.compile(r"'self'|'none'|[A-Za-z][A-Za-z0-9+.\-]*:(//[A-Za-z0-9.*\-\[\]:]+)?|[A-Za-z0-9.*\-]+(:[0-9*]+)?")
MiB = 1024 * 1024
HOOK_EVENTS = (
    "authorize", "pre-create", "post-create", "post-receive", "pre-finish", "post-finish", "pre-terminate", "post-terminate",
)


def setting(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] | None = None,
    if_empty: Any = None,
) -> Any:
    """A Config field with what the CLI needs to offer it.

    `flag` when the flag is not the field's name with dashes; `minimum`, `maximum` and `choices`
    bound what the CLI accepts. List settings (tuples) are comma-separated there, and
    an empty list is `if_empty` when given; an empty value of an optional setting is None.
    """
    metadata = {"help": help, "flag": flag, "minimum": minimum, "maximum": maximum, "choices": choices, "if_empty": if_empty}
    if isinstance(default, Path):
        return dataclasses.field(default_factory=lambda: Path(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass
class Config:
    host: str = setting("127.0.0.1", "Address to listen on.")
    port: int = setting(1080, "Port to listen on.")
    base_path: str = setting("/files/", "URL path of the creation endpoint.")
    data_dir: Path = setting(Path("./data"), "Where upload data (and the embedded state) is stored.", flag="dir")
    redis_url: str | None = setting(
        None,
        "Keep state in Redis: redis://host:6379/0, redis+sentinel://host1:26379,host2:26379/<master name>/0, or redis+cluster://host1:7000,host2:7001 (rediss+...: TLS; docs/scale-out.md). Unset: embedded SQLite state.",
    )
    redis_prefix: str = setting("tusd-py:", "Prefix of every Redis key (several deployments can share one Redis).")
    redis_timeout: float = setting(
        2.0, "Seconds a Redis call may take before the request gets 503 (tried twice).", minimum=0.1
    )
    redis_min_replicas: int = setting(
        0,
        "Answer a creation or an offset commit only once this many Redis replicas have it (WAIT, up to half --redis-timeout; fewer: 503), so a failover loses no acknowledged offset.",
        minimum=0,
    )
    redis_shards: int = setting(
        16,
        "Redis Cluster only: groups (hash slots) uploads and their indexes spread over. Never change it on a running deployment.",
        minimum=1,
        maximum=16384,
    )
    max_size: int = setting(0, "Largest upload in bytes (0 = no limit).", minimum=0)
    expire_after: float = setting(
        86400.0, "Seconds an unfinished upload lives after its last write (0 = never).", minimum=0
    )
    sweep_interval: float = setting(60.0, "Seconds between looks for expired uploads.", minimum=0.1)
    cors_origins: tuple[str, ...] = setting(("*",), "Comma-separated origins allowed by CORS, or *.", if_empty=("*",))
    behind_proxy: bool = setting(False, "Trust X-Forwarded-Host/-Proto and Forwarded when building upload URLs.")
    fsync: bool = setting(False, "fsync data (and state) before committing an offset.")
    log_level: str = setting("info", "How much to log.", choices=("critical", "error", "warning", "info", "debug"))
    lock_wait: float = setting(3.0, "Seconds a request waits for a busy upload before 423.", minimum=0)
    release_grace: float = setting(
        1.0, "Seconds a busy holder may go on streaming after another request asked for its lock.", minimum=0
    )
    network_timeout: float = setting(60.0, "Idle seconds allowed between reads of a request body.", minimum=0)
    max_header_size: int = setting(
        64 * 1024, "Largest request head (request line and headers) in bytes; 431 above.", minimum=1024
    )
    max_metadata_size: int = setting(16 * 1024, "Largest Upload-Metadata header in bytes.", minimum=0)
    max_metadata_keys: int = setting(64, "Most keys in Upload-Metadata.", minimum=0)
    max_concat_parts: int = setting(1000, "Most partial uploads one final upload may list.", minimum=1)
    max_concurrent_uploads: int = setting(
        0, "Request bodies streaming at once on this instance; more get 429 + Retry-After (0 = no cap).", minimum=0
    )
    shutdown_timeout: float = setting(
        10.0, "Graceful shutdown: seconds in-flight requests get to finish.", minimum=0
    )
    write_batch_size: int = setting(1024 * 1024, "Bytes gathered before one positional write.", minimum=1)
    direct_io: bool = setting(
        True,
        "Write large batches with O_DIRECT, past the page cache (faster where the page cache is slow to grow, e.g. some VMs).",
    )
    # S3 data store (see storage/s3/ and docs/s3.md); credentials only from the AWS chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, ...)
    s3_bucket: str | None = setting(
        None,
        "Store upload data in this S3 bucket instead of --dir (which then keeps only the embedded state and bounded temporary buffers). Credentials come from the AWS chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, roles.",
    )
    s3_endpoint: str | None = setting(None, "URL of an S3-compatible service (MinIO, SeaweedFS, R2, B2, Ceph); unset: AWS.")
    s3_region: str | None = setting(None, "S3 region (unset: the AWS chain's, e.g. AWS_REGION).")
    s3_prefix: str = setting("", "Prefix of every object key the server writes (several deployments can share one bucket).")
    s3_part_size: int = setting(
        8 * MiB,
        "Preferred size of an S3 part in bytes (at least 5 MiB, S3's minimum; grown for uploads over 10,000 parts). Memory per upload in flight is about one part.",
        minimum=5 * MiB,
        maximum=5 * 1024 * MiB,
    )
    s3_path_style: bool = setting(
        False, "Address the bucket as https://host/bucket/key (MinIO, SeaweedFS, Ceph) instead of https://bucket.host/key."
    )
    s3_request_checksums: bool = setting(
        False,
        "Send botocore's CRC32 checksums with every upload (many S3-compatible services reject them; SigV4 and TLS already cover the payload).",
    )
    s3_concurrency: int = setting(4, "Part uploads in flight per upload.", minimum=1)
    s3_max_in_flight: int = setting(
        4, "Part uploads in flight on this instance in all (each holds one part in memory).", minimum=1
    )
    s3_timeout: float = setting(30.0, "Seconds an S3 request may wait for its answer (then retried, see --s3-attempts).", minimum=0.1)
    s3_attempts: int = setting(3, "Attempts per S3 call (with exponential backoff) before the request gets 503.", minimum=1)
    # Hooks (see hooks/ and docs/hooks.md)
    hooks_module: str | None = setting(
        None, "Python module whose functions (pre_create, post_finish, authorize, ...) are the hooks."
    )
    hooks_http: str | None = setting(None, "URL each hook event is POSTed to as JSON.")
    hooks_http_forward_headers: tuple[str, ...] = setting(
        (), "Comma-separated client request headers copied onto webhook requests."
    )
    hooks_http_timeout: float = setting(10.0, "Seconds one webhook attempt may take.", minimum=0.001)
    hooks_http_retries: int = setting(2, "Further attempts after a webhook failed.", minimum=0)
    hooks_http_backoff: float = setting(1.0, "Seconds before the first webhook retry; doubles with each.", minimum=0)
    hooks_redis_stream: str | None = setting(
        None, "Redis stream that post-create, post-finish and post-terminate events are added to."
    )
    hooks_redis_url: str | None = setting(None, "Redis of --hooks-redis-stream (default: --redis-url).")
    hooks_events: tuple[str, ...] = setting(HOOK_EVENTS, "Comma-separated hook events to send.", flag="hooks-enabled-events")
    hooks_timeout: float = setting(
        30.0, "Seconds a blocking hook may take in all before the request fails with 504.", minimum=0.001
    )
    hooks_queue_size: int = setting(
        10_000,
        "Notifications waiting per transport and kind: progress (post-create, post-receive) past it is dropped and counted; post-finish and post-terminate are never dropped (the request waits for room).",
        minimum=1,
    )
    hooks_concurrency: int = setting(
        16,
        "Blocking hook calls (authorize, pre-*) in progress at once; more get 503 at once. Plain hook functions run on twice as many threads of their own.",
        minimum=1,
    )
    progress_interval: float = setting(
        1.0, "post-receive hooks: at most once per this many seconds per upload.", minimum=0
    )
    # Operations
    log_format: str = setting("text", "Log lines as text or as JSON objects.", choices=("text", "json"))
    expose_metrics: bool = setting(True, "Serve Prometheus metrics on /metrics.")
    ui: bool = setting(True, "Serve the browser upload page (Uppy) at /.")
    ui_endpoints: tuple[str, ...] = setting(
        (),
        "Comma-separated tus endpoints (absolute http(s) URLs) besides this server's that the upload page's ?endpoint= may name; any other is refused.",
    )
    ui_frame_ancestors: str = setting(
        "'self'",
        "Who may frame the upload page: its Content-Security-Policy frame-ancestors ('self', 'none', or origins separated by spaces).",
    )
    ietf_draft: bool = setting(
        True,
        "Also serve requests that speak the IETF resumable-upload draft (Upload-Draft-Interop-Version 6, 8 or 9) on the same uploads.",
    )
    ietf_interim: bool = setting(
        True,
        "Send the draft's 104 interim responses (upload URL, progress). Turn off behind a proxy that does not pass 1xx responses on, such as nginx.",
    )
    remove_parts_after_concat: bool = setting(
        False,
        "Delete partial uploads once a final upload has been assembled from them (unless another final upload still waits on one).",
    )

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
        if self.redis_min_replicas < 0:
            raise ValueError("redis_min_replicas must be >= 0")
        if self.log_format not in ("text", "json"):
            raise ValueError("log_format must be text or json")
        if self.s3_prefix.startswith("/"):
            raise ValueError("s3_prefix must not start with '/'")
        if self.s3_endpoint is not None and _ENDPOINT_RE.fullmatch(self.s3_endpoint) is None:
            raise ValueError(f"s3_endpoint: {self.s3_endpoint!r} is not an absolute http(s) URL")
        for endpoint in self.ui_endpoints:
            if _ENDPOINT_RE.fullmatch(endpoint) is None:
                raise ValueError(f"ui_endpoints: {endpoint!r} is not an absolute http(s) URL")
        sources = self.ui_frame_ancestors.split()
        if not sources or not all(_SOURCE_RE.fullmatch(source) for source in sources):
            raise ValueError(f"ui_frame_ancestors: {self.ui_frame_ancestors!r} is not a list of CSP sources ('self', 'none', origins)")
        self.ui_frame_ancestors = " ".join(sources)
