"""Whole-file digests (RFC 9530 `Repr-Digest`) of complete uploads, computed once.

A complete upload never changes, so its digests are kept with its record (the
`digests` field, an sf-dictionary, in either state store) once known: those
computed at completion, and on the first request for one not computed then, all
known algorithms in one read of the file. Before this, every draft HEAD with
`Want-Repr-Digest` hashed the whole file again: 12 HEADs of ~120 bytes burned 5 s
of CPU on 256 MiB (issue 13, item 9).

Requests for the same upload share one computation: it runs as a task of its own,
which a request only waits for (shielded), so a client that hangs up stops its
own wait and nothing else; the result is recorded for every later request. The
sharing is per instance: instances that race on a record with nothing in it may
each compute once, and then nobody does again.
"""

from __future__ import annotations

import asyncio

from tusd_py.checksum import DIGEST_ALGORITHMS, Hasher
from tusd_py.ietf import format_digests, parse_repr_digest
from tusd_py.state.base import FullStateStore, Upload
from tusd_py.storage.base import ReadableDataStore


def _feed(hashers: list[Hasher], chunk: bytes) -> None:
    for hasher in hashers:
        hasher.update(chunk)


def _known(upload: Upload) -> dict[str, bytes]:
    return parse_repr_digest(upload.digests) if upload.digests else {}


def _retrieve(task: asyncio.Task[dict[str, bytes]]) -> None:
    """Every waiter may have gone: take the outcome, so a failure is not reported as lost."""
    if not task.cancelled():
        task.exception()


class Digests:
    def __init__(self, state: FullStateStore, data: ReadableDataStore) -> None:
        self.state = state
        self.data = data
        self._running: dict[str, asyncio.Task[dict[str, bytes]]] = {}

    async def compute(self, upload: Upload, algorithms: set[str]) -> dict[str, bytes]:
        """Digests of the stored bytes, read back in chunks and hashed on a worker thread."""
        hashers = {name: DIGEST_ALGORITHMS[name]() for name in algorithms}
        loop = asyncio.get_running_loop()
        async for chunk in self.data.read(upload.id, 0, upload.offset):
            await loop.run_in_executor(None, _feed, list(hashers.values()), chunk)
        return {name: hasher.digest() for name, hasher in hashers.items()}

    async def keep(self, upload: Upload, digests: dict[str, bytes]) -> Upload:
        """Record digests computed at completion with the (now complete) upload."""
        if not digests:
            return upload
        value = format_digests({**_known(upload), **digests})
        await self.state.record_digests(upload.id, value)
        return upload.replace(digests=value)

    async def of(self, upload: Upload, algorithm: str) -> bytes:
        """The digest of a complete upload: from its record, else computed once and recorded."""
        known = _known(upload)
        if algorithm in known:
            return known[algorithm]
        task = self._running.get(upload.id)
        if task is None:  # the record read before may predate a computation that just ended
            recorded = await self.state.get(upload.id)
            if recorded is not None and algorithm in (known := _known(recorded)):
                return known[algorithm]
            task = self._running.get(upload.id)
        if task is None:
            task = asyncio.create_task(self._compute_and_keep(upload))
            self._running[upload.id] = task
            task.add_done_callback(lambda _: self._running.pop(upload.id, None))
            task.add_done_callback(_retrieve)
        return (await asyncio.shield(task))[algorithm]

    async def _compute_and_keep(self, upload: Upload) -> dict[str, bytes]:
        computed = await self.compute(upload, set(DIGEST_ALGORITHMS))  # all of them: one read, once
        await self.state.record_digests(upload.id, format_digests(computed))
        return computed
