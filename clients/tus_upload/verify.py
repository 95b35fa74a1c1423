"""Checking the server's bytes after an upload, without a second download where the server can say.

A tus 1.0.0 server has no way to report the digest of what it stored. The IETF
resumable-upload draft has one: a HEAD on the upload that speaks the draft
(`Upload-Draft-Interop-Version`) and carries `Want-Repr-Digest` is answered with
`Repr-Digest` of the complete upload (tusd-py does, on any finished upload, tus-created
or not). So verification asks that first and compares it with the local file's digest:
a 10 GiB upload costs one HEAD, not 10 GiB more traffic. Only a server that answers no
digest (no draft, or no digests) is read back with GET.

Modes (`--verify`): `auto` (the digest when offered, else a download), `digest` (the
digest or fail), `download` (always read back), `off`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import requests
from http_sf import StructuredFieldError, parse

from tus_upload.files import file_digest
from tus_upload.uploader import RetryPolicy, UploadError, check_response

T = TypeVar("T")

MODES = ("auto", "digest", "download", "off")
DRAFT_VERSION = "8"  # draft -09 and later; the digest fields are the same in every version
WANT_REPR_DIGEST = "sha-256=10, sha-512=5"  # RFC 9530 names, by preference
ALGORITHMS = {"sha-256": "sha256", "sha-512": "sha512"}  # RFC 9530 name -> hashlib name


@dataclass(frozen=True)
class Reported:
    """The digest the server reports of what it stored, and its offset (length) if it said."""

    algorithm: str  # hashlib name
    digest: bytes
    size: int | None


def parse_repr_digest(value: str) -> tuple[str, bytes] | None:
    """(hashlib name, digest) of the first known algorithm in a `Repr-Digest` value, or None."""
    try:
        members = parse(value.encode("latin-1"), tltype="dictionary")
    except (StructuredFieldError, UnicodeEncodeError, ValueError):
        return None
    for name, member in members.items():
        digest = member[0] if isinstance(member, tuple) else member
        if name in ALGORITHMS and isinstance(digest, bytes):
            return ALGORITHMS[name], digest
    return None


def reported_digest(url: str, headers: dict[str, str], policy: RetryPolicy) -> Reported | None:
    """Ask the server for the digest of the finished upload at `url` (one HEAD); None if it offers none."""

    def ask() -> requests.Response:
        response = requests.head(
            url,
            headers={
                "Tus-Resumable": "1.0.0",  # a tus-only server answers its own HEAD, without a digest
                **headers,
                "Upload-Draft-Interop-Version": DRAFT_VERSION,
                "Want-Repr-Digest": WANT_REPR_DIGEST,
            },
            timeout=policy.timeout,
        )
        if response.status_code >= 500 or response.status_code == 423:
            check_response(response, "HEAD (digest)")  # worth retrying
        return response

    response: requests.Response = policy.call(ask)  # type: ignore[assignment]
    value = response.headers.get("repr-digest")
    if not 200 <= response.status_code < 300 or value is None:
        return None
    found = parse_repr_digest(value)
    if found is None:
        return None
    offset = response.headers.get("upload-offset", "")
    return Reported(found[0], found[1], int(offset) if offset.isdigit() else None)


def downloaded_digest(url: str, headers: dict[str, str], policy: RetryPolicy, algorithm: str) -> tuple[int, bytes]:
    """(size, digest) of the upload's bytes, read back with GET."""
    hasher = hashlib.new(algorithm)
    size = 0

    def fetch() -> None:
        nonlocal hasher, size
        hasher, size = hashlib.new(algorithm), 0
        with requests.get(url, headers=headers, stream=True, timeout=policy.timeout) as response:
            check_response(response, "GET (verification)")
            for block in response.iter_content(1024 * 1024):
                hasher.update(block)
                size += len(block)

    policy.call(fetch)
    return size, hasher.digest()


def verify(
    mode: str, url: str, headers: dict[str, str], policy: RetryPolicy, path: Path, name: str, size: int, known: tuple[str, bytes]
) -> str:
    """Compare the server's bytes at `url` with the local file; returns how ("digest",
    "download" or "off"), raises UploadError on a mismatch or when it cannot check.
    `known` is (hashlib name, digest) of the file, already computed."""
    if mode == "off":
        return "off"
    if mode in ("auto", "digest"):
        reported = _checking(url, lambda: reported_digest(url, headers, policy))
        if reported is not None:
            algorithm = reported.algorithm
            local = known[1] if known[0] == algorithm else bytes.fromhex(file_digest(path, algorithm))
            if reported.digest != local or reported.size not in (None, size):
                raise UploadError(
                    f"VERIFICATION FAILED for {name}: the server reports {reported.size} bytes with "
                    f"{algorithm} {reported.digest.hex()}, the file has {size} bytes with {local.hex()}"
                )
            return "digest"
        if mode == "digest":
            raise UploadError(f"cannot verify {url}: the server reports no digest of the upload (use --verify=download)")
    got_size, got = _checking(url, lambda: downloaded_digest(url, headers, policy, known[0]))
    if got_size != size or got != known[1]:
        raise UploadError(
            f"VERIFICATION FAILED for {name}: the server has {got_size} bytes with "
            f"{known[0]} {got.hex()}, the file has {size} bytes with {known[1].hex()}"
        )
    return "download"


def _checking(url: str, action: Callable[[], T]) -> T:
    try:
        return action()
    except UploadError as error:
        raise UploadError(f"cannot verify {url}: {error}") from error
