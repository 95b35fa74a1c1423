"""What a hook answers, checked, and what a rejection answers the client with.

Every answer goes through `HookResponse.parse`, whoever made it (a transport's
dict, a Python hook's returned or raised `HookResponse`, `Reject(...)`, a webhook's
reply), so nothing a hook says can make a response the server cannot send. A
transport that cannot deliver an event or gets an unusable answer raises
`HookFailed` (`HookTimeout` when the receiver did not answer in time).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from tusd_py import protocol as p
from tusd_py.hooks.events import AUTHORIZE, PRE_CREATE, PRE_FINISH, PRE_TERMINATE

# What a rejection of each blocking event answers with, unless the hook names its own status.
_REJECTIONS = {
    PRE_CREATE: p.ERR_UPLOAD_REJECTED,
    PRE_FINISH: p.ERR_FINISH_REJECTED,
    PRE_TERMINATE: p.ERR_TERMINATION_REJECTED,
    AUTHORIZE: p.ERR_FORBIDDEN,
}


class HookFailed(Exception):
    """A transport could not deliver an event or got an unusable answer."""


class HookTimeout(HookFailed):
    """A transport's receiver did not answer in time."""


class Reject(Exception):
    """Raised by a Python hook function to reject: `raise Reject(403, "not your upload")`."""

    def __init__(self, status: int | None = None, message: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message or "rejected")
        self.response = HookResponse(reject=True, status=status, message=message, headers=dict(headers or {}))


@dataclass
class HookResponse:
    """What a hook answers. Every field is optional; an empty answer lets the request go on.

    `reject` (any blocking event) refuses, with `status` (400..599), `message` and
    `headers` for the response. `id` and `metadata` (pre-create only) replace the
    upload's id and metadata. `storage` (pre-create only, as tusd's
    `ChangeFileInfo.Storage`): where the data store puts the upload's bytes,
    `{"key": "<object key relative to the store's prefix>", "metadata": {...}}`
    (extra object metadata), both optional; a file store ignores it.
    """

    reject: bool = False
    status: int | None = None
    message: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    id: str | None = None
    metadata: dict[str, str] | None = None
    storage: dict[str, Any] | None = None

    @classmethod
    def parse(cls, value: object) -> HookResponse | None:
        """A transport's answer (None, a HookResponse or a dict of the same fields), checked.

        Every answer goes through here, whoever made it (a dict, a returned or raised
        HookResponse, `Reject(...)`, a webhook's reply), so that nothing a hook says can
        make a response the server cannot send: a status outside 400..599 (a 3xx would
        redirect, a 2xx would let the request through), a header that is not a token
        or whose value is not latin-1 without control characters, a header that frames
        the response. Any of those is HookFailed: the request gets 502, the log says why.
        """
        if value is None:
            return None
        if isinstance(value, HookResponse):
            value = asdict(value)
        if not isinstance(value, Mapping):
            raise HookFailed(f"a hook answered with {type(value).__name__}, not an object")
        unknown = set(value) - {"reject", "status", "message", "headers", "id", "metadata", "storage"}
        if unknown:
            raise HookFailed(f"unknown fields in a hook's answer: {', '.join(sorted(map(str, unknown)))[:200]}")
        if not isinstance(value.get("reject", False), bool):
            raise HookFailed("a hook's reject must be true or false")
        status = value.get("status")
        if status is not None and (not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599):
            raise HookFailed(f"a hook's status must be an integer from 400 to 599, not {status!r:.40}")
        headers = value.get("headers") or {}
        metadata = value.get("metadata")
        if not isinstance(headers, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise HookFailed("a hook's headers must map strings to strings")
        for name, header_value in headers.items():
            _check_header(name, header_value)
        if metadata is not None and (
            not isinstance(metadata, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
        ):
            raise HookFailed("a hook's metadata must map strings to strings")
        for name in ("message", "id"):
            if value.get(name) is not None and not isinstance(value[name], str):
                raise HookFailed(f"a hook's {name} must be a string")
        storage = _check_storage(value.get("storage"))
        return cls(
            reject=bool(value.get("reject", False)),
            status=status,
            message=value.get("message"),
            headers=dict(headers),
            id=value.get("id"),
            metadata=dict(metadata) if metadata is not None else None,
            storage=storage,
        )


@dataclass(frozen=True)
class DataChoice:
    """What the pre-create hook chose for the upload's data (`HookResponse.storage`)."""

    key: str | None = None  # the object key, relative to the data store's prefix
    metadata: dict[str, str] = field(default_factory=dict)  # extra object metadata


def _check_storage(storage: object) -> dict[str, Any] | None:
    """A hook's `storage` answer, or HookFailed (502): only `key` (a relative object key that
    stays inside the prefix, `protocol.object_key_problem`) and `metadata` (strings)."""
    if storage is None:
        return None
    if not isinstance(storage, Mapping):
        raise HookFailed("a hook's storage must be an object")
    unknown = set(storage) - {"key", "metadata"}
    if unknown:
        raise HookFailed(f"unknown fields in a hook's storage: {', '.join(sorted(map(str, unknown)))[:200]}")
    key = storage.get("key")
    if key is not None:
        if not isinstance(key, str):
            raise HookFailed("a hook's storage key must be a string")
        problem = p.object_key_problem(key)
        if problem is not None:
            raise HookFailed(f"a hook's storage key {key[:100]!r}: {problem}")
    metadata = storage.get("metadata")
    if metadata is not None and (
        not isinstance(metadata, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise HookFailed("a hook's storage metadata must map strings to strings")
    return {"key": key, "metadata": dict(metadata or {})}


_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 field names
_VALUE_RE = re.compile(r"[^\x00-\x1f\x7f-\x9f]*")  # latin-1 only is checked apart
# Headers that describe the body or the connection are the server's, never a hook's.
_SERVER_HEADERS = frozenset(
    {"content-length", "content-type", "content-encoding", "transfer-encoding", "connection", "keep-alive", "upgrade", "trailer", "te"}
)


def _check_header(name: str, value: str) -> None:
    if _TOKEN_RE.fullmatch(name) is None:
        raise HookFailed(f"a hook's header name {name!r:.60} is not a token")
    if name.lower() in _SERVER_HEADERS:
        raise HookFailed(f"a hook may not set {name}")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise HookFailed(f"a hook's {name} header is not latin-1") from None
    if _VALUE_RE.fullmatch(value) is None:
        raise HookFailed(f"a hook's {name} header has control characters")


def rejection(event_type: str, response: HookResponse) -> p.TusError:
    """The error a rejected event answers with: the table's row, with the hook's status if it gave one."""
    default = _REJECTIONS[event_type]
    if event_type == AUTHORIZE and response.status == 401:
        default = p.ERR_UNAUTHORIZED
    message = " ".join((response.message or default.message).split())[:200] or default.message
    return p.TusError(response.status or default.status, default.code, message, tuple(response.headers.items()))
