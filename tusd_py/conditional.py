"""Conditional GETs (RFC 9110 section 13): an upload's validators against the request's preconditions.

Browsers and CDNs revalidate a download they hold (If-None-Match, If-Modified-Since:
a 304 instead of the bytes again) and resume one they lost half-way (Range with
If-Range: the rest only if the file is still the one they began). Pure: header
values and the validators in, a verdict out; `download.py` makes the response.

The order is RFC 9110 13.2.2, as Go's net/http (tusd's file store) and nginx
keep it: If-Match (else If-Unmodified-Since) fails with a 412, then If-None-Match
(else If-Modified-Since) answers 304, and only then does If-Range decide whether
a Range is served (so a stale If-Range with a range past the end is a 200, not a
416). Where Starlette's StaticFiles and FileResponse compare strings, tags are
parsed by the entity-tag grammar (a comma may be inside one), If-None-Match
compares weakly and If-Match and If-Range strongly, dates are read in all three
HTTP-date forms, and a date field sent twice is ignored (13.1.3, 13.1.4).

An unfinished upload has no validators (its bytes still grow): If-Match with
tags fails and `*` holds (the upload exists), the dates are ignored, and If-Range
never matches, so a client resuming a download of it gets the bytes whole.
A finished upload's bytes never change, so its Last-Modified is a strong
validator for If-Range (8.8.2.2): a date equal to it matches.
"""

from __future__ import annotations

import re
from typing import Protocol

from tusd_py import protocol as p

# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; etagc = %x21 / %x23-7E / obs-text (RFC 9110 8.8.3)
_ETAG_RE = re.compile(r'(W/)?"([\x21\x23-\x7e\x80-\xff]*)"')


class Fields(Protocol):
    """A request's header fields (Starlette's `Headers`): every line of a field."""

    def getlist(self, key: str) -> list[str]: ...


def not_modified(fields: Fields, etag: str | None, modified: int | None) -> bool:
    """RFC 9110 13.2.2 steps 1-4 for a GET: True when the answer is a 304.

    `modified` is the Last-Modified sent, in whole seconds. Raises the 412 row when
    If-Match, or else If-Unmodified-Since, does not hold.
    """
    if_match = _list(fields, "if-match")
    if if_match is not None:
        if not _names(if_match, etag, weak=False):
            raise p.ERR_PRECONDITION_FAILED()
    else:
        since = _date(fields, "if-unmodified-since")
        if since is not None and modified is not None and modified > since:
            raise p.ERR_PRECONDITION_FAILED()
    if_none_match = _list(fields, "if-none-match")
    if if_none_match is not None:
        return _names(if_none_match, etag, weak=True)
    since = _date(fields, "if-modified-since")
    return since is not None and modified is not None and modified <= since


def range_applies(fields: Fields, etag: str | None, modified: int | None) -> bool:
    """RFC 9110 13.1.5: whether a Range is served; with If-Range, only while its validator is current."""
    values = fields.getlist("if-range")
    if not values:
        return True
    if len(values) > 1:
        return False  # not one validator: the whole content is the safe answer
    value = values[0].strip()
    if value.startswith(('"', "W/")):
        tag = _ETAG_RE.fullmatch(value)
        if tag is None or tag.group(1) is not None or etag is None:
            return False  # a weak tag never matches here
        return _parse_etag(etag) == (False, tag.group(2))
    date = p.parse_http_date(value)
    return date is not None and date == modified


def _list(fields: Fields, name: str) -> str | None:
    values = fields.getlist(name)
    return ", ".join(values) if values else None  # several lines are one list (RFC 9110 5.3)


def _date(fields: Fields, name: str) -> int | None:
    values = fields.getlist(name)
    return p.parse_http_date(values[0]) if len(values) == 1 else None  # more than one member: ignored


def _parse_etag(etag: str) -> tuple[bool, str]:
    """(weak?, opaque-tag) of the ETag a store gave (quoted, as sent)."""
    match = _ETAG_RE.fullmatch(etag)
    return (match.group(1) is not None, match.group(2)) if match else (True, etag)


def _tags(value: str) -> list[tuple[bool, str]]:
    """The entity-tags of a list field as (weak?, opaque-tag), up to the first member that is none."""
    tags: list[tuple[bool, str]] = []
    position = 0
    while True:
        while position < len(value) and value[position] in " \t,":
            position += 1
        match = _ETAG_RE.match(value, position)
        if match is None:
            return tags
        tags.append((match.group(1) is not None, match.group(2)))
        position = match.end()


def _names(field: str, etag: str | None, *, weak: bool) -> bool:
    """Whether If-Match / If-None-Match names the current representation (8.8.3.2's comparisons)."""
    if field.strip() == "*":
        return True  # any current representation: the upload exists
    if etag is None:
        return False
    current_weak, current = _parse_etag(etag)
    return any(opaque == current and (weak or not (tag_weak or current_weak)) for tag_weak, opaque in _tags(field))
