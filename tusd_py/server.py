"""Running the app under uvicorn: graceful shutdown, guards on request heads, lean
bodies, interim responses, and several worker processes on one socket (`serve`).

uvicorn with httptools puts no limit on how large a request head may grow, nor
on how long a client may take to send it, so a slow or hostile client could hold
a connection and memory forever. `GuardedHttpToolsProtocol` adds both limits. The
size counts the head's own bytes as the parser hands them over (request target,
header names and values), whatever the reads they came in: one read may hold a
whole 70 KiB head, or a small head and the start of a body.

It also hands request bodies to the app without uvicorn's two extra copies of
every byte (`compat.collect_body_chunks`): tus servers mostly receive bodies.

ASGI has no message for a general 1xx interim response (its early-hints extension
carries only `Link` fields, and uvicorn sends it over HTTP/2 only), and uvicorn's
HTTP/1.1 protocols send no 1xx but `100 Continue`. The IETF resumable-upload draft
announces an upload with `104 Upload Resumption Supported` carrying `Location`, so
the protocol also accepts `{"type": "http.response.informational", "status": 1xx,
"headers": [...]}` before the response starts, and says so in the scope's
`extensions`, as ASGI extensions do (`compat.allow_interim`). It writes the interim
response to the transport like uvicorn writes its own `100 Continue`.

What this reaches of uvicorn's internals is in `compat.py`; the protocol here
overrides only the parser's callbacks and the asyncio protocol's own methods.
"""

from __future__ import annotations

import asyncio
import http
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from types import FrameType
from typing import Any, Callable

import uvicorn

from tusd_py import collector
from tusd_py.app import create_app
from tusd_py.compat import HttpToolsBase, allow_interim, collect_body_chunks
from tusd_py.interim import INFORMATIONAL, interim_response
from tusd_py.protocol import ERR_HEADERS_TOO_LARGE, TUS_VERSION


def _interim_head(message: Any) -> bytes:
    return interim_response(int(message["status"]), list(message.get("headers", [])))


class _HeadTooLarge(Exception):
    """Raised from a parser callback: httptools stops parsing this request there."""


class GuardedHttpToolsProtocol(HttpToolsBase):
    """httptools protocol that answers 431 past `max_head_bytes`, and closes a
    connection whose request head is not complete within `head_timeout` seconds."""

    max_head_bytes = 64 * 1024
    head_timeout = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._awaiting_head = True
        self._head_bytes = 0  # bytes read while this request's head was incomplete
        self._parsed_head_bytes = 0  # bytes of the head the parser handed over
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_too_large = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _expect_head(self) -> None:
        self._awaiting_head = True
        self._head_bytes = 0
        self._cancel_head_timer()
        if self.head_timeout > 0:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._awaiting_head and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head:
            self._head_bytes += len(data)
        super().data_received(data)  # a head past the limit stops the parser in `_count_head`
        # Still no complete head after more than the limit (one read can hold a whole head
        # and the start of a body, so the reads' count matters only while the head is incomplete).
        if self._awaiting_head and self._head_bytes > self.max_head_bytes and not self.transport.is_closing():
            self._head_too_large = True
            self._answer_head_too_large()

    def on_message_begin(self) -> None:  # each request, pipelined ones too
        self._parsed_head_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:  # the request target, maybe in pieces
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def _count_head(self, size: int) -> None:
        self._parsed_head_bytes += size
        if self._parsed_head_bytes > self.max_head_bytes:
            self._head_too_large = True
            raise _HeadTooLarge()  # before on_headers_complete: no request reaches the app

    def on_body(self, body: bytes) -> None:
        collect_body_chunks(self.cycle)
        super().on_body(body)

    def invalid_request(self) -> None:
        if self._head_too_large:  # answered 431, not logged as invalid
            self._answer_head_too_large()
        else:
            super().invalid_request()

    def _answer_head_too_large(self) -> None:
        error = ERR_HEADERS_TOO_LARGE()
        body = f"{error.code}: {error.message}\n".encode()
        self.transport.write(
            f"HTTP/1.1 {error.status} {http.HTTPStatus(error.status).phrase}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"tus-resumable: {TUS_VERSION}\r\nconnection: close\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body
        )
        self.transport.close()

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._cancel_head_timer()
        super().on_headers_complete()
        allow_interim(self, INFORMATIONAL, _interim_head)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._expect_head()


