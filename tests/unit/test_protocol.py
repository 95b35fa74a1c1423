from __future__ import annotations

import base64

import pytest

from tusd_py import protocol as p


@pytest.mark.parametrize("value,expected", [("0", 0), ("42", 42), ("007", 7), (None, None)])
def test_parse_uint_accepts_plain_digits(value: str | None, expected: int | None) -> None:
    assert p.parse_uint(value, p.ERR_INVALID_OFFSET) == expected


@pytest.mark.parametrize("value", ["+5", "-5", "5_0", " 5", "5 ", "\u0665", "1e3", "", "0x1", "12345678901234567890"])
def test_parse_uint_rejects_what_int_would_take(value: str) -> None:
    with pytest.raises(p.TusError) as caught:
        p.parse_uint(value, p.ERR_INVALID_OFFSET)
    assert caught.value.status == 400
    assert caught.value.code == "ERR_INVALID_OFFSET"


def test_metadata_roundtrip_and_empty_values() -> None:
    header = "filename aGVsbG8udHh0,is_confidential,empty "
    parsed = p.parse_metadata(header)
    assert parsed == {"filename": b"hello.txt", "is_confidential": b"", "empty": b""}
    assert p.parse_metadata(p.encode_metadata(parsed)) == parsed
    assert p.parse_metadata(None) == {}


@pytest.mark.parametrize(
    "header",
    ["a b c", "a b,a c", "k,k", "ke y", "k !!!!", "k YQ", "k YQ=", "k Y===", "\u00e9 YQ==", "k\tv", "a,,b", "k YQ==YQ=="],
)
def test_metadata_rejects_malformed(header: str) -> None:
    with pytest.raises(p.TusError) as caught:
        p.parse_metadata(header)
    assert caught.value.status == 400


def test_error_rows_make_fresh_exceptions() -> None:
    first = p.ERR_MISMATCHED_OFFSET(Upload_Offset="5")
    second = p.ERR_MISMATCHED_OFFSET()
    assert first is not second
    assert first.headers == (("Upload-Offset", "5"),)
    assert second.headers == ()
    assert str(p.ERR_NOT_FOUND()) == "ERR_UPLOAD_NOT_FOUND: upload not found"
    assert p.ERR_INVALID_METADATA("why").message == "why"
    assert first.with_headers(Connection="close").headers == (("Upload-Offset", "5"), ("Connection", "close"))


def test_checksum_header() -> None:
    digest = b"\x01" * 20
    assert p.parse_checksum(f"sha1 {base64.b64encode(digest).decode()}") == ("sha1", digest)
    assert p.parse_checksum(None) is None
    for bad in ["sha1", "sha1 a b", "sha1 ****", " AAAA", "sha1 AAA"]:
        with pytest.raises(p.TusError):
            p.parse_checksum(bad)


def test_concat_header() -> None:
    assert p.parse_concat("partial") == p.Concat("partial", partial=True)
    final = p.parse_concat("final;/files/a http://h/files/b")
    assert final is not None and final.final and final.urls == ("/files/a", "http://h/files/b")
    for bad in ["final;", "final; ", "other", "partial;x"]:
        with pytest.raises(p.TusError):
            p.parse_concat(bad)


def test_ids() -> None:
    upload_id = p.new_upload_id()
    assert len(upload_id) == 32 and p.is_valid_id(upload_id)
    assert len({p.new_upload_id() for _ in range(1000)}) == 1000
    for bad in ["", "..", "a/b", "a.b", "a\x00", "x" * 129, "a%2f"]:
        assert not p.is_valid_id(bad)


def test_http_date_is_imf_fixdate() -> None:
    assert p.format_http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"


def test_every_error_row_is_used() -> None:
    """A row of the error table that nothing raises is a promise the server never keeps."""
    import re
    from pathlib import Path

    import tusd_py

    package = Path(tusd_py.__file__).parent
    source = "\n".join(path.read_text() for path in package.rglob("*.py"))
    rows = re.findall(r"^(ERR_[A-Z_]+) = Error\(", (package / "protocol.py").read_text(), re.M)
    assert rows
    unused = [row for row in rows if len(re.findall(rf"\b{row}\b", source)) < 2]  # the definition, and a use
    assert not unused
