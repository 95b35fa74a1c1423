"""Hooks: the server tells the outside world about uploads, and may be told no.

The handler calls one `Hooks` object at clearly named points (`pre_create`,
`post_finish`, ...). It turns an upload record and the current request into a
`HookEvent` (events.py) and hands it to each configured transport (`module.py`,
`http.py`, `stream.py`) that takes that event type; what they answer is checked
in answers.py.

Blocking events (`pre-create`, `pre-finish`, `pre-terminate`, `authorize`) are
awaited: a transport may reject them (the request is answered with the hook's
status or the table's default), and `pre-create` may change the id and metadata.
A transport that fails or takes longer than `timeout` rejects the request with a
5xx (ERR_HOOK_FAILED 502, ERR_HOOK_TIMEOUT 504); the caller has changed nothing
yet, and its lock is released as the error unwinds. Blocking calls take one of a
bounded number of slots (`capacity.py`): with none free, 503 ERR_HOOKS_BUSY at once.

Notifications (`post-*`) are queued and delivered in order by background tasks,
so a slow receiver never slows a request; a failing one is logged and counted,
and the request does not notice. Each transport has two queues, each with its
own task (`_Lane`): progress (`post-create`, `post-receive`, which any client makes
cheaply and in numbers) and outcomes (`post-finish`, `post-terminate`). An outcome
never waits behind progress and is never dropped; progress past the queue's size
is dropped and counted (`tusd_py_hook_events_dropped_total`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from typing import Any, Awaitable, Callable, Iterable, Protocol

from starlette.requests import Request

from tusd_py import protocol as p
from tusd_py.hooks.answers import DataChoice, HookResponse, HookTimeout, Reject, rejection
from tusd_py.hooks.capacity import HookCapacity, HooksBusy
from tusd_py.hooks.events import (
    AUTHORIZE,
    EVENTS,
    POST_CREATE,
    POST_FINISH,
    POST_RECEIVE,
    POST_TERMINATE,
    PRE_CREATE,
    PRE_FINISH,
    PRE_TERMINATE,
    HookEvent,
    HookRequest,
    HookUpload,
    decode_metadata,
)
from tusd_py.state.base import Upload

logger = logging.getLogger("tusd_py.hooks")

QUEUE_SIZE = 10_000  # default of --hooks-queue-size: notifications waiting per transport and kind
URGENT = frozenset({POST_FINISH, POST_TERMINATE})  # never dropped, never behind progress
DROP_LOG_INTERVAL = 10.0  # seconds between two log lines about dropped progress events


class Transport(Protocol):
    """One way of reaching hooks: a Python module, an HTTP endpoint, a Redis stream."""

    name: str

    def handles(self, event_type: str) -> bool:
        """Whether this transport wants events of this type."""

    async def deliver(self, event: HookEvent) -> HookResponse | None:
        """Send one event; raise HookFailed (or HookTimeout) when that is impossible."""

    async def close(self) -> None: ...


class HookMetrics(Protocol):
    def hook_invoked(self, event_type: str, transport: str) -> None: ...

    def hook_failed(self, event_type: str, transport: str) -> None: ...

    def hook_dropped(self, event_type: str, transport: str) -> None: ...


class _Lane:
    """One transport's queue of one kind of notification, delivered in order by one task.

    A progress lane holds at most `limit` events and drops what comes past it. An
    urgent lane (post-finish, post-terminate) drops nothing: past `limit` the event
    is queued all the same and `room` is cleared until the lane is back under it;
    the request that caused the event waits for `room` before it is answered, so
    memory stays bounded by the requests that wait.
    """

    def __init__(self, limit: int, *, urgent: bool) -> None:
        self.limit = limit
        self.urgent = urgent
        self.queue: asyncio.Queue[HookEvent] = asyncio.Queue()  # bounded in `put`
        self.room = asyncio.Event()
        self.room.set()
        self.worker: asyncio.Task[None] | None = None

    def put(self, event: HookEvent) -> bool:
        """Queue `event`; False when a progress lane is full and drops it."""
        if self.queue.qsize() >= self.limit:
            if not self.urgent:
                return False
            self.room.clear()
        self.queue.put_nowait(event)
        return True

    async def get(self) -> HookEvent:
        event = await self.queue.get()
        if self.queue.qsize() < self.limit:
            self.room.set()
        return event


_current_request: contextvars.ContextVar[HookRequest | None] = contextvars.ContextVar("tusd_py_hook_request", default=None)


class Hooks:
    """What the handler calls. With no transports every call is a cheap no-op."""

    def __init__(
        self,
        transports: Iterable[Transport] = (),
        *,
        timeout: float = 30.0,
        progress_interval: float = 1.0,
        storage: Callable[[str], dict[str, str]] = lambda upload_id: {},
        metrics: HookMetrics | None = None,
        capacity: HookCapacity | None = None,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.transports = list(transports)
        self.timeout = timeout
        self.capacity = capacity or HookCapacity()
        self.progress_interval = progress_interval
        self.storage = storage
        self.metrics = metrics
        self._wanted = {event: [t for t in self.transports if t.handles(event)] for event in EVENTS}
        self.queue_size = queue_size
        self._lanes: dict[tuple[str, bool], _Lane] = {}  # (transport, urgent)
        self._dropped: dict[tuple[str, str], int] = {}  # not yet logged, by (event, transport)
        self._drops_logged = 0.0
        self._last_progress: dict[str, float] = {}

    def wants(self, event_type: str) -> bool:
        return bool(self._wanted[event_type])

    @property
    def enabled(self) -> bool:
        return bool(self.transports)

    # -- the request an event is about ----------------------------------------------

    def bind_request(self, request: Request, method: str) -> None:
        """Remember the current request for the events it causes (a context variable,
        so that code deep in the handler and tasks it starts need not pass it along)."""
        if self.transports:
            _current_request.set(HookRequest.from_request(request, method))

    def event(self, event_type: str, upload: Upload | None, upload_id: str | None = None, **changes: object) -> HookEvent:
        view = None
        if upload is not None:
            if changes:
                upload = upload.replace(**changes)
            view = HookUpload(
                id=upload.id,
                size=upload.length,
                offset=upload.offset,
                metadata=decode_metadata(upload.metadata),
                is_partial=upload.partial,
                is_final=upload.final,
                partial_uploads=list(upload.parts),
                state=upload.state,
                created=upload.created,
                expires=upload.expires,
                storage=self.storage(upload.id),
            )
        return HookEvent(event_type, view, _current_request.get(), upload.id if upload is not None else upload_id)

    # -- blocking events -----------------------------------------------------------

    async def authorize(self, upload: Upload | None, upload_id: str | None = None) -> None:
        """Every request but OPTIONS, before anything else happens, and each part a final
        upload lists. `upload` is the record (tombstones too), None when there is none:
        for a creation (`upload_id` None) or an id that names no upload."""
        if self._wanted[AUTHORIZE]:
            await self._blocking(self.event(AUTHORIZE, upload, upload_id))

    async def pre_create(self, upload: Upload) -> Upload:
        """May reject the creation, or return the upload with another id or metadata."""
        return (await self.pre_create_data(upload))[0]

    async def pre_create_data(self, upload: Upload) -> tuple[Upload, DataChoice]:
        """`pre_create`, and where the hook wants the upload's data (`DataChoice`)."""
        if not self._wanted[PRE_CREATE]:
            return upload, DataChoice()
        response = await self._blocking(self.event(PRE_CREATE, upload))
        if response.id is not None:
            if not p.is_valid_id(response.id):
                self._log_failure(PRE_CREATE, "pre-create", f"invalid id {response.id[:140]!r}")
                raise p.ERR_HOOK_FAILED("the pre-create hook chose an invalid upload id")
            upload = upload.replace(id=response.id)
        if response.metadata is not None:
            try:
                encoded = p.encode_metadata({key: value.encode() for key, value in response.metadata.items()})
                p.parse_metadata(encoded)  # keys must be valid too
            except p.TusError:
                self._log_failure(PRE_CREATE, "pre-create", "invalid metadata keys")
                raise p.ERR_HOOK_FAILED("the pre-create hook answered with invalid metadata") from None
            upload = upload.replace(metadata=encoded or None)
        storage = response.storage or {}
        return upload, DataChoice(storage.get("key"), storage.get("metadata") or {})

    async def pre_finish(self, upload: Upload) -> None:
        """The upload is about to complete (all bytes on disk, not yet committed)."""
        if self._wanted[PRE_FINISH]:
            await self._blocking(self.event(PRE_FINISH, upload))

    async def pre_terminate(self, upload: Upload) -> None:
        if self._wanted[PRE_TERMINATE]:
            await self._blocking(self.event(PRE_TERMINATE, upload))

    async def _blocking(self, event: HookEvent) -> HookResponse:
        try:
            with self.capacity.slot():
                return await self._ask(event)
        except HooksBusy as exc:
            logger.warning("%s hook refused: %s", event.type, exc)
            raise p.ERR_HOOKS_BUSY(Retry_After="1") from None

    async def _ask(self, event: HookEvent) -> HookResponse:
        merged = HookResponse()
        for transport in self._wanted[event.type]:
            self._count(event.type, transport.name, failed=False)
            try:
                try:
                    answer: object = await asyncio.wait_for(transport.deliver(event), self.timeout)
                except Reject as exc:
                    answer = exc.response
                response = HookResponse.parse(answer)  # whatever the path, checked
            except (asyncio.TimeoutError, HookTimeout) as exc:
                self._log_failure(event.type, transport.name, f"no answer in time ({exc or self.timeout})")
                raise p.ERR_HOOK_TIMEOUT() from None
            except HooksBusy:
                raise
            except Exception as exc:
                self._log_failure(event.type, transport.name, repr(exc))
                raise p.ERR_HOOK_FAILED() from None
            if response is None:
                continue
            if response.reject:
                raise rejection(event.type, response)
            if response.id is not None:
                merged.id = response.id
            if response.metadata is not None:
                merged.metadata = response.metadata
            if response.storage is not None:
                merged.storage = response.storage
        return merged

    # -- notifications -------------------------------------------------------------

    def post_create(self, upload: Upload) -> None:
        self._notify(POST_CREATE, upload)

    def post_receive(self, upload: Upload) -> None:
        """Progress: at most once per `progress_interval` per upload (and once when it completes)."""
        if not self._wanted[POST_RECEIVE]:
            return
        now = time.monotonic()
        last = self._last_progress.get(upload.id)
        if upload.finished:
            self._last_progress.pop(upload.id, None)
        elif last is not None and now - last < self.progress_interval:
            return
        else:
            if len(self._last_progress) >= self.queue_size:
                self._last_progress.clear()
            self._last_progress[upload.id] = now
        self._notify(POST_RECEIVE, upload)

    def post_finish(self, upload: Upload) -> Awaitable[Any]:
        """Queued at once, never dropped; await the result: it is done when the queue has
        room (at once, unless `queue_size` outcomes are already waiting)."""
        return self._room(self._notify(POST_FINISH, upload))

    def post_terminate(self, upload: Upload) -> Awaitable[Any]:
        """As `post_finish`."""
        return self._room(self._notify(POST_TERMINATE, upload, state="terminated"))

    def _notify(self, event_type: str, upload: Upload, **changes: object) -> list[_Lane]:
        """Queue the event for each transport that wants it; returns the full urgent lanes."""
        transports = self._wanted[event_type]
        if not transports:
            return []
        event = self.event(event_type, upload, None, **changes)  # `changes` are Upload fields
        urgent = event_type in URGENT
        full = []
        for transport in transports:
            lane = self._lane(transport, urgent)
            if not lane.put(event):
                self._drop(event_type, transport.name)
            elif not lane.room.is_set():
                full.append(lane)
        return full

    @staticmethod
    def _room(full: list[_Lane]) -> asyncio.Future[Any]:
        """Done once every lane in `full` has room again (at once for none)."""
        if full:
            return asyncio.ensure_future(asyncio.gather(*(lane.room.wait() for lane in full)))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def _lane(self, transport: Transport, urgent: bool) -> _Lane:
        lane = self._lanes.get((transport.name, urgent))
        if lane is None:
            lane = self._lanes[(transport.name, urgent)] = _Lane(self.queue_size, urgent=urgent)
            lane.worker = asyncio.create_task(self._deliver_all(transport, lane))
        return lane

    async def _deliver_all(self, transport: Transport, lane: _Lane) -> None:
        while True:
            event = await lane.get()
            self._count(event.type, transport.name, failed=False)
            try:
                await asyncio.wait_for(transport.deliver(event), self.timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log_failure(event.type, transport.name, repr(exc) if str(exc) else type(exc).__name__)
            finally:
                lane.queue.task_done()

    def _drop(self, event_type: str, transport: str) -> None:
        """A progress event found its queue full: counted always, logged now and then."""
        if self.metrics is not None:
            self.metrics.hook_dropped(event_type, transport)
        key = (event_type, transport)
        self._dropped[key] = self._dropped.get(key, 0) + 1
        now = time.monotonic()
        if now - self._drops_logged >= DROP_LOG_INTERVAL:
            self._drops_logged = now
            counts = ", ".join(f"{count} {event} ({name})" for (event, name), count in self._dropped.items())
            logger.warning("hook queues full (%s events each): dropped %s", self.queue_size, counts)
            self._dropped.clear()

    # -- bookkeeping ---------------------------------------------------------------

    def _count(self, event_type: str, transport: str, *, failed: bool) -> None:
        if self.metrics is not None:
            (self.metrics.hook_failed if failed else self.metrics.hook_invoked)(event_type, transport)

    def _log_failure(self, event_type: str, transport: str, why: str) -> None:
        logger.error("%s hook (%s) failed: %s", event_type, transport, why)
        self._count(event_type, transport, failed=True)

    async def close(self, drain: float = 5.0) -> None:
        """Deliver what is queued (for at most `drain` seconds), then stop."""
        if self._lanes:
            try:
                await asyncio.wait_for(asyncio.gather(*(lane.queue.join() for lane in self._lanes.values())), drain)
            except asyncio.TimeoutError:
                logger.warning("hook notifications still queued at shutdown were dropped")
        for lane in self._lanes.values():
            if lane.worker is not None:
                lane.worker.cancel()
        for transport in self.transports:
            await transport.close()
