from __future__ import annotations

import pytest

from tusd_py import protocol as p
from tusd_py.download import content_disposition, content_type, parse_range, safe_filename


def test_ranges() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=0-0", 10) == (0, 1)
    assert parse_range("bytes=2-", 10) == (2, 10)
    assert parse_range("bytes=-3", 10) == (7, 10)
    assert parse_range("bytes=-30", 10) == (0, 10)
    assert parse_range("bytes=5-100", 10) == (5, 10)
    assert parse_range("bytes=0-1,3-4", 10) is None  # several ranges: the whole thing
    assert parse_range("items=0-1", 10) is None
    for bad in ["bytes=10-", "bytes=5-4", "bytes=-0"]:
        with pytest.raises(p.TusError) as caught:
            parse_range(bad, 10)
        assert caught.value.status == 416


def test_content_type_safe_list() -> None:
    assert content_type({"filetype": b"image/png"}) == ("image/png", True)
    assert content_type({"filetype": b"text/plain; charset=utf-8"}) == ("text/plain", True)
    assert content_type({"filetype": b"text/html"}) == ("application/octet-stream", False)
    assert content_type({"filetype": b"image/svg+xml"}) == ("application/octet-stream", False)
    assert content_type({}) == ("application/octet-stream", False)


def test_filenames_are_sanitized() -> None:
    assert safe_filename(b"../../etc/passwd") == "passwd"
    assert safe_filename(b"C:\\Users\\x\\a.txt") == "a.txt"
    assert safe_filename(b'a"b\r\nSet-Cookie: x') == "abSet-Cookie: x"
    assert safe_filename(b"..") == "download"
    assert content_disposition({"filename": "na\u00efve \u6587.txt".encode()}, False) == (
        "attachment; filename=\"na_ve _.txt\"; filename*=UTF-8''na%C3%AFve%20%E6%96%87.txt"
    )
    assert content_disposition({}, True) == "inline"
