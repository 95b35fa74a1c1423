"""What the configured stores can do, and so which features the server offers.

As tusd's `composer.go`: each optional capability of a store is a small protocol
(`state/base.py`, `storage/base.py`); a store declares one by having its methods.
`Tus-Extension`, the draft, downloads and the sweeper follow from this record, so
the server never advertises what a backend cannot do.
"""

from __future__ import annotations

from dataclasses import dataclass

from tusd_py import protocol as p
from tusd_py.checksum import ALGORITHMS
from tusd_py.config import Config
from tusd_py.state.base import (
    ConcatStateStore,
    DraftStateStore,
    ExpiringStateStore,
    LengthDeferringStateStore,
    StateStore,
)
from tusd_py.storage.base import ConcatenatingDataStore, DataStore, ReadableDataStore


@dataclass(frozen=True)
class Capabilities:
    defer_length: bool  # creation-defer-length (and the draft's explicit completion)
    expiry: bool  # expired uploads are found and removed (with --expire-after > 0)
    concatenation: bool  # final uploads: the state tracks waits, the data store copies
    download: bool  # GET, ranged reads, the draft's digests
    reads_unfinished: bool  # GET serves an unfinished upload's committed bytes (else 409 until it is finished)
    draft: bool  # the IETF draft's own fields (announced length, kept digests)

    @classmethod
    def of(cls, state: StateStore, data: DataStore, config: Config) -> Capabilities:
        defer = isinstance(state, LengthDeferringStateStore)
        readable = isinstance(data, ReadableDataStore)
        return cls(
            defer_length=defer,
            expiry=isinstance(state, ExpiringStateStore) and config.expire_after > 0,
            concatenation=isinstance(state, ConcatStateStore) and isinstance(data, ConcatenatingDataStore),
            download=readable,
            reads_unfinished=isinstance(data, ReadableDataStore) and data.reads_unfinished,
            draft=config.ietf_draft and defer and readable and isinstance(state, DraftStateStore),
        )

    def tus_extensions(self) -> str:
        """`Tus-Extension`: the core's, then each one only when the stores can do it."""
        names = ["creation", "creation-with-upload"]
        if self.defer_length:
            names.append("creation-defer-length")
        names += ["termination", "checksum"]
        if self.concatenation:
            names += ["concatenation", "concatenation-unfinished"]
        if self.expiry:
            names.append("expiration")
        return ",".join(names)

    def tus_headers(self, max_size: int) -> dict[str, str]:
        """What OPTIONS tells about the server (both protocols): version, extensions, limits."""
        headers = {"Tus-Version": p.TUS_VERSION, "Tus-Extension": self.tus_extensions(), "Tus-Checksum-Algorithm": ",".join(ALGORITHMS)}
        if max_size:
            headers["Tus-Max-Size"] = str(max_size)
        return headers
