"""BodyReader's cancellations land only on its own receive(), never on the consumer's awaits."""

from __future__ import annotations

import asyncio

import pytest

from tusd_py import protocol as p
from tusd_py.body import BodyReader

pytestmark = pytest.mark.anyio



def stalling_receive(chunks: list[bytes]):
    """Hands out `chunks`, then waits forever, like a client that went silent."""

    async def receive() -> dict:
        if chunks:
            return {"type": "http.request", "body": chunks.pop(0), "more_body": True}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return receive


async def test_tick_on_stall_then_interrupt_while_consumer_is_busy() -> None:
    reader = BodyReader(stalling_receive([b"abcd"]), idle_timeout=0, release_grace=1.0, tick_after=0.05)
    seen: list[bytes] = []
    async for chunk in reader:
        seen.append(chunk)
        if chunk == b"":
            # The consumer commits (an await) when the interrupt arrives: it must not be cancelled.
            reader.interrupt(p.ERR_UPLOAD_INTERRUPTED())
            await asyncio.sleep(0.05)
    assert seen == [b"abcd", b""]
    assert reader.error is not None and reader.error.code == "ERR_UPLOAD_INTERRUPTED"
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_interrupt_while_waiting_for_data_ends_iteration() -> None:
    reader = BodyReader(stalling_receive([b"ab"]), idle_timeout=0, release_grace=1.0, tick_after=10)
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, reader.interrupt, p.ERR_SERVER_SHUTDOWN())
    assert [chunk async for chunk in reader] == [b"ab"]
    assert reader.error is not None and reader.error.status == 503
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_tick_and_interrupt_at_once_cancel_only_once() -> None:
    reader = BodyReader(stalling_receive([]), idle_timeout=0, release_grace=1.0, tick_after=0.05)
    loop = asyncio.get_running_loop()
    # Both fire in one loop iteration, before the reader's task runs again.
    loop.call_later(0.05, reader.interrupt, p.ERR_UPLOAD_INTERRUPTED())
    chunks = [chunk async for chunk in reader]
    await asyncio.sleep(0.01)  # a stray second cancel would land here
    assert chunks in ([], [b""])
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_idle_timeout_interrupts_with_408() -> None:
    reader = BodyReader(stalling_receive([b"x"]), idle_timeout=0.1, release_grace=1.0, tick_after=10)
    assert [chunk async for chunk in reader] == [b"x"]
    assert reader.error is not None and reader.error.status == 408


async def test_live_holder_gets_a_grace_stalled_one_is_cut_at_once() -> None:
    reader = BodyReader(stalling_receive([b"x"]), idle_timeout=0, release_grace=0.2, tick_after=10)
    loop = asyncio.get_running_loop()
    started = loop.time()
    loop.call_later(0.01, reader.request_release)  # 10 ms after the last byte: still live
    assert [chunk async for chunk in reader] == [b"x"]
    assert loop.time() - started >= 0.2
    stalled = BodyReader(stalling_receive([b"x"]), idle_timeout=0, release_grace=5, tick_after=10)
    loop.call_later(0.6, stalled.request_release)  # past STALLED_AFTER: cut at once
    started = loop.time()
    assert [chunk async for chunk in stalled] == [b"x"]
    assert loop.time() - started < 2
