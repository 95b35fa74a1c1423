"""IndexedHeaders answers every lookup as Starlette's Headers does."""

from __future__ import annotations

from starlette.datastructures import Headers

from tusd_py.headers import IndexedHeaders


def test_lookups_match_starlette_headers() -> None:
    raw = [(b"host", b"x"), (b"upload-offset", b"5"), (b"x-dup", b"first"), (b"x-dup", b"second"), (b"x-latin", "é".encode("latin-1"))]
    scope = {"type": "http", "headers": raw}
    indexed, plain = IndexedHeaders(scope), Headers(scope=scope)
    for key in ("host", "Upload-Offset", "X-DUP", "x-latin", "absent"):
        assert indexed.get(key) == plain.get(key)
        assert indexed.get(key, "d") == plain.get(key, "d")
        assert (key in indexed) == (key in plain)
        try:
            expected = plain[key]
        except KeyError:
            expected = None
        assert (indexed[key] if key in indexed else None) == expected
    assert indexed.getlist("x-dup") == ["first", "second"]
    assert indexed.raw == raw and len(indexed) == len(plain)
