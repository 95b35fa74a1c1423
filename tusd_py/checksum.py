"""Incremental digests for the checksum extension, and for RFC 9530 digest fields.

Each hasher is fed while the body streams to disk (in the writer thread, where
hashlib and zlib release the GIL), so verifying a chunk never re-reads it.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Callable, Protocol

from tusd_py.protocol import ERR_UNSUPPORTED_CHECKSUM


class Hasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...

    def digest(self) -> bytes: ...


class Crc32:
    """zlib.crc32 behind the hashlib interface; the digest is 4 bytes, big-endian."""

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        self._value = zlib.crc32(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


ALGORITHMS: dict[str, Callable[[], Hasher]] = {
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
    "md5": hashlib.md5,
    "crc32": Crc32,
}


# RFC 9530 names (IANA "Hash Algorithms for HTTP Digest Fields"), the active ones only:
# md5, sha, crc32c and the unix sums are deprecated there as insecure or collision-prone.
DIGEST_ALGORITHMS: dict[str, Callable[[], Hasher]] = {
    "sha-256": hashlib.sha256,
    "sha-512": hashlib.sha512,
}


def new_hasher(algorithm: str) -> Hasher:
    try:
        return ALGORITHMS[algorithm]()
    except KeyError:
        raise ERR_UNSUPPORTED_CHECKSUM() from None
