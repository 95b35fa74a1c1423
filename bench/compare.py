"""tusd-py against its peers, side by side, on this machine: prints figures, asserts nothing about speed.

    bench/compare                                  # everything: 4 workloads x 6 servers x 3 repetitions
    bench/compare --reps 1 --size-mib 256          # a quick look
    bench/compare --servers tusd-py,tus-node --workloads small
    bench/compare --servers tusd-py --workloads single --size-mib 10240 --reps 1   # the 10 GiB memory check
    bench/compare --servers tusd-py,tusd-py-redis,tus-node --workloads held-open --no-warmup   # 1,000 slow uploads held open
    bench/compare --servers tusd-py,tusd-py-redis --workloads prefilled,small --no-warmup     # a store of 100,000 unfinished

Peers (installed on first use into --peers-dir, outside the repository):
  tus-node     @tus/server + @tus/file-store (npm), bench/peers/tus_node_server.mjs
  tuspyserver  tuspyserver (PyPI, a FastAPI router) under uvicorn, in its own venv, bench/peers/tuspyserver_app.py
  bare         bench/peers/bare_receiver.py: an ASGI app under uvicorn that only writes bodies to files
  bare-tuned   the same, started with the glibc allocator settings tusd-py sets in itself (MALLOC_*)
and tusd-py itself: `tusd-py` (embedded SQLite state) and `tusd-py-redis` (state in a local redis-server).

Every server is started fresh for every run (so its peak RSS, VmHWM of its process
tree, belongs to that run), the runs are interleaved (repetition, workload, server,
the server order rotating each repetition), and every upload is checked afterwards:
HEAD reports offset == length, and the stored file hashes like the bytes sent. The
client is bench/rawhttp.py: bodies sent by the kernel from a file (sendfile) and
keep-alive connections; its own CPU time is printed beside each figure, so a
client near 100% of a core would show.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.rawhttp import Connection, FileConnection, read_response  # noqa: E402
from tests.support import RedisServer, free_port, stop_process, wait_for_port  # noqa: E402

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
# Real clients (Uppy, tus-js-client) name the file and its type; tuspyserver's HEAD answers 400 without them.
CREATE = {**TUS, "Upload-Metadata": "filename YmVuY2guYmlu,filetype YXBwbGljYXRpb24vb2N0ZXQtc3RyZWFt"}
MALLOC_TUNED = {"MALLOC_MMAP_THRESHOLD_": "4194304", "MALLOC_TRIM_THRESHOLD_": "1073741824"}
NODE_PACKAGES = ["@tus/server@2", "@tus/file-store@2"]
TUSPYSERVER_PACKAGES = ["tuspyserver", "uvicorn[standard]"]
ASGI_PACKAGES = ["granian[uvloop]", "hypercorn", "uvloop"]
MiB = 1024 * 1024


# -- the servers ---------------------------------------------------------------------


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = ROOT


@dataclass
class ServerKind:
    name: str
    label: str
    launch: Callable[[int, Path, "Context"], Launch]
    uses_redis: bool = False
    default: bool = True  # in the default --servers list


@dataclass
class Context:
    peers: Path
    redis_url: str | None
    tusd_flags: list[str]


def _clean_env() -> dict[str, str]:
    """The environment servers start in: ours, minus anything that would change their behaviour."""
    drop = ("TUSD_PY_", "MALLOC_", "PYTHONMALLOC", "NODE_OPTIONS")
    return {key: value for key, value in os.environ.items() if not key.startswith(drop)}


def _tusd(redis: bool) -> Callable[[int, Path, Context], Launch]:
    def launch(port: int, data: Path, ctx: Context) -> Launch:
        argv = [sys.executable, "-m", "tusd_py", "--port", str(port), "--dir", str(data), "--log-level", "warning", "--no-ui"]
        if redis:
            assert ctx.redis_url
            argv += ["--redis-url", ctx.redis_url]
        return Launch(argv + ctx.tusd_flags, {"PYTHONPATH": str(ROOT)})

    return launch


def _tus_node(port: int, data: Path, ctx: Context) -> Launch:
    node = ctx.peers / "node"
    return Launch(["node", str(node / "tus_node_server.mjs"), str(port), str(data)], cwd=node)


def _tuspyserver(port: int, data: Path, ctx: Context) -> Launch:
    python = ctx.peers / "tuspyserver-venv" / "bin" / "python"
    return Launch([str(python), str(ROOT / "bench" / "peers" / "tuspyserver_app.py"), str(port), str(data)])


def _bare(tuned: bool) -> Callable[[int, Path, Context], Launch]:
    def launch(port: int, data: Path, ctx: Context) -> Launch:
        argv = [sys.executable, str(ROOT / "bench" / "peers" / "bare_receiver.py"), str(port), str(data)]
        return Launch(argv, dict(MALLOC_TUNED) if tuned else {})

    return launch


def _asgi_server(which: str) -> Callable[[int, Path, Context], Launch]:
    """tusd-py's app (bench/peers/tusd_asgi.py) under another ASGI server, embedded state."""

    def launch(port: int, data: Path, ctx: Context) -> Launch:
        bin_dir = ctx.peers / "asgi-venv" / "bin"
        app = "bench.peers.tusd_asgi:app"
        if which == "granian":
            argv = [str(bin_dir / "granian"), "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
                    "--loop", "uvloop", "--log-level", "warning", "--no-ws", app]
        else:
            argv = [str(bin_dir / "hypercorn"), "-b", f"127.0.0.1:{port}", "-k", "uvloop", "--log-level", "warning", app]
        return Launch(argv, {"PYTHONPATH": str(ROOT), "TUSD_BENCH_DIR": str(data)})

    return launch


