"""The request body hand-over of GuardedHttpToolsProtocol (compat.BodyChunks: no copies of single chunks)."""

from __future__ import annotations

from tusd_py.compat import BodyChunks as _BodyChunks


def test_one_chunk_is_handed_over_as_it_came() -> None:
    chunks = _BodyChunks()
    chunk = bytes(range(256)) * 1024
    chunks.append(chunk)
    assert len(chunks) == len(chunk)
    assert bytes(chunks) is chunk


def test_several_chunks_are_joined_in_order() -> None:
    chunks = _BodyChunks()
    for part in (b"ab", b"", b"cde", b"f"):
        chunks.append(part)
    assert len(chunks) == 6
    assert bytes(chunks) == b"abcdef"
