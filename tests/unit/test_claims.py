"""`StateStore.claim`: once per upload and event, in both stores (fakeredis stands in for Redis)."""

from __future__ import annotations

import asyncio

import pytest

from tusd_py.state.base import FINISH_ANNOUNCED, StateStore, Upload

pytestmark = pytest.mark.anyio




async def test_claim_is_true_once(store: StateStore) -> None:
    await store.create(Upload(id="u1", length=3, created=1.0))
    results = await asyncio.gather(*(store.claim("u1", FINISH_ANNOUNCED) for _ in range(10)))
    assert results.count(True) == 1
    assert not await store.claim("u1", FINISH_ANNOUNCED)
    assert await store.claim("u1", "another-event")  # claims are per event
    record = await store.get("u1")
    assert record is not None and record.length == 3  # the record reads as before


async def test_claim_of_a_missing_upload_is_false(store: StateStore) -> None:
    assert not await store.claim("missing", FINISH_ANNOUNCED)
    assert await store.get("missing") is None  # and creates nothing


async def test_a_new_upload_with_the_same_id_claims_afresh(store: StateStore) -> None:
    await store.create(Upload(id="chosen", length=1, created=1.0))
    assert await store.claim("chosen", FINISH_ANNOUNCED)
    assert await store.delete("chosen")
    await store.create(Upload(id="chosen", length=1, created=2.0))  # e.g. a pre-create hook picked it again
    assert await store.claim("chosen", FINISH_ANNOUNCED)
    assert not await store.claim("chosen", FINISH_ANNOUNCED)
