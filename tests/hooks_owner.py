"""The ownership hooks of docs/hooks.md, runnable: `--hooks-module tests.hooks_owner`.

What a company running tusd-py on the internet would deploy, and what issue 13's
review attacked:
- `Authorization: Bearer <user>` names the caller; only USERS may do anything (else 401);
- `pre_create` stamps `owner` (the caller) on every upload, partial or final, and refuses
  uploads (a final one by its summed length) above QUOTA bytes with 413;
- `authorize` lets only the owner in, and answers an id that names no upload with the same
  403 as a foreign one (no existence oracle); listing a part in a final upload is authorized
  like reading it, with that part's record;
- `pre_finish` is a content gate: it refuses any upload whose bytes contain BANNED;
- `pre_terminate` refuses uploads with a `keep` metadata key.
Every event is appended as one JSON line to the file named by HOOKS_TEST_LOG.
"""

from __future__ import annotations

from tests.hooks_recorder import _record
from tusd_py.hooks import HookEvent, HookResponse, Reject

USERS = {"alice", "bob"}
QUOTA = 4096
BANNED = b"EVIL"


def _user(event: HookEvent) -> str:
    token = (event.request.headers.get("authorization", "") if event.request else "").removeprefix("Bearer ")
    if token not in USERS:
        raise Reject(401, "log in first", {"WWW-Authenticate": "Bearer"})
    return token


def authorize(event: HookEvent) -> None:
    _record(event)
    user = _user(event)
    if event.upload_id is None:  # a creation: any known user may create
        return
    if event.upload is None or event.upload.metadata.get("owner") != user:
        raise Reject(403, "not your upload")  # the same answer whether the upload exists or not


def pre_create(event: HookEvent) -> HookResponse:
    _record(event)
    assert event.upload is not None
    if event.upload.size is not None and event.upload.size > QUOTA:
        raise Reject(413, f"{QUOTA} bytes at most")
    return HookResponse(metadata={**event.upload.metadata, "owner": _user(event)})


def pre_finish(event: HookEvent) -> None:
    _record(event)
    assert event.upload is not None
    with open(event.upload.storage["path"], "rb") as data:
        if BANNED in data.read(event.upload.offset):
            raise Reject(422, "this content is not welcome")


def pre_terminate(event: HookEvent) -> None:
    _record(event)
    if event.upload is not None and "keep" in event.upload.metadata:
        raise Reject(message="kept")


post_create = post_finish = post_terminate = _record
