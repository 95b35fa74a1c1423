"""A hooks module for the tests (`--hooks-module tests.hooks_recorder`).

Every event it receives is appended as one JSON line to the file named by
HOOKS_TEST_LOG. Its answers are driven by the upload's metadata:
- `owner`: `authorize` lets only `Authorization: Bearer <owner>` in;
- `reject`: pre-create rejects with status 422 and the value as message;
- `id`: pre-create picks that upload id; `tag`: pre-create adds `tagged: <tag>`;
- `refuse-finish`: pre-finish rejects; `keep`: pre-terminate refuses;
- `slow`: pre-create sleeps that many seconds.
A creation with `Authorization: Bearer nobody` is refused with 401.
Plain functions and coroutines are mixed on purpose: both kinds must work.
"""

from __future__ import annotations

import asyncio
import json
import os

from tusd_py.hooks import HookEvent, HookResponse, Reject


def _record(event: HookEvent) -> None:
    path = os.environ.get("HOOKS_TEST_LOG")
    if not path:
        return
    line = (json.dumps(event.to_dict()) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write with O_APPEND: lines from several processes never interleave
    finally:
        os.close(fd)


def _metadata(event: HookEvent) -> dict[str, str]:
    return event.upload.metadata if event.upload is not None else {}


def authorize(event: HookEvent) -> None:
    _record(event)
    token = (event.request.headers.get("authorization", "") if event.request else "").removeprefix("Bearer ")
    if event.upload is None:
        if token == "nobody":
            raise Reject(401, "who are you?", headers={"WWW-Authenticate": "Bearer"})
        return
    owner = _metadata(event).get("owner")
    if owner is not None and token != owner:
        raise Reject(403, f"upload belongs to {owner}")


async def pre_create(event: HookEvent) -> HookResponse | dict | None:
    _record(event)
    metadata = _metadata(event)
    if "slow" in metadata:
        await asyncio.sleep(float(metadata["slow"]))
    if "reject" in metadata:
        return HookResponse(reject=True, status=422, message=metadata["reject"])
    answer: dict = {}
    if "id" in metadata:
        answer["id"] = metadata["id"]
    if "tag" in metadata:
        answer["metadata"] = dict(metadata, tagged=metadata["tag"])
    return answer or None


def post_create(event: HookEvent) -> None:
    _record(event)


async def post_receive(event: HookEvent) -> None:
    _record(event)


def pre_finish(event: HookEvent) -> None:
    _record(event)
    if "refuse-finish" in _metadata(event):
        raise Reject(message="no finishing today")


def post_finish(event: HookEvent) -> None:
    _record(event)


def pre_terminate(event: HookEvent) -> None:
    _record(event)
    if "keep" in _metadata(event):
        raise Reject(message="this one stays")


def post_terminate(event: HookEvent) -> None:
    _record(event)
