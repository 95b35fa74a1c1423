"""Request headers looked up through a dict.

Starlette's `Headers` scans the whole header list on every lookup, and a tus
request asks for a dozen headers, most of them absent (a miss scans the list and
raises KeyError inside `get`). Small uploads paid ~40 us per upload for that.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import Scope

from tusd_py.compat import replace_headers


class IndexedHeaders(Headers):
    """The same read-only view of the request's headers; lookups go through a dict
    built once. The first of repeated headers wins, as in `Headers`."""

    def __init__(self, scope: Scope) -> None:
        super().__init__(scope=scope)
        index: dict[bytes, bytes] = {}
        for name, value in self.raw:
            index.setdefault(name, value)  # ASGI header names are lower-case already
        self._index = index

    def get(self, key: str, default: Any = None) -> Any:
        value = self._index.get(key.lower().encode("latin-1"))
        return default if value is None else value.decode("latin-1")

    def __getitem__(self, key: str) -> str:
        value = self._index.get(key.lower().encode("latin-1"))
        if value is None:
            raise KeyError(key)
        return value.decode("latin-1")

    def __contains__(self, key: Any) -> bool:
        return key.lower().encode("latin-1") in self._index


def index_headers(request: Request) -> None:
    """Make `request.headers` an `IndexedHeaders`."""
    replace_headers(request, IndexedHeaders(request.scope))
