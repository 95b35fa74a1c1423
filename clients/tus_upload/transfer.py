"""One file's upload from start to verified end: resume or create, send (one upload or
parallel partial uploads joined by concatenation), then check the server's bytes.

Chunks by default: with `Upload-Checksum`, a server keeps a PATCH only when all of it
arrived and matched (checklist CK-05), so a big file sent as one PATCH and interrupted at
90 % starts again from zero. Unless told otherwise (`--chunk-size`), an upload (or a
part) above CHUNKED_ABOVE sent with checksums goes in chunks of an eighth of it, at most
MAX_CHUNK: an interrupted run sends at most one chunk again (1/8 of the file, 64 MiB at
most), while one request per 64 MiB costs little (at 100 MB/s a 64 MiB chunk takes
0.7 s, so even a 20 ms round trip adds ~3 %; the client reads each chunk twice, to hash
and to send, and 64 MiB stays in the page cache between the two). Smaller uploads, and
uploads without checksums (where the server keeps whatever arrived), go in one PATCH.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import requests
from tusclient.client import TusClient

from tus_upload.files import FileRange, LocalFile, split
from tus_upload.resume import Entry, ResumeStore, fingerprint
from tus_upload.uploader import RetryPolicy, UploadError, Uploader, check_response, choose_checksum, encode_metadata
from tus_upload.verify import verify

MiB = 1024 * 1024
CHUNKED_ABOVE = 64 * MiB  # smaller uploads go in one PATCH: resending one costs < 1 s at 100 MB/s
MAX_CHUNK = 64 * MiB
WHOLE = -1  # `--chunk-size whole`: every upload (or part) in one PATCH


def chunk_size_for(length: int, setting: int | None, checksum: bool) -> int:
    """Bytes per PATCH for an upload of `length`: the setting (None: automatic, see above)."""
    if setting is not None and setting != WHOLE:
        return setting
    if setting == WHOLE or not checksum or length <= CHUNKED_ABOVE:
        return Uploader.DEFAULT_CHUNK_SIZE
    eighth = -(-length // 8)
    return min(MAX_CHUNK, -(-eighth // MiB) * MiB)


@dataclass
class Server:
    """What the server said about itself in OPTIONS."""

    extensions: frozenset[str]
    checksum_algorithms: list[str]
    max_size: int | None

    @classmethod
    def discover(cls, endpoint: str, headers: dict[str, str], policy: RetryPolicy) -> Server:
        def options() -> requests.Response:
            response = requests.options(endpoint, headers={"Tus-Resumable": "1.0.0", **headers}, timeout=policy.timeout)
            check_response(response, "OPTIONS")
            return response

        response: requests.Response = policy.call(options)  # type: ignore[assignment]

        def listed(name: str) -> list[str]:
            return [item.strip() for item in response.headers.get(name, "").split(",") if item.strip()]

        max_size = response.headers.get("tus-max-size", "")
        return cls(frozenset(listed("tus-extension")), listed("tus-checksum-algorithm"), int(max_size) if max_size.isdigit() else None)

    @property
    def checksum(self) -> str | None:
        return choose_checksum(self.checksum_algorithms) if "checksum" in self.extensions else None


@dataclass
class Settings:
    endpoint: str
    headers: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    chunk_size: int | None = None  # None: automatic (chunk_size_for); WHOLE: one PATCH
    parallel: int = 1
    resume: bool = True
    checksum: bool = True
    verify: str = "auto"  # verify.MODES
    digest: str = "sha256"


@dataclass
class Result:
    file: LocalFile
    url: str | None = None
    seconds: float = 0.0
    digest: str | None = None
    resumed_from: int = 0
    parts: int = 1
    verified: str | None = None  # how: "digest" (the server's Repr-Digest), "download" or "off"
    error: str | None = None


class Progress:
    """Positions of a file's parts, summed for the display; parts report from their threads."""

    def __init__(self, parts: int, report: Callable[[int], None]) -> None:
        self._positions = [0] * parts
        self._lock = threading.Lock()
        self._report = report

    def part(self, index: int) -> Callable[[int], None]:
        def update(position: int) -> None:
            with self._lock:
                self._positions[index] = position
                total = sum(self._positions)
            self._report(total)

        return update