def guarded_protocol(max_head_bytes: int, head_timeout: float) -> type[GuardedHttpToolsProtocol]:
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"max_head_bytes": max_head_bytes, "head_timeout": head_timeout},
    )


class GracefulServer(uvicorn.Server):
    """uvicorn, plus: on SIGINT/SIGTERM, running upload bodies stop and commit what they have.

    uvicorn alone would wait for every in-flight request to end by itself, which a
    PATCH of a large file may not do for a long time.
    """

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_exit)



logger = logging.getLogger("tusd_py")


def uvicorn_config(app: Any, config: Any) -> uvicorn.Config:
    """The uvicorn settings of a tusd-py process (`config` is a tusd_py.config.Config)."""
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        timeout_graceful_shutdown=config.shutdown_timeout,
        server_header=False,
        access_log=False,  # middleware.TusMiddleware writes one line per request
        log_config=None,  # logs.configure_logging did it
        # X-Forwarded-* count only with --behind-proxy (urls.py); otherwise uvicorn's proxy
        # middleware would let any local client set the scheme, and cost every request a layer.
        proxy_headers=config.behind_proxy,
        http=guarded_protocol(config.max_header_size, config.network_timeout),
    )


def _serve_one(config: Any, sockets: list[socket.socket] | None = None) -> None:
    """One process: build the app, serve it until SIGINT/SIGTERM, stop gracefully."""
    app = create_app(config)  # here: each worker process builds its own
    collector.settle()  # after start-up: its objects frozen, passes only for real garbage (collector.py)
    GracefulServer(uvicorn_config(app, config), on_exit=app.state.engine.shutdown).run(sockets=sockets)


def _exit_with_parent(parent: int) -> None:
    """Linux: get SIGTERM when the supervisor dies, even by SIGKILL, so no worker is left behind."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _worker(config: Any, sock: socket.socket, parent: int) -> None:
    # Own process group: a Ctrl-C in a terminal reaches the supervisor only, which
    # passes on one SIGTERM (a second SIGINT would make uvicorn skip the graceful stop).
    os.setpgrp()
    _exit_with_parent(parent)
    from tusd_py import allocator
    from tusd_py.logs import configure_logging

    allocator.tune()
    configure_logging(config.log_level, config.log_format)
    _serve_one(config, [sock])


def serve(config: Any, workers: int = 1) -> None:
    """Serve `config` in this process, or in `workers` processes sharing one listening socket.

    The supervisor passes SIGINT/SIGTERM on to every worker as one SIGTERM (each
    stops gracefully: bodies in progress commit what they have), waits for them,
    and starts a worker again if one dies while the others serve. State must be
    shared (Redis): the CLI refuses several workers with the embedded store.
    """
    if workers <= 1:
        _serve_one(config)
        return
    from tusd_py.metrics import MULTIPROC_ENV

    metrics_dir = None
    if not os.environ.get(MULTIPROC_ENV):  # /metrics of any worker then sums every worker's values
        metrics_dir = tempfile.mkdtemp(prefix="tusd-py-metrics-")
        os.environ[MULTIPROC_ENV] = metrics_dir
    sock = uvicorn.Config(app=None, host=config.host, port=config.port).bind_socket()  # type: ignore[arg-type]
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> multiprocessing.process.BaseProcess:
        process = context.Process(target=_worker, args=(config, sock, os.getpid()), name="tusd-py-worker")
        process.start()
        return process

    def stop(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.pid is not None and process.exitcode is None:
                os.kill(process.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    processes = [start() for _ in range(workers)]
    logger.info("supervisor %s: %s workers: %s", os.getpid(), workers, " ".join(str(p.pid) for p in processes))
    try:
        while True:
            for index, process in enumerate(processes):
                process.join(timeout=0.2)
                if process.exitcode is None or stopping:
                    continue
                if process.exitcode == 3:  # uvicorn's startup failure: it would fail again
                    logger.error("worker %s failed to start; stopping", process.pid)
                    stop(signal.SIGTERM, None)
                    continue
                logger.warning("worker %s exited with %s; starting another", process.pid, process.exitcode)
                time.sleep(0.5)
                processes[index] = start()
            if stopping and all(process.exitcode is not None for process in processes):
                break
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
