"""The `Hooks` object: blocking events, failures, changes, notifications, progress throttling."""

from __future__ import annotations

import asyncio

import pytest

from tusd_py import protocol as p
from tusd_py.hooks import HookEvent, HookResponse, Hooks, Reject
from tusd_py.hooks.answers import HookFailed, HookTimeout
from tusd_py.state.base import Upload

pytestmark = pytest.mark.anyio



class FakeTransport:
    def __init__(self, name: str = "fake", answer: object = None, events: tuple[str, ...] | None = None) -> None:
        self.name = name
        self.answer = answer
        self.events = events
        self.seen: list[HookEvent] = []

    def handles(self, event_type: str) -> bool:
        return self.events is None or event_type in self.events

    async def deliver(self, event: HookEvent) -> HookResponse | None:
        self.seen.append(event)
        answer = self.answer(event) if callable(self.answer) else self.answer
        if isinstance(answer, BaseException):
            raise answer
        if asyncio.iscoroutine(answer):
            return await answer
        return answer  # type: ignore[return-value]

    async def close(self) -> None:
        pass


def upload(**changes: object) -> Upload:
    return Upload(id="abc", length=10, metadata="filename YS50eHQ=", created=1.0).replace(**changes)


async def test_no_transports_is_a_no_op() -> None:
    hooks = Hooks()
    assert not hooks.enabled and not hooks.wants("authorize")
    assert await hooks.pre_create(upload()) == upload()
    hooks.post_finish(upload())
    await hooks.close()


async def test_rejection_uses_the_table_row_and_the_hooks_status() -> None:
    hooks = Hooks([FakeTransport(answer={"reject": True, "status": 418, "message": "line one\nline two", "headers": {"X-Why": "tea"}})])
    with pytest.raises(p.TusError) as caught:
        await hooks.pre_create(upload())
    assert (caught.value.status, caught.value.code, caught.value.message) == (418, "ERR_UPLOAD_REJECTED", "line one line two")
    assert caught.value.headers == (("X-Why", "tea"),)
    for method, code in ((hooks.pre_finish, "ERR_FINISH_REJECTED"), (hooks.pre_terminate, "ERR_UPLOAD_TERMINATION_REJECTED")):
        with pytest.raises(p.TusError) as caught:
            await method(upload())
        assert caught.value.code == code


async def test_authorize_defaults_to_403_and_names_401() -> None:
    with pytest.raises(p.TusError) as caught:
        await Hooks([FakeTransport(answer=HookResponse(reject=True))]).authorize(upload())
    assert (caught.value.status, caught.value.code) == (403, "ERR_FORBIDDEN")
    with pytest.raises(p.TusError) as caught:
        await Hooks([FakeTransport(answer=Reject(401, "log in"))]).authorize(None)
    assert (caught.value.status, caught.value.code, caught.value.message) == (401, "ERR_UNAUTHORIZED", "log in")


async def test_failures_and_timeouts_are_5xx() -> None:
    with pytest.raises(p.TusError) as caught:
        await Hooks([FakeTransport(answer=RuntimeError("bug in the hook"))]).pre_create(upload())
    assert (caught.value.status, caught.value.code) == (502, "ERR_HOOK_FAILED")
    with pytest.raises(p.TusError) as caught:
        await Hooks([FakeTransport(answer=HookTimeout("slow"))]).pre_create(upload())
    assert (caught.value.status, caught.value.code) == (504, "ERR_HOOK_TIMEOUT")
    with pytest.raises(p.TusError) as caught:
        await Hooks([FakeTransport(answer=lambda e: asyncio.sleep(5))], timeout=0.05).pre_finish(upload())
    assert caught.value.status == 504
    with pytest.raises(p.TusError) as caught:  # an answer that is not an object
        await Hooks([FakeTransport(answer=lambda e: "yes")]).pre_create(upload())  # type: ignore[arg-type]
    assert caught.value.status == 502


@pytest.mark.parametrize(
    "answer",
    [{"status": 200}, {"status": "403"}, {"surprise": 1}, {"metadata": {"k": 1}}, {"headers": ["x"]}, {"id": 5}],
)
def test_malformed_answers_are_refused(answer: dict) -> None:
    with pytest.raises(HookFailed):
        HookResponse.parse(answer)


async def test_pre_create_changes_id_and_metadata_and_checks_them() -> None:
    hooks = Hooks([FakeTransport(answer={"id": "chosen-1", "metadata": {"filename": "b.txt", "empty": ""}})])
    changed = await hooks.pre_create(upload())
    assert changed.id == "chosen-1"
    assert p.parse_metadata(changed.metadata) == {"filename": b"b.txt", "empty": b""}
    for bad in ({"id": "../x"}, {"id": ""}, {"metadata": {"bad key": "v"}}):
        with pytest.raises(p.TusError) as caught:
            await Hooks([FakeTransport(answer=bad)]).pre_create(upload())
        assert caught.value.status == 502


async def test_transports_run_in_order_and_the_first_rejection_wins() -> None:
    first = FakeTransport("first", answer={"metadata": {"a": "1"}})
    second = FakeTransport("second", answer=Reject(409, "no"))
    third = FakeTransport("third")
    with pytest.raises(p.TusError):
        await Hooks([first, second, third]).pre_create(upload())
    assert len(first.seen) == len(second.seen) == 1 and third.seen == []


async def test_notifications_are_delivered_in_order_and_failures_do_not_escape() -> None:
    counted: list[tuple[str, str, bool]] = []

    class Metrics:
        def hook_invoked(self, event: str, transport: str) -> None:
            counted.append((event, transport, False))

        def hook_failed(self, event: str, transport: str) -> None:
            counted.append((event, transport, True))

    good = FakeTransport("good")
    bad = FakeTransport("bad", answer=RuntimeError("down"))
    hooks = Hooks([good, bad], metrics=Metrics())
    hooks.post_create(upload())
    hooks.post_finish(upload(offset=10, state="finished"))
    hooks.post_terminate(upload())
    await hooks.close()
    assert [e.type for e in good.seen] == ["post-create", "post-finish", "post-terminate"]
    assert good.seen[2].upload is not None and good.seen[2].upload.state == "terminated"
    assert good.seen[0].upload is not None and good.seen[0].upload.metadata == {"filename": "a.txt"}
    assert ("post-finish", "bad", True) in counted and ("post-finish", "good", True) not in counted


async def test_progress_is_throttled_per_upload_but_completion_always_goes() -> None:
    transport = FakeTransport(events=("post-receive",))
    hooks = Hooks([transport], progress_interval=60)
    for offset in (1, 2, 3):
        hooks.post_receive(upload(offset=offset))
    hooks.post_receive(upload(id="other", offset=1))
    hooks.post_receive(upload(offset=10))  # complete
    await hooks.close()
    assert [(e.upload.id, e.upload.offset) for e in transport.seen if e.upload] == [("abc", 1), ("other", 1), ("abc", 10)]