class Transfer:
    """Uploads one file. `note` gets lines for people (resuming, retrying)."""

    def __init__(
        self,
        file: LocalFile,
        settings: Settings,
        server: Server,
        store: ResumeStore | None,
        policy: RetryPolicy,
        on_progress: Callable[[int], None],
        note: Callable[[str], None],
    ) -> None:
        self.file = file
        self.settings = settings
        self.server = server
        self.store = store
        self.policy = dataclasses.replace(policy, cancel=threading.Event())  # a failed part stops only its siblings
        self.on_progress = on_progress
        self.note = note
        self.client = TusClient(settings.endpoint, headers=dict(settings.headers))

    def run(self) -> Result:
        result = Result(self.file)
        began = time.monotonic()
        try:
            self._run(result)
        except UploadError as error:
            result.error = str(error)
        except OSError as error:
            result.error = f"cannot read {self.file.path}: {error}"
        result.seconds = time.monotonic() - began
        return result

    def _layout(self) -> list[tuple[int, int]]:
        parallel = self.settings.parallel
        if parallel > 1 and "concatenation" not in self.server.extensions:
            self.note(f"{self.file.relative}: the server does not support concatenation; sending it as one upload")
            parallel = 1
        return split(self.file.size, parallel)

    def _run(self, result: Result) -> None:
        algorithm = self.settings.digest
        with open(self.file.path, "rb") as stream:
            whole = hashlib.file_digest(stream, algorithm).digest()
        result.digest = f"{algorithm}:{whole.hex()}"
        ranges = self._layout()
        result.parts = len(ranges)
        key = f"{self.settings.endpoint} parts={len(ranges)} {fingerprint(self.file.path)}"
        urls, offsets = self._resumable(key, ranges, result.digest)
        if any(offsets):
            result.resumed_from = sum(offsets)
            self.note(f"resuming {self.file.relative} at offset {result.resumed_from} of {self.file.size} ({', '.join(u for u in urls if u)})")
        if self.store is not None:
            self.store.put(key, Entry([url or "" for url in urls], self.file.size, result.digest))

        checksum = self.server.checksum if self.settings.checksum else None
        known = (algorithm, whole)
        progress = Progress(len(ranges), self.on_progress)
        if len(ranges) == 1:
            url = self._send(0, ranges[0], urls[0], offsets[0], key, None, checksum, known, progress.part(0))
        else:
            with ThreadPoolExecutor(len(ranges), thread_name_prefix="part") as pool:
                futures = [
                    pool.submit(self._send, i, span, urls[i], offsets[i], key, "partial", checksum, None, progress.part(i))
                    for i, span in enumerate(ranges)
                ]
                try:
                    parts = [future.result() for future in futures]
                except BaseException:
                    self.policy.cancel.set()  # stop the other parts at their next block
                    raise
            url = self._concatenate(parts)
        result.url = url
        try:
            result.verified = verify(
                self.settings.verify, url, self.settings.headers, self.policy, self.file.path, self.file.relative, self.file.size, known
            )
        finally:
            if self.store is not None:
                self.store.remove_item(key)  # finished (or found corrupt): never resume it again

    def _resumable(self, key: str, ranges: list[tuple[int, int]], digest: str) -> tuple[list[str | None], list[int]]:
        """URLs and offsets to go on from, or Nones: only an entry made for this very content,
        whose uploads the server still has with the same lengths, is resumed."""
        none: tuple[list[str | None], list[int]] = ([None] * len(ranges), [0] * len(ranges))
        if self.store is None:
            return none
        entry = self.store.get(key)
        if entry is None:
            return none
        if entry.size != self.file.size or entry.digest != digest or len(entry.urls) != len(ranges):
            self.note(f"{self.file.relative} changed since its last upload began: starting a new upload")
            self.store.remove_item(key)
            return none
        urls: list[str | None] = []
        offsets: list[int] = []
        for url, (_, length) in zip(entry.urls, ranges, strict=True):
            if not url:
                urls.append(None)
                offsets.append(0)
                continue
            state = self._head(url)
            if state is None or state[1] != length or state[0] > length:
                self.note(f"{self.file.relative}: the server no longer has a matching upload at {url}: starting anew")
                urls.append(None)
                offsets.append(0)
                self.store.set_part(key, len(urls) - 1, "")
                continue
            urls.append(url)
            offsets.append(state[0])
        return urls, offsets

    def _head(self, url: str) -> tuple[int, int | None] | None:
        """(offset, length) of an upload, or None if the server has no such upload."""

        def head() -> requests.Response:
            response = requests.head(url, headers={"Tus-Resumable": "1.0.0", **self.settings.headers}, timeout=self.policy.timeout)
            if response.status_code >= 500 or response.status_code == 423:
                check_response(response, "HEAD")
            return response

        response: requests.Response = self.policy.call(head)  # type: ignore[assignment]
        offset = response.headers.get("upload-offset", "")
        length = response.headers.get("upload-length", "")
        if response.status_code != 200 or not offset.isdigit():
            return None
        return int(offset), int(length) if length.isdigit() else None

    def _send(
        self,
        index: int,
        span: tuple[int, int],
        url: str | None,
        offset: int,
        key: str,
        concat: str | None,
        checksum: str | None,
        known: tuple[str, bytes] | None,
        on_progress: Callable[[int], None],
    ) -> str:
        start, length = span
        stream = FileRange(self.file.path, start, length)
        try:
            uploader = Uploader(
                file_stream=stream,
                client=self.client,
                chunk_size=chunk_size_for(length, self.settings.chunk_size, checksum is not None),
                metadata=None if concat else self.file.metadata(self.settings.metadata),
                policy=self.policy,
                checksum=checksum,
                concat=concat,
                known_digest=known,
                on_progress=on_progress,
            )
            if url:
                uploader.url, uploader.offset = url, offset
            else:
                uploader.url = self.policy.call(uploader.create_url)  # type: ignore[assignment]
                if self.store is not None:
                    self.store.set_part(key, index, uploader.url)  # type: ignore[arg-type]
            uploader.upload(stop_at=length)
            return uploader.url  # type: ignore[return-value]
        finally:
            stream.release()

    def _concatenate(self, parts: list[str]) -> str:
        """The final upload: the parts in order, with the file's metadata (CC-03, CC-09)."""
        uploader_headers = {"Tus-Resumable": "1.0.0", **self.settings.headers, "Upload-Concat": "final;" + " ".join(parts)}
        metadata = encode_metadata(self.file.metadata(self.settings.metadata))
        if metadata:
            uploader_headers["Upload-Metadata"] = metadata

        def post() -> str:
            response = requests.post(self.settings.endpoint, headers=uploader_headers, timeout=self.policy.timeout)
            check_response(response, "creating the final (concatenated) upload")
            location = response.headers.get("location")
            if not location:
                raise UploadError("the server's concatenation answer has no Location")
            return requests.compat.urljoin(self.settings.endpoint, location)

        return self.policy.call(post)  # type: ignore[return-value]
