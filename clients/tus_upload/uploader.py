"""tuspy's Uploader, extended for this tool.

tuspy sends each PATCH as one in-memory chunk, checksums only with sha1, retries
any failure (even a 4xx) after a fixed delay, and knows nothing of concatenation.
`Uploader` keeps tuspy's flow (create, then PATCH from `offset` until `stop_at`)
and changes what those steps do:
- the body streams from the file, reporting progress and honouring cancellation;
- `Upload-Checksum` uses the algorithm the server prefers (see `choose_checksum`);
- failures worth retrying (no answer, 5xx, 409, 423, 460) are retried with
  exponential backoff, re-reading the offset with HEAD; anything else fails at once
  with the server's message;
- `concat="partial"` creates a partial upload for the concatenation extension.
"""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urljoin

import requests
from tusclient.exceptions import TusCommunicationError, TusUploadFailed
from tusclient.request import TusRequest
from tusclient.uploader import Uploader as TuspyUploader

from tus_upload.files import digest_of

RETRY_STATUSES = frozenset({409, 423, 460})  # offset mismatch, locked, checksum mismatch


class UploadError(Exception):
    """A failure that ends one file's upload; the message is meant for people."""


class Cancelled(UploadError):
    pass


def describe(error: TusCommunicationError) -> str:
    """The server's own words where there are some."""
    status = error.status_code
    if status is None:
        return f"no answer from the server: {error}"
    body = error.response_content or b""
    text = body.decode("utf-8", "replace").strip() if isinstance(body, bytes) else str(body).strip()
    return f"server answered {status}: {text or error}"


def encode_metadata(metadata: dict[str, str]) -> str:
    """`Upload-Metadata`: keys as given (no spaces or commas), values base64 of their UTF-8."""
    pairs = []
    for key, value in metadata.items():
        if not key or any(ch in key for ch in " ,\t\r\n"):
            raise ValueError(f"metadata key {key!r} is empty or has a space or comma")
        pairs.append(f"{key} {base64.b64encode(value.encode('utf-8')).decode('ascii')}")
    return ",".join(pairs)


def choose_checksum(algorithms: list[str]) -> str | None:
    """sha256 when the server lists it, else sha1 (the one every checksum server has)."""
    for name in ("sha256", "sha1"):
        if name in algorithms:
            return name
    return None


@dataclass
class RetryPolicy:
    """Exponential backoff (delay, 2*delay, ... up to max_delay) for failures worth retrying."""

    retries: int = 8
    delay: float = 0.5
    max_delay: float = 10.0
    timeout: tuple[float, float] = (10.0, 120.0)  # connect, read
    cancel: threading.Event = field(default_factory=threading.Event)
    on_retry: Callable[[str, float], None] = lambda message, delay: None

    @staticmethod
    def retryable(error: TusCommunicationError) -> bool:
        status = error.status_code
        return status is None or status >= 500 or status in RETRY_STATUSES

    def wait(self, error: TusCommunicationError, failures: int) -> int:
        """Sleep before retry number `failures + 1`, or raise if there should be none."""
        if self.cancel.is_set():
            raise Cancelled("cancelled")
        if not self.retryable(error) or failures >= self.retries:
            raise UploadError(describe(error)) from error
        delay = min(self.delay * 2**failures, self.max_delay)
        self.on_retry(describe(error), delay)
        if self.cancel.wait(delay):
            raise Cancelled("cancelled")
        return failures + 1

    def call(self, action: Callable[[], object]) -> object:
        failures = 0
        while True:
            try:
                return action()
            except TusCommunicationError as error:
                failures = self.wait(error, failures)
            except requests.RequestException as error:
                failures = self.wait(TusCommunicationError(error), failures)


def check_response(response: requests.Response, what: str) -> None:
    if not 200 <= response.status_code < 300:
        raise TusCommunicationError(f"{what} failed", response.status_code, response.content)


class Body:
    """A PATCH body read from the file in blocks: reports progress and stops when cancelled.

    It has a length, so requests sends Content-Length rather than chunked encoding.
    """

    def __init__(self, stream, length: int, on_read: Callable[[int], None], cancel: threading.Event) -> None:  # type: ignore[no-untyped-def]
        self._stream = stream
        self._left = length
        self._length = length
        self._on_read = on_read
        self._cancel = cancel

    def __len__(self) -> int:
        return self._length

    def read(self, size: int = -1) -> bytes:
        if self._cancel.is_set():
            raise Cancelled("cancelled")
        if size is None or size < 0 or size > self._left:
            size = self._left
        data = self._stream.read(size) if size else b""
        self._left -= len(data)
        if data:
            self._on_read(len(data))
        return data


