"""conditional.py and protocol.parse_http_date: the RFC 9110 section 13 rules that the
e2e tests (tests/e2e/test_conditional_get.py) cannot send, e.g. a field on two lines."""

from __future__ import annotations

import pytest

from tusd_py import conditional, protocol as p

ETAG = '"abc"'
MODIFIED = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT
DATE = "Sun, 06 Nov 1994 08:49:37 GMT"


class Fields:
    def __init__(self, *items: tuple[str, str]) -> None:
        self.items = items

    def getlist(self, key: str) -> list[str]:
        return [value for name, value in self.items if name == key]


def not_modified(*items: tuple[str, str], etag: str | None = ETAG, modified: int | None = MODIFIED) -> bool:
    return conditional.not_modified(Fields(*items), etag, modified)


def range_applies(value: str, etag: str | None = ETAG, modified: int | None = MODIFIED) -> bool:
    return conditional.range_applies(Fields(("if-range", value)), etag, modified)


def test_http_dates_in_all_three_forms() -> None:
    for value in (DATE, "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"):
        assert p.parse_http_date(value) == MODIFIED, value
    assert p.format_http_date(MODIFIED) == DATE
    for bad in ("", "yesterday", "0", "-1", "Sun, 31 Feb 1994 08:49:37 GMT", "Sun, 06 Nov 1994 25:49:37 GMT"):
        assert p.parse_http_date(bad) is None, bad


def test_if_none_match_compares_weakly_and_parses_the_list() -> None:
    assert not_modified(("if-none-match", ETAG))
    assert not_modified(("if-none-match", 'W/"abc"'))
    assert not_modified(("if-none-match", '"x,y" , "abc"'))  # a comma inside a tag is not a separator
    assert not_modified(("if-none-match", '"x"'), ("if-none-match", ETAG))  # two lines: one list
    assert not_modified(("if-none-match", "*"))
    assert not not_modified(("if-none-match", '"abcd"'))
    assert not not_modified(("if-none-match", 'abc, "abc"'))  # parsing stops at what is no tag
    assert not not_modified(("if-none-match", ETAG), etag=None)  # no validator: nothing matches but *


def test_if_modified_since_is_ignored_when_it_cannot_be_compared() -> None:
    assert not_modified(("if-modified-since", DATE))
    assert not not_modified(("if-modified-since", "Sun, 06 Nov 1994 08:49:36 GMT"))
    assert not not_modified(("if-modified-since", DATE), ("if-modified-since", DATE))  # more than one member
    assert not not_modified(("if-modified-since", DATE), modified=None)
    assert not not_modified(("if-none-match", '"other"'), ("if-modified-since", DATE))  # If-None-Match decides


def test_if_match_and_if_unmodified_since_raise_the_412_row() -> None:
    assert not not_modified(("if-match", ETAG))
    assert not not_modified(("if-match", "*"), etag=None)
    for items in (
        [("if-match", 'W/"abc"')],  # strong comparison
        [("if-match", '"x", "abcd"')],
        [("if-unmodified-since", "Sun, 06 Nov 1994 08:49:36 GMT")],
    ):
        with pytest.raises(p.TusError) as raised:
            not_modified(*items)
        assert raised.value.status == 412 and raised.value.code == "ERR_PRECONDITION_FAILED"
    with pytest.raises(p.TusError):
        not_modified(("if-match", ETAG), etag=None)
    assert not not_modified(("if-match", ETAG), ("if-unmodified-since", "Sun, 06 Nov 1994 08:49:36 GMT"))  # If-Match decides
    assert not not_modified(("if-unmodified-since", DATE), ("if-unmodified-since", "x"))  # two lines: ignored


def test_if_range_matches_only_a_current_strong_validator() -> None:
    assert conditional.range_applies(Fields(), ETAG, MODIFIED)  # no If-Range
    assert range_applies(ETAG) and range_applies(f" {ETAG} ")
    assert range_applies(DATE) and range_applies("Sunday, 06-Nov-94 08:49:37 GMT")
    for stale in ('W/"abc"', '"abd"', '"abc', "Sun, 06 Nov 1994 08:49:38 GMT", "garbage", ""):
        assert not range_applies(stale), stale
    assert not range_applies(ETAG, etag=None) and not range_applies(DATE, modified=None)
    assert not range_applies(ETAG, etag='W/"abc"')  # a weak current tag never matches strongly
    assert not conditional.range_applies(Fields(("if-range", ETAG), ("if-range", ETAG)), ETAG, MODIFIED)
