"""CPU seconds the server spends per small upload and per GiB of 8 MiB PATCHes: prints figures, asserts nothing.

    python bench/hot_path.py                        # embedded and Redis, 5 rounds of 1000 uploads of 64 KiB
    python bench/hot_path.py --state embedded --rounds 3 --count 500
    python bench/hot_path.py --py-spy /tmp/small.txt  # also a py-spy profile of the server (raw stacks)

Why CPU and not uploads per second: this machine is shared, and wall-clock rates
move by 2-3x between runs of the same code, while the server's own CPU per upload
(utime + stime of every thread, from /proc/PID/stat) moves by a few percent. The
minimum of the rounds is printed next to the median: load from other processes
only ever adds to it (cache misses, preemption inside the kernel).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.rawhttp import OCTET, TUS, FileConnection, many_uploads  # noqa: E402
from tests.support import RedisServer, TusServer  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (all threads)


def small_rounds(server: TusServer, count: int, rounds: int, concurrency: int) -> list[float]:
    """Microseconds of server CPU per POST + PATCH of 64 KiB, one figure per round."""
    assert server.proc is not None
    body = os.urandom(64 * 1024)
    many_uploads(server.port, 200, body, concurrency)  # warm-up
    figures = []
    for _ in range(rounds):
        before = cpu_seconds(server.proc.pid)
        many_uploads(server.port, count, body, concurrency)
        figures.append((cpu_seconds(server.proc.pid) - before) / count * 1e6)
    return figures


def chunk_rounds(server: TusServer, payload: Path, rounds: int) -> list[float]:
    """Seconds of server CPU per GiB sent as one upload in 8 MiB PATCHes."""
    assert server.proc is not None
    size, chunk = payload.stat().st_size, 8 * 1024 * 1024
    figures = []
    for _ in range(rounds):
        conn = FileConnection("127.0.0.1", server.port)
        status, headers = conn.request("POST", "/files/", {**TUS, "Upload-Length": str(size)})
        assert status == 201, status
        path = "/files/" + headers["location"].rsplit("/", 1)[1]
        before = cpu_seconds(server.proc.pid)
        for offset in range(0, size, chunk):
            count = min(chunk, size - offset)
            status, headers = conn.request("PATCH", path, {**OCTET, "Upload-Offset": str(offset)}, str(payload), offset, count)
            assert status == 204, status
        figures.append((cpu_seconds(server.proc.pid) - before) / (size / 2**30))
        conn.close()
    return figures


def show(label: str, unit: str, figures: list[float]) -> None:
    print(f"{label}: min {min(figures):.1f} {unit}, median {statistics.median(figures):.1f} ({', '.join(f'{f:.0f}' for f in figures)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state", choices=["embedded", "redis", "both"], default="both")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--chunk-mib", type=int, default=0, help="also send one upload of this size in 8 MiB PATCHes per round")
    parser.add_argument("--py-spy", metavar="FILE", help="record the server with py-spy (raw stacks) during the small rounds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tusd-hot-") as tmp:
        work = Path(tmp)
        redis = RedisServer(work / "redis").start() if args.state != "embedded" else None
        try:
            for state in ["embedded", "redis"] if args.state == "both" else [args.state]:
                server = TusServer(work / f"data-{state}", redis_url=redis.url if state == "redis" else None, log_level="warning", ui=False)
                (work / f"data-{state}").mkdir()
                server.start()
                assert server.proc is not None
                spy = None
                if args.py_spy:
                    out = f"{args.py_spy}.{state}"
                    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(server.proc.pid),
                                            "--rate", "200", "--format", "raw", "--output", out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    show(f"{state}, 64 KiB POST+PATCH", "us CPU/upload", small_rounds(server, args.count, args.rounds, args.concurrency))
                    if spy is not None:
                        spy.send_signal(2)
                        spy.wait(timeout=30)
                    if args.chunk_mib:
                        payload = work / "payload"
                        with open(payload, "wb") as out_file:
                            for _ in range(args.chunk_mib):
                                out_file.write(os.urandom(1024 * 1024))
                        show(f"{state}, {args.chunk_mib} MiB in 8 MiB PATCHes", "s CPU/GiB", chunk_rounds(server, payload, args.rounds))
                finally:
                    if spy is not None and spy.poll() is None:
                        spy.kill()
                        spy.wait()
                    server.stop()
        finally:
            if redis is not None:
                redis.stop()


if __name__ == "__main__":
    main()