class StreamingRequest(TusRequest):
    """One PATCH: checksum header first (one read of the range), then the range streamed."""

    def __init__(self, uploader: Uploader) -> None:
        super().__init__(uploader)
        self._uploader = uploader

    def perform(self) -> None:
        uploader = self._uploader
        start, length = uploader.offset, self._content_length
        if self._upload_checksum:
            digest = uploader.range_digest(start, length)
            value = f"{self._checksum_algorithm_name} {base64.b64encode(digest).decode('ascii')}"
            self._request_headers["upload-checksum"] = value
        self.file.seek(start)
        sent = 0

        def on_read(count: int) -> None:
            nonlocal sent
            sent += count
            uploader.on_progress(start + sent)

        body = Body(self.file, length, on_read, uploader.policy.cancel)
        try:
            response = requests.patch(
                self._url,
                data=body,
                headers=self._request_headers,
                verify=self.verify_tls_cert,
                cert=self.client_cert,
                timeout=uploader.policy.timeout,
            )
        except requests.RequestException as error:
            raise TusUploadFailed(error) from error
        self.status_code = response.status_code
        self.response_content = response.content
        self.response_headers = {k.lower(): v for k, v in response.headers.items()}


class Uploader(TuspyUploader):
    def __init__(
        self,
        *args: object,
        policy: RetryPolicy,
        checksum: str | None = None,
        concat: str | None = None,
        known_digest: tuple[str, bytes] | None = None,
        on_progress: Callable[[int], None] = lambda position: None,
        **kwargs: object,
    ) -> None:
        self.policy = policy
        self._checksum = checksum
        self._concat = concat
        self._known_digest = known_digest  # (algorithm, digest) of the whole stream, to skip a re-read
        self.on_progress = on_progress
        self._failures = 0
        super().__init__(*args, upload_checksum=checksum is not None, **kwargs)  # type: ignore[arg-type]

    @property
    def checksum_algorithm_name(self) -> str:
        return self._checksum or "sha1"

    def range_digest(self, start: int, length: int) -> bytes:
        name = self.checksum_algorithm_name
        if self._known_digest and self._known_digest[0] == name and start == 0 and length == self.stop_at:
            return self._known_digest[1]
        return digest_of(self.get_file_stream(), name, start, length)

    def get_url_creation_headers(self) -> dict[str, str]:
        headers = super().get_url_creation_headers()
        if not self.metadata:
            del headers["upload-metadata"]
        if self._concat:
            headers["upload-concat"] = self._concat
        return headers

    def create_url(self) -> str:
        response = requests.post(
            self.client.url,
            headers=self.get_url_creation_headers(),
            verify=self.verify_tls_cert,
            cert=self.client_cert,
            timeout=self.policy.timeout,
        )
        check_response(response, "creating the upload")
        location = response.headers.get("location")
        if not location:
            raise TusCommunicationError("no Location in the creation answer", response.status_code, response.content)
        return urljoin(self.client.url, location)

    def get_offset(self) -> int:
        response = requests.head(
            self.url, headers=self.get_headers(), verify=self.verify_tls_cert, cert=self.client_cert, timeout=self.policy.timeout
        )
        check_response(response, "HEAD")
        offset = response.headers.get("upload-offset")
        if offset is None or not offset.isdigit():
            raise TusCommunicationError("no Upload-Offset in the HEAD answer", response.status_code, response.content)
        return int(offset)

    def upload(self, stop_at: int | None = None) -> None:
        self.stop_at = stop_at or self.get_file_size()
        if not self.url:
            self.set_url(self.policy.call(self.create_url))  # type: ignore[arg-type]
            self.offset = 0
        self.on_progress(self.offset)
        while self.offset < self.stop_at:
            self.upload_chunk()

    def upload_chunk(self) -> None:
        start = self.offset
        try:
            self.request = StreamingRequest(self)
            self.request.perform()
            if not 200 <= (self.request.status_code or 0) < 300:
                raise TusUploadFailed("PATCH failed", self.request.status_code, self.request.response_content)
            offset = self.request.response_headers.get("upload-offset", "")
            if not offset.isdigit():
                raise UploadError("the server's PATCH answer has no Upload-Offset")
            self.offset = int(offset)
            self._failures = 0
        except TusCommunicationError as error:
            self._failures = self.policy.wait(error, self._failures)
            self._resync(start)

    def _resync(self, start: int) -> None:
        """After a failed PATCH: the server's offset decides where to go on from."""
        while True:
            try:
                self.offset = self.get_offset()
                break
            except (TusCommunicationError, requests.RequestException) as error:
                if isinstance(error, requests.RequestException):
                    error = TusCommunicationError(error)
                self._failures = self.policy.wait(error, self._failures)
        if self.offset > self.stop_at:
            raise UploadError(f"the server's offset {self.offset} is past the end ({self.stop_at})")
        if self.offset > start:
            self._failures = 0  # progress was made: the failure budget is for being stuck
        self.on_progress(self.offset)
