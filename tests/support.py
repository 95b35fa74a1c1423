"""Real processes for the tests: redis-server and tusd-py servers on 127.0.0.1 (and small
stand-in HTTP servers in a thread, for what tusd-py never answers).

Every process started here is stopped by its PID. Waits are bounded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
    """Stop one process by its PID: `sig`, then SIGKILL if it will not go."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return proc.returncode


class RedisServer:
    """A throwaway redis-server on a free port (AOF optional), in its own directory."""

    def __init__(self, directory: Path, *, appendonly: bool = False, port: int | None = None, args: tuple[str, ...] = ()) -> None:
        self.directory = directory
        self.appendonly = appendonly
        self.port = port or free_port()
        self.args = args  # more redis-server options (replication, cluster mode)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run the README's test command")
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
            *self.args,
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            stop_process(self.proc, sig)
            self.proc = None


class LocalHttpServer:
    """A threaded `http.server` on 127.0.0.1 (a port the system picks) serving `handler`,
    as a context manager: its thread is stopped and joined on exit."""

    path = "/"

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.path}"

    def __enter__(self):  # type: ignore[no-untyped-def]
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


class TusServer:
    """`python -m tusd_py` on a free port, with its own data directory."""

    def __init__(self, data_dir: Path, *, redis_url: str | None = None, port: int | None = None, **flags: object) -> None:
        self.data_dir = data_dir
        self.redis_url = redis_url
        self.port = port or free_port()
        self.flags = flags
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-server-{self.port}.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/files/"

    def command(self) -> list[str]:
        args = [sys.executable, "-m", "tusd_py", "--port", str(self.port), "--dir", str(self.data_dir)]
        if self.redis_url:
            args += ["--redis-url", self.redis_url]
        for name, value in self.flags.items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                args.append(flag)
            elif value is False:
                args.append("--no-" + name.replace("_", "-"))
            else:
                args += [flag, str(value)]
        return args

    def start(self) -> TusServer:
        env = {key: value for key, value in os.environ.items() if not key.startswith("TUSD_PY_")}
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        log.close()
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        code = stop_process(self.proc, sig, timeout)
        self.proc = None
        return code

    def restart(self) -> TusServer:
        self.stop()
        return self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def stub_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """`handler` served by a threaded http.server on 127.0.0.1; yields its /files/ URL, then stops it."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/files/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}


def create(url: str, length: int | None = None, **headers: str) -> str:
    """POST a new upload; returns its absolute URL."""
    hdrs = dict(TUS)
    if length is not None:
        hdrs["Upload-Length"] = str(length)
    hdrs.update({key.replace("_", "-"): value for key, value in headers.items()})
    response = requests.post(url, headers=hdrs, timeout=10)
    assert response.status_code == 201, (response.status_code, response.text)
    return response.headers["Location"]


def patch(url: str, offset: int, body: bytes, **headers: str) -> requests.Response:
    hdrs = dict(OCTET, **{"Upload-Offset": str(offset)})
    hdrs.update({key.replace("_", "-"): value for key, value in headers.items()})
    return requests.patch(url, data=body, headers=hdrs, timeout=30)


def head(url: str) -> requests.Response:
    return requests.head(url, headers=TUS, timeout=10)


def raw_request(port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One request with the path sent exactly as given (no dot-segment clean-up, no quoting)."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()