SERVERS = {
    kind.name: kind
    for kind in [
        ServerKind("tusd-py", "tusd-py (embedded)", _tusd(False)),
        ServerKind("tusd-py-redis", "tusd-py (Redis)", _tusd(True), uses_redis=True),
        ServerKind("tus-node", "@tus/server", _tus_node),
        ServerKind("tuspyserver", "tuspyserver", _tuspyserver),
        ServerKind("bare", "bare uvicorn", _bare(False)),
        ServerKind("bare-tuned", "bare uvicorn, tuned malloc", _bare(True)),
        ServerKind("tusd-py-granian", "tusd-py under granian", _asgi_server("granian"), default=False),
        ServerKind("tusd-py-hypercorn", "tusd-py under hypercorn", _asgi_server("hypercorn"), default=False),
    ]
}


def install_peers(peers: Path, names: set[str]) -> None:
    """Install what the chosen peers need into `peers` (idempotent; nothing inside the repository)."""
    peers.mkdir(parents=True, exist_ok=True)
    if "tus-node" in names:
        node = peers / "node"
        node.mkdir(exist_ok=True)
        if not (node / "node_modules" / "@tus" / "file-store").is_dir():
            (node / "package.json").write_text('{"private": true, "type": "module"}\n')
            print(f"installing {' '.join(NODE_PACKAGES)} into {node}", flush=True)
            subprocess.run(["npm", "install", "--no-audit", "--no-fund", *NODE_PACKAGES], cwd=node, check=True)
        # ESM resolves packages from the script's own directory, so the script lives beside node_modules.
        shutil.copy(ROOT / "bench" / "peers" / "tus_node_server.mjs", node / "tus_node_server.mjs")
    if "tuspyserver" in names:
        venv = peers / "tuspyserver-venv"
        python = venv / "bin" / "python"
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        if subprocess.run([str(python), "-c", "import tuspyserver, uvicorn"], capture_output=True).returncode != 0:
            print(f"installing {' '.join(TUSPYSERVER_PACKAGES)} into {venv}", flush=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", *TUSPYSERVER_PACKAGES], check=True)
    if names & {"tusd-py-granian", "tusd-py-hypercorn"}:
        venv = peers / "asgi-venv"
        python = venv / "bin" / "python"
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        if subprocess.run([str(python), "-c", "import granian, hypercorn, tusd_py"], capture_output=True).returncode != 0:
            print(f"installing {' '.join(ASGI_PACKAGES)} and tusd-py (editable) into {venv}", flush=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", str(ROOT), *ASGI_PACKAGES], check=True)


def peer_versions(peers: Path, names: set[str]) -> dict[str, str]:
    versions = {}
    if "tus-node" in names:
        for package in ("server", "file-store"):
            meta = json.loads((peers / "node" / "node_modules" / "@tus" / package / "package.json").read_text())
            versions[f"@tus/{package}"] = meta["version"]
        versions["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    if "tuspyserver" in names:
        python = peers / "tuspyserver-venv" / "bin" / "python"
        code = "import importlib.metadata as m;print(m.version('tuspyserver'), m.version('fastapi'), m.version('uvicorn'))"
        out = subprocess.run([str(python), "-c", code], capture_output=True, text=True).stdout.split()
        versions.update({"tuspyserver": out[0], "fastapi (tuspyserver)": out[1], "uvicorn (tuspyserver)": out[2]})
    import importlib.metadata as m

    for package in ("uvicorn", "starlette", "uvloop", "httptools"):
        try:
            versions[package] = m.version(package)
        except m.PackageNotFoundError:
            versions[package] = "absent"
    return versions


class RunningServer:
    def __init__(self, kind: ServerKind, data: Path, ctx: Context) -> None:
        self.kind = kind
        self.data = data
        self.port = free_port()
        launch = kind.launch(self.port, data, ctx)
        env = {**_clean_env(), **launch.env}
        self.log = data.parent / f"{data.name}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(launch.argv, env=env, cwd=launch.cwd, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, timeout=30, proc=self.proc)

    def tree(self) -> list[int]:
        """The server's process and its descendants (uvicorn workers, for instance)."""
        pids, index = [self.proc.pid], 0
        while index < len(pids):
            pid = pids[index]
            index += 1
            for task in Path(f"/proc/{pid}/task").glob("*"):
                try:
                    pids += [int(child) for child in (task / "children").read_text().split()]
                except OSError:
                    pass
        return pids

    def peak_rss_mib(self) -> float:
        """VmHWM summed over the process tree (for one process: its own peak)."""
        total = 0
        for pid in self.tree():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024

    def cpu_seconds(self) -> float:
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.tree():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
            except OSError:
                pass
        return total / ticks

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGTERM, timeout=20)


# -- the workloads -------------------------------------------------------------------


@dataclass
class Payload:
    path: Path
    size: int
    digests: dict[tuple[int, int], str]  # (offset, count) -> sha256

    def digest(self, offset: int, count: int) -> str:
        key = (offset, count)
        if key not in self.digests:
            with open(self.path, "rb") as source:
                self.digests[key] = _sha256_range(source.fileno(), offset, count)
        return self.digests[key]


def _sha256_range(fd: int, offset: int, count: int) -> str:
    digest = hashlib.sha256()
    position, end = offset, offset + count
    while position < end:
        chunk = os.pread(fd, min(8 * MiB, end - position), position)
        if not chunk:
            break
        digest.update(chunk)
        position += len(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        return _sha256_range(fd, 0, os.fstat(fd).st_size)
    finally:
        os.close(fd)


@dataclass
class Upload:
    path: str  # /files/<id>
    length: int
    sha256: str
    latency: float | None = None  # seconds from its POST to its last answer, for the small uploads
    post_latency: float | None = None  # of which its POST


def _location_path(headers: dict[str, str]) -> str:
    return "/files/" + headers["location"].rstrip("/").rsplit("/", 1)[1]


def _create_blocking(conn: FileConnection, length: int) -> str:
    status, headers = conn.request("POST", "/files/", {**CREATE, "Upload-Length": str(length)})
    assert status == 201, (status, headers)
    return _location_path(headers)


def _upload_range(port: int, payload: Payload, offset: int, count: int, patch: int) -> Upload:
    """One upload of payload[offset:offset+count], in PATCHes of `patch` bytes on one keep-alive connection."""
    conn = FileConnection("127.0.0.1", port)
    try:
        path = _create_blocking(conn, count)
        done = 0
        while done < count:
            step = min(patch, count - done)
            status, headers = conn.request(
                "PATCH", path, {**OCTET, "Upload-Offset": str(done)}, str(payload.path), offset + done, step
            )
            assert status == 204, (status, headers)
            done = int(headers["upload-offset"])
    finally:
        conn.close()
    return Upload(path, count, "")


def single(port: int, payload: Payload, args: argparse.Namespace) -> tuple[float, list[Upload]]:
    upload = _upload_range(port, payload, 0, payload.size, payload.size)
    upload.sha256 = payload.digest(0, payload.size)
    return payload.size, [upload]


def chunks(port: int, payload: Payload, args: argparse.Namespace) -> tuple[float, list[Upload]]:
    upload = _upload_range(port, payload, 0, payload.size, args.patch_mib * MiB)
    upload.sha256 = payload.digest(0, payload.size)
    return payload.size, [upload]


def parallel(port: int, payload: Payload, args: argparse.Namespace) -> tuple[float, list[Upload]]:
    count = args.parallel
    each = payload.size // count
    uploads: list[Upload | None] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            uploads[index] = _upload_range(port, payload, index * each, each, each)
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    for index, upload in enumerate(uploads):
        assert upload is not None
        upload.sha256 = payload.digest(index * each, each)
    return each * count, [u for u in uploads if u is not None]


def _small_body(base: bytes, index: int) -> bytes:
    return struct.pack(">Q", index) + base[8:]  # every upload different, so a mix-up would show


def small(port: int, payload: Payload, args: argparse.Namespace) -> tuple[float, list[Upload]]:
    size = args.small_kib * 1024
    base = os.urandom(size)
    done: list[tuple[str, int, float, float]] = []  # (path, index, latency, POST latency)

    async def one(conn: Connection, index: int) -> None:
        started = time.perf_counter()
        path, post = await _small_upload(conn, size, _small_body(base, index))
        done.append((path, index, time.perf_counter() - started, post))

    _in_workers(port, args.small_count, args.concurrency, one)
    uploads = [Upload(path, size, hashlib.sha256(_small_body(base, index)).hexdigest(), *times) for path, index, *times in done]
    return len(uploads), uploads


def _in_workers(port: int, count: int, concurrency: int, step: Callable[[Connection, int], Awaitable[None]]) -> None:
    """`step(connection, index)` for index in 0..count-1, by `concurrency` workers on a keep-alive connection each."""

    async def worker(queue: list[int]) -> None:
        conn = Connection("127.0.0.1", port)
        try:
            while queue:
                await step(conn, queue.pop())
        finally:
            await conn.close()

    async def run() -> None:
        queue = list(range(count))
        await asyncio.gather(*(worker(queue) for _ in range(concurrency)))

    _run_async(run())


async def _small_upload(conn: Connection, size: int, body: bytes) -> tuple[str, float]:
    """POST + one PATCH of the whole body: one small upload, as Uppy sends it. Its path and the POST's seconds."""
    started = time.perf_counter()
    status, headers = await conn.request("POST", "/files/", {**CREATE, "Upload-Length": str(size)})
    post = time.perf_counter() - started
    assert status == 201, (status, headers)
    path = _location_path(headers)
    status, headers = await conn.request("PATCH", path, {**OCTET, "Upload-Offset": "0"}, body)
    assert status == 204 and headers["upload-offset"] == str(size), (status, headers)
    return path, post


def held_open(port: int, payload: Payload, args: argparse.Namespace) -> tuple[float, list[Upload]]:
    """--held-count uploads held open at once by slow clients, and fresh small uploads meanwhile.

    Every held upload is one PATCH whose body (--held-seconds KiB) comes at 1 KiB/s, the
    clients' starts spread over the first second. Once all of them are streaming, one fresh
    small upload (POST + PATCH of --small-kib KiB, a new connection each) runs every 0.1 s
    until the held ones finish: the latencies reported are those fresh uploads'. Every
    upload, held or fresh, is verified afterwards. The figure is held uploads per second,
    which only the clients' pace sets; what matters is the peak RSS and the latencies.
    """
    held_size = args.held_seconds * 1024
    held_base, small_size = os.urandom(held_size), args.small_kib * 1024
    small_base = os.urandom(small_size)
    probes: list[tuple[str, int, float, float]] = []

    async def hold(index: int, streaming: asyncio.Event, counter: list[int]) -> Upload:
        conn = Connection("127.0.0.1", port)
        try:
            status, headers = await conn.request("POST", "/files/", {**CREATE, "Upload-Length": str(held_size)})
            assert status == 201, (status, headers)
            path = _location_path(headers)
            body = _small_body(held_base, index)
            await asyncio.sleep(random.random())
            assert conn.reader is not None and conn.writer is not None
            head = [f"PATCH {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {held_size}"]
            head += [f"{name}: {value}" for name, value in {**OCTET, "Upload-Offset": "0"}.items()]
            conn.writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
            try:
                for start in range(0, held_size, 1024):
                    conn.writer.write(body[start : start + 1024])
                    await conn.writer.drain()
                    if start == 0:
                        counter[0] += 1
                        if counter[0] == args.held_count:
                            streaming.set()
                    if start + 1024 < held_size:
                        await asyncio.sleep(1.0)
            except (ConnectionError, RuntimeError) as exc:  # the server answered early (uvloop: RuntimeError): say what
                try:
                    answer = await asyncio.wait_for(conn.reader.read(4096), 5)
                except OSError:
                    answer = b"(the connection was reset: its answer is lost; the server's log has it)"
                raise AssertionError(f"held upload {index} cut after {start} bytes: {answer[:600]!r}") from exc
            status, headers = await read_response(conn.reader, "PATCH")
            assert status == 204 and headers["upload-offset"] == str(held_size), (status, headers)
            return Upload(path, held_size, hashlib.sha256(body).hexdigest())
        finally:
            await conn.close()

    async def probe(streaming: asyncio.Event, finished: asyncio.Event) -> None:
        await streaming.wait()
        index = 0
        while not finished.is_set():
            conn = Connection("127.0.0.1", port)
            try:
                started = time.perf_counter()
                path, post = await _small_upload(conn, small_size, _small_body(small_base, index))
                probes.append((path, index, time.perf_counter() - started, post))
            finally:
                await conn.close()
            index += 1
            await asyncio.sleep(0.1)

    held: list[Upload] = []

    async def run() -> None:
        streaming, finished, counter = asyncio.Event(), asyncio.Event(), [0]
        prober = asyncio.ensure_future(probe(streaming, finished))
        try:
            held.extend(await asyncio.gather(*(hold(index, streaming, counter) for index in range(args.held_count))))
        finally:
            finished.set()
            streaming.set()  # a prober still waiting (some upload failed) runs one probe and ends
            await prober

    _run_async(run())
    fresh = [Upload(path, small_size, hashlib.sha256(_small_body(small_base, index)).hexdigest(), *times) for path, index, *times in probes]
    return len(held), held + fresh


def _run_async(coro) -> None:  # type: ignore[no-untyped-def]
    try:
        import uvloop  # the cheapest client loop there is: the client must never be the bottleneck

        uvloop.run(coro)
    except ImportError:
        asyncio.run(coro)


@dataclass
class Workload:
    name: str
    title: str
    unit: str
    run: Callable[[int, Payload, argparse.Namespace], tuple[float, list[Upload]]]
    per_mb: bool  # the figure is MB/s (else items/s)
    # what the state store holds before the measured server starts (None: nothing)
    prepare: Callable[[ServerKind, Path, Context, argparse.Namespace], None] | None = None


def workloads(args: argparse.Namespace) -> dict[str, Workload]:
    size = f"{args.size_mib // 1024} GiB" if args.size_mib % 1024 == 0 else f"{args.size_mib} MiB"
    each = args.size_mib // args.parallel
    return {
        "single": Workload("single", f"one {size} upload, single PATCH", "MB/s", single, True),
        "chunks": Workload("chunks", f"one {size} upload, {args.patch_mib} MiB PATCHes", "MB/s", chunks, True),
        "small": Workload(
            "small",
            f"{args.small_count} uploads of {args.small_kib} KiB, concurrency {args.concurrency} (POST+PATCH)",
            "uploads/s",
            small,
            False,
        ),
        "held-open": Workload(
            "held-open",
            f"{args.held_count} uploads held open at 1 KiB/s for {args.held_seconds} s, fresh {args.small_kib} KiB uploads meanwhile",
            "held/s",
            held_open,
            False,
        ),
        "prefilled": Workload(
            "prefilled",
            f"as small, {args.prefill_count:,} unfinished uploads already in the store",
            "uploads/s",
            small,
            False,
            prefill,
        ),
        "parallel": Workload("parallel", f"{args.parallel} parallel uploads of {each} MiB", "MB/s", parallel, True),
    }


def prefill(kind: ServerKind, data: Path, ctx: Context, args: argparse.Namespace) -> None:
    """--prefill-count unfinished uploads (POST only, as clients that never sent a byte) made through
    a server of the same kind on the same data directory and Redis, stopped before the measured one starts."""
    server = RunningServer(kind, data, ctx)
    try:
        started = time.perf_counter()

        async def create(conn: Connection, index: int) -> None:
            status, headers = await conn.request("POST", "/files/", {**CREATE, "Upload-Length": str(args.small_kib * 1024)})
            assert status == 201, (status, headers)

        _in_workers(server.port, args.prefill_count, args.concurrency, create)
        print(f"  prefilled {kind.name} with {args.prefill_count:,} unfinished uploads in {time.perf_counter() - started:.0f} s", flush=True)
    finally:
        server.stop()


def percentiles_ms(seconds: list[float]) -> tuple[float, float] | None:
    """p50 and p99 of latencies, in milliseconds (None: no latency)."""
    if len(seconds) < 2:
        return (seconds[0] * 1000, seconds[0] * 1000) if seconds else None
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


@dataclass
class Latencies:
    """p50 and p99 (ms) of the small uploads of one run: whole (POST to the PATCH's answer), POST, PATCH."""

    whole: tuple[float, float]
    post: tuple[float, float]
    patch: tuple[float, float]

    @classmethod
    def of(cls, uploads: list[Upload]) -> Latencies | None:
        timed = [(u.latency, u.post_latency) for u in uploads if u.latency is not None and u.post_latency is not None]
        whole = percentiles_ms([whole for whole, _ in timed])
        post = percentiles_ms([post for _, post in timed])
        patch = percentiles_ms([whole - post for whole, post in timed])
        return cls(whole, post, patch) if whole and post and patch else None


def verify(server: RunningServer, uploads: list[Upload]) -> None:
    """Every upload: HEAD says offset == length, and the stored bytes hash as the bytes sent."""

    async def heads() -> None:
        conn = Connection("127.0.0.1", server.port)
        try:
            for upload in uploads:
                status, headers = await conn.request("HEAD", upload.path, TUS)
                assert status == 200, (server.kind.name, upload.path, status)
                assert headers.get("upload-offset") == str(upload.length), (server.kind.name, upload.path, headers)
        finally:
            await conn.close()

    asyncio.run(heads())
    for upload in uploads:
        stored = server.data / upload.path.rsplit("/", 1)[1]
        assert file_sha256(stored) == upload.sha256, f"{server.kind.name}: stored bytes of {upload.path} differ"


# -- running and reporting -----------------------------------------------------------


@dataclass
class Result:
    server: str
    workload: str
    rep: int
    figure: float
    seconds: float
    rss_mib: float
    server_cpu: float  # cores busy on average during the run
    client_cpu: float
    latencies: Latencies | None = None  # of the small uploads
    cpu_ms_per_upload: float | None = None  # server CPU seconds / small uploads, in ms


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_one(kind: ServerKind, workload: Workload, payload: Payload, work: Path, ctx: Context, args: argparse.Namespace, rep: int) -> Result:
    data = work / f"{kind.name}-{workload.name}-{rep}"
    data.mkdir(parents=True)
    if kind.uses_redis:
        _flush_redis(ctx.redis_url)
    if workload.prepare is not None:
        workload.prepare(kind, data, ctx, args)
    # Every run starts with no dirty pages: the kernel's cost of copying into the page cache
    # grows with the dirty data already there (measured: 0.3 s per GiB clean, 2.3 s with 3 GiB dirty).
    os.sync()
    server = RunningServer(kind, data, ctx)
    try:
        cpu0, client0, started = server.cpu_seconds(), client_cpu_seconds(), time.perf_counter()
        amount, uploads = workload.run(server.port, payload, args)
        elapsed = time.perf_counter() - started
        server_cpu, client_cpu = server.cpu_seconds() - cpu0, client_cpu_seconds() - client0
        rss = server.peak_rss_mib()
        verify(server, uploads)
    except BaseException:
        print(f"--- {kind.name} log ---\n{server.log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        raise
    finally:
        server.stop()
        if workload.per_mb:
            shutil.rmtree(data, ignore_errors=True)
        # Small uploads' files stay until the end: ext4 scans past recently deleted inodes
        # when it makes a file, so 2000 deletions right before the next server's run would
        # slow that server's file creations (measured: a third of its CPU time).
    figure = amount / elapsed / 1e6 if workload.per_mb else amount / elapsed
    timed = sum(1 for u in uploads if u.latency is not None)
    per_upload = server_cpu / timed * 1000 if timed and workload.name != "held-open" else None
    return Result(
        kind.name, workload.name, rep, figure, elapsed, rss, server_cpu / elapsed, client_cpu / elapsed, Latencies.of(uploads), per_upload
    )


def _flush_redis(url: str | None) -> None:
    import redis

    assert url
    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()


def make_payload(path: Path, size: int) -> Payload:
    with open(path, "wb") as out:
        block = os.urandom(8 * MiB)
        written = 0
        while written < size:
            written += out.write(block[: min(len(block), size - written)])
    payload = Payload(path, size, {})
    payload.digest(0, size)  # reads it once: the page cache is warm from here on
    return payload


def machine() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, kernel {os.uname().release}, "
        f"Python {sys.version.split()[0]}; load average before the run {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:,.0f}"
    return f"{med:,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def _latency_cell(results: list[Result]) -> str:
    timed = [r.latencies for r in results if r.latencies]
    if not timed:
        return "-"

    def pair(pick: Callable[[Latencies], tuple[float, float]]) -> str:
        return f"{statistics.median(pick(t)[0] for t in timed):.1f} / {statistics.median(pick(t)[1] for t in timed):.1f}"

    cell = f"{pair(lambda t: t.whole)} (POST {pair(lambda t: t.post)}, PATCH {pair(lambda t: t.patch)})"
    per = [r.cpu_ms_per_upload for r in results if r.cpu_ms_per_upload is not None]
    return cell + (f", cpu {statistics.median(per):.2f}" if per else "")


def report(results: list[Result], servers: list[str], loads: dict[str, Workload], header: str) -> str:
    by: dict[tuple[str, str], list[Result]] = {}
    for result in results:
        by.setdefault((result.workload, result.server), []).append(result)
    lines = [header, ""]
    lines.append("Throughput, median of the repetitions (min-max):")
    lines.append("")
    lines.append("| workload | unit | " + " | ".join(SERVERS[s].label for s in servers) + " |")
    lines.append("|---|---|" + "---:|" * len(servers))
    for name, load in loads.items():
        cells = [_cell([r.figure for r in by.get((name, s), [])]) for s in servers]
        lines.append(f"| {load.title} | {load.unit} | " + " | ".join(cells) + " |")
    ours = [s for s in servers if s.startswith("tusd-py")]
    peers = [s for s in servers if not s.startswith("tusd-py")] or [s for s in ours if s in ("tusd-py", "tusd-py-redis")]
    ours = [s for s in ours if s not in peers] or ours
    if ours and peers:
        lines += ["", "Ratios of medians, tusd-py / peer, same run:", ""]
        lines.append("| workload | " + " | ".join(f"{SERVERS[o].label} / {SERVERS[p].label}" for o in ours for p in peers) + " |")
        lines.append("|---|" + "---:|" * (len(ours) * len(peers)))
        for name, load in loads.items():
            cells = []
            for o in ours:
                for p in peers:
                    mine = [r.figure for r in by.get((name, o), [])]
                    theirs = [r.figure for r in by.get((name, p), [])]
                    cells.append(f"{statistics.median(mine) / statistics.median(theirs):.2f}x" if mine and theirs else "-")
            lines.append(f"| {load.title} | " + " | ".join(cells) + " |")
    lines += ["", "Server peak RSS (VmHWM of its process tree, MiB; highest of the repetitions):", ""]
    lines.append("| workload | " + " | ".join(SERVERS[s].label for s in servers) + " |")
    lines.append("|---|" + "---:|" * len(servers))
    for name, load in loads.items():
        cells = [f"{max(r.rss_mib for r in by[(name, s)]):.0f}" if (name, s) in by else "-" for s in servers]
        lines.append(f"| {load.title} | " + " | ".join(cells) + " |")
    lines += ["", "CPU, cores busy on average during the run (median), server / client:", ""]
    lines.append("| workload | " + " | ".join(SERVERS[s].label for s in servers) + " |")
    lines.append("|---|" + "---:|" * len(servers))
    for name, load in loads.items():
        cells = []
        for s in servers:
            rs = by.get((name, s), [])
            cells.append(
                f"{statistics.median(r.server_cpu for r in rs):.2f} / {statistics.median(r.client_cpu for r in rs):.2f}"
                if rs
                else "-"
            )
        lines.append(f"| {load.title} | " + " | ".join(cells) + " |")
    timed = {name: load for name, load in loads.items() if any(r.latencies for r in results if r.workload == name)}
    if timed:
        lines += ["", "Latency of the small uploads, ms, p50 / p99 (medians of the repetitions): whole upload (POST to the",
                  "PATCH's answer), POST, PATCH; server CPU ms per small upload (held-open: none, its CPU is the held uploads'):", ""]
        lines.append("| workload | " + " | ".join(SERVERS[s].label for s in servers) + " |")
        lines.append("|---|" + "---:|" * len(servers))
        for name, load in timed.items():
            lines.append(f"| {load.title} | " + " | ".join(_latency_cell(by.get((name, s), [])) for s in servers) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_servers = ",".join(name for name, kind in SERVERS.items() if kind.default)
    parser.add_argument("--servers", default=default_servers, help="comma-separated, from: " + ", ".join(SERVERS))
    parser.add_argument("--workloads", default="single,chunks,small,parallel")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the large uploads (and total of the parallel ones)")
    parser.add_argument("--patch-mib", type=int, default=8)
    parser.add_argument("--small-count", type=int, default=2000)
    parser.add_argument("--small-kib", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--held-count", type=int, default=1000, help="held-open: uploads held open at once")
    parser.add_argument("--held-seconds", type=int, default=30, help="held-open: each held upload's body in KiB, sent at 1 KiB/s")
    parser.add_argument("--prefill-count", type=int, default=100_000, help="prefilled: unfinished uploads made before the run")
    parser.add_argument("--tusd-flags", default="", help="extra flags for tusd-py, e.g. '--workers 2'")
    parser.add_argument("--peers-dir", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tusd-py-bench")
    parser.add_argument("--work-dir", type=Path, default=None, help="where payload and server data go (default: a temporary directory)")
    parser.add_argument("--json", type=Path, default=None, help="also write every single result here")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false", help="skip the unmeasured first run")
    parser.add_argument("--seed", type=int, default=None, help="shuffle the server order with this seed instead of rotating it")
    args = parser.parse_args()

    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [s for s in servers if s not in SERVERS]
    if unknown:
        parser.error(f"unknown servers: {', '.join(unknown)}")
    all_loads = workloads(args)
    loads = {name: all_loads[name] for name in args.workloads.split(",")}
    install_peers(args.peers_dir, set(servers))
    versions = peer_versions(args.peers_dir, set(servers))
    header = f"Machine: {machine()}\nVersions: " + ", ".join(f"{k} {v}" for k, v in versions.items())
    print(header, flush=True)

    with tempfile.TemporaryDirectory(prefix="tusd-compare-", dir=args.work_dir) as tmp:
        work = Path(tmp)
        payload = make_payload(work / "payload.bin", args.size_mib * MiB)
        os.sync()  # the payload's dirty pages go to disk now, not during the first measured run
        redis = RedisServer(work / "redis").start() if any(SERVERS[s].uses_redis for s in servers) else None
        ctx = Context(args.peers_dir, redis.url if redis else None, args.tusd_flags.split())
        results: list[Result] = []
        rng = random.Random(args.seed)
        try:
            if args.warmup:  # one unmeasured run, so that no server pays for a cold machine
                warm = loads[next(iter(loads))]
                run_one(SERVERS[servers[-1]], warm, payload, work, ctx, args, -1)
            for rep in range(args.reps):
                for load in loads.values():
                    order = servers[rep % len(servers):] + servers[: rep % len(servers)]
                    if args.seed is not None:
                        rng.shuffle(order)
                    for name in order:
                        result = run_one(SERVERS[name], load, payload, work, ctx, args, rep)
                        results.append(result)
                        print(
                            f"rep {rep + 1} {load.name:8} {name:14} {result.figure:>9,.1f} {load.unit:9} "
                            f"{result.seconds:6.2f}s  peak RSS {result.rss_mib:5.0f} MiB  "
                            f"cpu server {result.server_cpu:.2f} client {result.client_cpu:.2f}"
                            + (f"  p50/p99 {result.latencies.whole[0]:.1f}/{result.latencies.whole[1]:.1f} ms" if result.latencies else ""),
                            flush=True,
                        )
        finally:
            if redis:
                redis.stop()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"header": header, "results": [asdict(r) for r in results]}, indent=1))
    print()
    print(report(results, servers, loads, header))


if __name__ == "__main__":
    main()
