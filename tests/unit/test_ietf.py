"""The draft's field codec (tusd_py/ietf.py): what is parsed, what is ignored, what is a 400."""

from __future__ import annotations

import base64
import hashlib

import pytest
from http_sf import parse
from starlette.datastructures import Headers

from tusd_py import ietf, protocol as p
from tusd_py.config import Config
from tusd_py.state.base import Upload


def h(**fields: str) -> Headers:
    return Headers({name.replace("_", "-").lower(): value for name, value in fields.items()})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(("value", "version"), [("8", 8), ("6", 6), (" 8 ", 8), ("7", None), ("5", None), ("08x", None), ("", None)])
def test_interop_version(value: str, version: int | None) -> None:
    assert ietf.interop_version(h(Upload_Draft_Interop_Version=value)) == version
    assert ietf.interop_version(h()) is None


def test_interop_version_9_is_served_and_10_is_not() -> None:
    assert ietf.interop_version(h(Upload_Draft_Interop_Version="9")) == 9
    assert ietf.interop_version(h(Upload_Draft_Interop_Version="10")) is None


@pytest.mark.parametrize(("value", "parsed"), [("?1", True), ("?0", False), ("?1;a=1", True), ("1", None), ("?2", None), ("true", None), ("?1, ?0", None)])
def test_upload_complete_is_an_sf_boolean_and_invalid_values_are_ignored(value: str, parsed: bool | None) -> None:
    assert ietf.boolean(h(Upload_Complete=value), "upload-complete") is parsed


@pytest.mark.parametrize(("value", "parsed"), [("0", 0), ("42", 42), ("-1", None), ("+5", None), ("5.0", None), ("?1", None), ("1" * 16, None), ("abc", None)])
def test_offset_and_length_are_non_negative_sf_integers(value: str, parsed: int | None) -> None:
    assert ietf.integer(h(Upload_Offset=value), "upload-offset") == parsed


def test_request_fields_and_the_implied_length() -> None:
    fields = ietf.request_fields(h(Upload_Complete="?1", Content_Length="5", Upload_Length="x"))
    assert fields.complete is True and fields.length is None and fields.implied_length(10) == 15
    assert ietf.request_fields(h(Upload_Complete="?0", Content_Length="5")).implied_length(0) is None
    with pytest.raises(p.TusError) as caught:
        ietf.request_fields(h(Content_Length="-1"))
    assert caught.value.status == 400


def test_content_digest_picks_the_strongest_known_algorithm_and_ignores_unknown_ones() -> None:
    sha256, sha512 = hashlib.sha256(b"x").digest(), hashlib.sha512(b"x").digest()
    headers = h(Content_Digest=f"md5=:{b64(b'1234')}:, sha-256=:{b64(sha256)}:, sha-512=:{b64(sha512)}:")
    assert ietf.content_digest(headers) == ("sha-512", sha512)
    assert ietf.content_digest(h(Content_Digest=f"md5=:{b64(b'1234')}:")) is None
    assert ietf.content_digest(h()) is None
    for bad in ("sha-256=abc", "sha-256", "not a dictionary ::", "sha-256=:%%%:"):
        with pytest.raises(p.TusError) as caught:
            ietf.content_digest(h(Content_Digest=bad))
        assert caught.value.code == p.ERR_INVALID_DIGEST.code


def test_repr_digest_round_trips_through_the_record() -> None:
    digest = hashlib.sha256(b"abc").digest()
    stored = ietf.repr_digest(h(Repr_Digest=f"sha-256=:{b64(digest)}:, foo=:AAAA:"))
    assert stored is not None and "foo" not in stored
    assert ietf.parse_repr_digest(stored) == {"sha-256": digest}


@pytest.mark.parametrize(
    ("value", "choice"),
    [("sha-256=1", "sha-256"), ("sha-512=3, sha-256=10", "sha-256"), ("sha-512=10, sha-256=1", "sha-512"), ("md5=10", "sha-256"), ("sha-256=0", None)],
)
def test_want_repr_digest(value: str, choice: str | None) -> None:
    assert ietf.want_repr_digest(h(Want_Repr_Digest=value)) == choice


@pytest.mark.parametrize("bad", ["sha-256=11", "sha-256=?1", "sha-256=:AA==:", "(("])
def test_want_repr_digest_invalid(bad: str) -> None:
    with pytest.raises(p.TusError):
        ietf.want_repr_digest(h(Want_Repr_Digest=bad))


def test_upload_limit_is_a_non_empty_sf_dictionary() -> None:
    assert ietf.upload_limit(Config(expire_after=0), 8) == "min-size=0"
    limits = parse(ietf.upload_limit(Config(max_size=100, expire_after=60), 8).encode(), tltype="dictionary")
    assert limits == {"max-size": (100, {}), "max-age": (60, {})}
    assert "expires=60" in ietf.upload_limit(Config(expire_after=60), 6)  # draft -05 named it expires
    finished = Upload(id="u", length=3, offset=3, expires=None)
    assert ietf.upload_limit(Config(expire_after=60), 8, finished) == "min-size=0"


def test_state_headers_are_structured_fields() -> None:
    upload = Upload(id="u", length=None, offset=3, expected_length=9)
    headers = ietf.state_headers(upload, 8)
    assert headers == {"Upload-Draft-Interop-Version": "8", "Upload-Offset": "3", "Upload-Complete": "?0", "Upload-Length": "9"}
    assert "Upload-Length" not in ietf.state_headers(Upload(id="u", length=None), 8)
    assert ietf.state_headers(Upload(id="u", length=3, offset=3), 6)["Upload-Complete"] == "?1"


def test_metadata_from_the_representation_fields() -> None:
    metadata = ietf.metadata(h(Content_Type="image/png", Content_Disposition="inline; filename=\"a b.png\"; filename*=UTF-8''%C3%A4%20b.png"))
    assert metadata is not None
    assert p.parse_metadata(metadata) == {"filetype": b"image/png", "filename": "ä b.png".encode()}
    assert ietf.metadata(h(Content_Type="application/partial-upload")) is None  # labels the transfer, not the file
    assert ietf.metadata(h(Upload_Metadata="filename YQ==", Content_Type="text/plain")) == "filename YQ=="
    assert ietf.metadata(h()) is None


@pytest.mark.parametrize(
    ("disposition", "name"),
    [
        ("inline; filename*=UTF-8''%C3%A4.txt; filename=\"a.txt\"", "ä.txt"),
        ("attachment; filename=\"x;y.txt\"", "x;y.txt"),
        ("inline; filename=plain.txt", "plain.txt"),
        ("inline; filename*=bogus''%41.txt; filename=b.txt", "b.txt"),
        ("inline", None),
    ],
)
def test_content_disposition_file_names(disposition: str, name: str | None) -> None:
    assert ietf._filename(disposition) == name
