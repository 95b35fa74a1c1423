"""Parts finishing while many final uploads wait on them (concatenation-unfinished): prints
figures, asserts nothing about speed (issue 13, item 7).

    python bench/concat_waiters.py                      # 150 parts x 40 finals, both state backends
    python bench/concat_waiters.py --parts 150 --finals 40 --root /path/of/another/checkout

Creates PARTS one-byte partial uploads and FINALS final uploads that each list every part,
then times the PARTS one-byte PATCHes that finish the parts (one after another), and the
time until every final is assembled. Every final is checked byte for byte. `--root` runs
the server from another checkout (for a before/after comparison).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

from tests.support import TUS, RedisServer, create, free_port, patch, stop_process, wait_for_port  # noqa: E402


def start(root: Path, data_dir: Path, redis_url: str | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    args = [sys.executable, "-m", "tusd_py", "--port", str(port), "--dir", str(data_dir), "--log-level", "warning"]
    if redis_url:
        args += ["--redis-url", redis_url]
    env = {key: value for key, value in os.environ.items() if not key.startswith("TUSD_PY_")}
    env["PYTHONPATH"] = str(root)
    proc = subprocess.Popen(args, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, proc=proc)
    return proc, f"http://127.0.0.1:{port}/files/"


def run(root: Path, backend: str, parts: int, finals: int, scratch: Path) -> tuple[float, float]:
    redis_server = RedisServer(scratch / f"redis-{backend}").start() if backend == "redis" else None
    proc, url = start(root, scratch / f"data-{backend}", redis_server.url if redis_server else None)
    try:
        part_urls = [create(url, 1, Upload_Concat="partial") for _ in range(parts)]
        value = "final;" + " ".join(part_urls)
        final_urls = []
        for _ in range(finals):
            response = requests.post(url, headers={**TUS, "Upload-Concat": value}, timeout=60)
            assert response.status_code == 201, response.text
            final_urls.append(response.headers["Location"])
        started = time.perf_counter()
        for number, part_url in enumerate(part_urls):
            assert patch(part_url, 0, bytes([65 + number % 26])).status_code == 204
        patched = time.perf_counter() - started
        expected = bytes(65 + number % 26 for number in range(parts))
        deadline = time.monotonic() + 600
        for final_url in final_urls:
            while requests.head(final_url, headers=TUS, timeout=60).headers.get("Upload-Offset") != str(parts):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{final_url} not assembled")
                time.sleep(0.05)
            assert requests.get(final_url, timeout=60).content == expected
        return patched, time.perf_counter() - started
    finally:
        stop_process(proc)
        if redis_server is not None:
            redis_server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", type=int, default=150)
    parser.add_argument("--finals", type=int, default=40)
    parser.add_argument("--backends", default="embedded,redis")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tusd-py-concat-bench-") as scratch:
        for backend in args.backends.split(","):
            patched, assembled = run(args.root.resolve(), backend, args.parts, args.finals, Path(scratch))
            print(
                f"{backend:8} {args.parts} parts x {args.finals} finals: {args.parts} one-byte PATCHes {patched:.2f} s,"
                f" every final assembled after {assembled:.2f} s"
            )


if __name__ == "__main__":
    main()
