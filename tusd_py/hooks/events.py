"""What a hook is told: the event names, and an event as transports receive it.

An event (`HookEvent`) carries the upload as hooks see it (`HookUpload`: metadata
decoded, the data named by the store) and the request that caused it
(`HookRequest`). `to_dict`/`to_json` are the one wire form every transport sends
(a Python hook gets the object itself). `Hooks` (base.py) builds and queues them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from starlette.requests import Request

from tusd_py import protocol as p

PRE_CREATE = "pre-create"
POST_CREATE = "post-create"
POST_RECEIVE = "post-receive"
PRE_FINISH = "pre-finish"
POST_FINISH = "post-finish"
PRE_TERMINATE = "pre-terminate"
POST_TERMINATE = "post-terminate"
AUTHORIZE = "authorize"

EVENTS = (AUTHORIZE, PRE_CREATE, POST_CREATE, POST_RECEIVE, PRE_FINISH, POST_FINISH, PRE_TERMINATE, POST_TERMINATE)
BLOCKING = frozenset({AUTHORIZE, PRE_CREATE, PRE_FINISH, PRE_TERMINATE})


@dataclass
class HookRequest:
    """The request that caused an event (`None` for events no request caused)."""

    method: str
    uri: str
    remote_addr: str
    headers: dict[str, str]  # every request header, names in lower case

    @classmethod
    def from_request(cls, request: Request, method: str) -> HookRequest:
        client = request.client
        uri = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return cls(
            method=method,
            uri=uri,
            remote_addr=f"{client.host}:{client.port}" if client else "",
            headers={name: request.headers[name] for name in request.headers.keys()},
        )


@dataclass
class HookUpload:
    """An upload as hooks see it: metadata decoded, the data file named."""

    id: str
    size: int | None  # None while the length is deferred
    offset: int
    metadata: dict[str, str]  # values decoded from base64 as UTF-8 (undecodable bytes replaced)
    is_partial: bool
    is_final: bool
    partial_uploads: list[str]
    state: str  # created, uploading, finished, terminated, expired
    created: float
    expires: float | None
    storage: dict[str, str]  # {"type": "files", "path": "/abs/path/of/the/data"}

    @property
    def size_is_deferred(self) -> bool:
        return self.size is None


@dataclass
class HookEvent:
    type: str
    # None for `authorize` when no record exists: a creation (POST, `upload_id` None), or an
    # id nobody created, or that was terminated (`upload_id` names it).
    upload: HookUpload | None
    request: HookRequest | None
    upload_id: str | None = None  # the upload the event is about; None only for a creation

    def to_dict(self) -> dict[str, Any]:
        upload = None
        if self.upload is not None:
            upload = asdict(self.upload)
            upload["size_is_deferred"] = self.upload.size_is_deferred
        request = asdict(self.request) if self.request else None
        return {"type": self.type, "upload_id": self.upload_id, "upload": upload, "request": request}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


def decode_metadata(header: str | None) -> dict[str, str]:
    try:
        parsed = p.parse_metadata(header)
    except p.TusError:
        return {}
    return {key: value.decode("utf-8", "replace") for key, value in parsed.items()}
