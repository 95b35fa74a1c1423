"""A hooks module whose pre-create chooses the upload's object key from the request's
`X-Object-Key` header, with extra object metadata (`--hooks-module tests.hooks_storage`),
as an application keeping files under meaningful names would (tusd#1393, #1329)."""

from __future__ import annotations

from typing import Any

from tusd_py.hooks import HookEvent


async def pre_create(event: HookEvent) -> Any:
    key = event.request.headers.get("x-object-key") if event.request else None
    if key is None:
        return None
    return {"storage": {"key": key, "metadata": {"owner": "alice"}}}
