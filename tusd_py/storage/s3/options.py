"""The S3 store's settings, and the aiobotocore client built from them.

Credentials are never a setting: they come from botocore's standard chain
(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE and
the shared files, container and instance roles).

Defaults, and why:
- `part_size` 8 MiB: above the 5 MiB minimum, small enough that a part in
  memory per upload (plus `max_in_flight` store-wide) keeps the server's RSS
  flat and small, large enough that a 512 MiB body takes 64 requests.
  `part_size()` grows it for uploads over 10,000 parts.
- memory: at most (uploads being written + `max_in_flight`) x the part size
  of body bytes, over a server of ~80 MiB with the S3 client loaded. 4 in
  flight: 8 parallel uploads peak at 180 MiB (8 in flight: 212 MiB, over the
  200 MiB that issue 15 allows), one upload still gets its `concurrency` of 4,
  and in bench/compare neither 8 nor 6 made SeaweedFS measurably faster
  (docs/performance.md, "S3").
- `request_checksums` off: botocore >= 1.36 sends CRC32 trailers on every
  upload by default, which many S3-compatible services reject (R2, B2, older
  Ceph and MinIO: "XAmzContentSHA256Mismatch", "NotImplemented") and which
  costs a second pass over every byte. SigV4 already covers the payload over
  plain HTTP and TLS covers it over HTTPS. Turn it on for AWS if wanted.
- `attempts` 3, with botocore's "standard" retry mode: exponential backoff with
  jitter on connection errors, 5xx, throttling; the total time a call can take
  is bounded by attempts x (connect_timeout + read_timeout) plus the backoff.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Literal

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

MiB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class S3Options:
    bucket: str
    endpoint_url: str | None = None  # for S3-compatible services; None = AWS
    region: str | None = None
    prefix: str = ""  # every key the store writes starts with it
    part_size: int = 8 * MiB  # preferred size of a part; see partsize.part_size
    path_style: bool = False  # https://host/bucket/key instead of https://bucket.host/key
    request_checksums: bool = False  # botocore's default CRC32 checksums; see above
    concurrency: int = 4  # part uploads in flight per upload
    max_in_flight: int = 4  # part uploads in flight in the whole store (each holds a part in memory)
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    attempts: int = 3  # per S3 call, with backoff
    temp_dir: str | None = None  # where bodies wait for their checksum (None = the system's)

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ValueError("bucket must be given")
        if self.prefix.startswith("/"):
            raise ValueError("prefix must not start with '/'")
        if self.concurrency < 1 or self.max_in_flight < 1 or self.attempts < 1:
            raise ValueError("concurrency, max_in_flight and attempts must be >= 1")

    @property
    def key_prefix(self) -> str:
        """The prefix as a folder: empty, or ending in '/'."""
        return self.prefix if not self.prefix or self.prefix.endswith("/") else self.prefix + "/"

    def client_config(self) -> AioConfig:
        checksums: Literal["when_supported", "when_required"] = "when_supported" if self.request_checksums else "when_required"
        return AioConfig(
            region_name=self.region,
            s3={"addressing_style": "path" if self.path_style else "auto"},
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            retries={"mode": "standard", "total_max_attempts": self.attempts},
            request_checksum_calculation=checksums,
            response_checksum_validation=checksums,
            max_pool_connections=max(self.max_in_flight, 10) + 4,
        )


@functools.cache
def _models() -> Any:
    """botocore's loader of service models, shared by the process's sessions (each would parse S3's model again: ~0.5 s)."""
    return get_session().get_component("data_loader")


def create_client(options: S3Options) -> Any:
    """An aiobotocore S3 client context manager (`async with create_client(o) as client`).

    A session of its own (credentials, which may refresh under an event loop's lock, are per session)
    on the process's one model loader, so the start-up check and the server's client parse the models once.
    """
    session = get_session()
    session.register_component("data_loader", _models())
    return session.create_client("s3", endpoint_url=options.endpoint_url, config=options.client_config())
