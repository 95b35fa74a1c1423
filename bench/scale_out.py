"""Many small uploads through nginx against 1 and 3 instances sharing one Redis: prints figures, asserts
nothing about speed.

    python bench/scale_out.py                        # 2000 x 64 KiB (POST + PATCH), concurrency 64
    python bench/scale_out.py --count 500 --instances 1,3
    python bench/scale_out.py --instances 3 --redis single,sentinel,sentinel-min1,cluster

`--redis`: the Redis topologies (tests/redis_topologies.py): `single` (redis-server with AOF),
`sentinel` (a master, a replica, three sentinels), `sentinel-min1` (the same with
--redis-min-replicas 1: WAIT after every creation, commit and lock), `cluster` (3 masters).

For each topology (tests/cluster.py: redis-server with AOF, N tusd-py, nginx round-robin) it prints
uploads/s, the CPU seconds per upload of the tusd-py instances (/proc) and of Redis (`INFO cpu`), the
Redis commands per upload from `INFO commandstats` (commands run inside scripts included), and the
round trips each request makes to Redis, counted on one sample upload with MONITOR (a round trip is
a command sent by a client; the commands a script runs inside Redis are not), once the warm-up (50
uploads and a HEAD of each) has cached the scripts on every node. Issue 19's target: POST 1, PATCH 2.
Every upload is checked: 201, then 204 with the full offset, and a sample of stored files is hashed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402

from bench.rawhttp import OCTET, TUS, Connection, many_uploads  # noqa: E402
from tests.cluster import Cluster, redis_commands  # noqa: E402
from tests.support import upload_file  # noqa: E402

NOT_UPLOADS = {"config|resetstat", "info", "hello", "subscribe", "client|setinfo", "ping", "monitor", "select"}


def _not_a_request(command: str) -> bool:
    """What MONITOR shows that no request sent: the sentinels' probes, and the WAIT that goes in
    the same write as the script before it (one round trip for both, tusd_py/redis_scripts.py)."""
    return command.startswith(("PING", "INFO", "WAIT", "PUBLISH __sentinel__", "PUBLISH \"__sentinel__"))


def data_nodes(cluster: Cluster, topology: str) -> list[str]:
    """URLs of the Redis servers that take the writes: the one, the master, or every master."""
    if topology == "cluster":
        return [f"redis://127.0.0.1:{port}/0" for port in cluster.redis.ports]  # type: ignore[union-attr]
    if topology.startswith("sentinel"):
        return [f"redis://127.0.0.1:{cluster.redis.master_port()}/0"]  # type: ignore[union-attr]
    return [cluster.redis.url]


async def heads(port: int, paths: list[str]) -> None:
    """A HEAD of each upload: the PATCHes that finish an upload let go of the lock with their commit,
    so without these no release script would have run (a first call costs a NOSCRIPT round trip)."""
    conn = Connection("127.0.0.1", port)
    for path in paths:
        status, _ = await conn.request("HEAD", path, TUS)
        assert status == 200
    await conn.close()


def round_trips(nodes: list[str], cluster: Cluster, body: bytes) -> dict[str, int]:
    """Client commands per request of one upload, watched with MONITOR on every data node."""
    clients = [redis.Redis.from_url(url, decode_responses=True) for url in nodes]
    seen: list[str] = []
    stop = threading.Event()

    def watch(client: redis.Redis, ready: threading.Event) -> None:
        with client.monitor() as monitor:
            ready.set()
            for event in monitor.listen():
                if stop.is_set() and event["command"].startswith("ECHO"):
                    return
                if event.get("client_type") != "lua" and not _not_a_request(event["command"]):
                    seen.append(event["command"])

    threads = []
    for client in clients:
        ready = threading.Event()
        threads.append(threading.Thread(target=watch, args=(client, ready), daemon=True))
        threads[-1].start()
        ready.wait(5)
    counts = {}

    async def one() -> None:
        start = len(seen)
        conn = Connection("127.0.0.1", cluster.proxy.port)
        status, headers = await conn.request("POST", "/files/", {**TUS, "Upload-Length": str(len(body))})
        time.sleep(0.2)
        counts["POST"] = len(seen) - start
        path = "/files/" + headers["location"].rsplit("/", 1)[1]
        status, headers = await conn.request("PATCH", path, {**OCTET, "Upload-Offset": "0"}, body)
        assert status == 204
        time.sleep(0.2)
        counts["PATCH"] = len(seen) - start - counts["POST"]
        await conn.request("HEAD", path, TUS)
        time.sleep(0.2)
        counts["HEAD"] = len(seen) - start - counts["POST"] - counts["PATCH"]
        await conn.close()

    asyncio.run(one())
    stop.set()
    for url, thread, client in zip(nodes, threads, clients):
        redis.Redis.from_url(url).echo("stop")
        thread.join(5)
        client.close()
    return counts


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far: /proc/<pid>/stat, fields 14 and 15."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_cpu(nodes: list[str]) -> float:
    """CPU seconds the Redis data nodes have used so far (INFO cpu, main thread and the others)."""
    total = 0.0
    for url in nodes:
        with redis.Redis.from_url(url) as admin:
            info = admin.info("cpu")
        total += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return total


def cpu_used(cluster: Cluster, nodes: list[str]) -> tuple[float, float]:
    """(tusd-py instances, Redis) CPU seconds so far: counts, unlike wall-clock rates on a shared machine."""
    return sum(process_cpu(server.proc.pid) for server in cluster.servers if server.proc), redis_cpu(nodes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--kib", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--instances", default="1,3")
    parser.add_argument("--redis", default="single", help="comma-separated: single, sentinel, sentinel-min1, cluster")
    args = parser.parse_args()
    body = os.urandom(args.kib * 1024)
    expected = hashlib.sha256(body).hexdigest()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tusd-bench-scale-") as tmp:
        runs = [(topology, int(n)) for topology in args.redis.split(",") for n in args.instances.split(",")]
        for topology, instances in runs:
            flags: dict[str, object] = {"redis_min_replicas": 1} if topology == "sentinel-min1" else {}
            redis_kind = "sentinel" if topology.startswith("sentinel") else topology
            directory = Path(tmp) / f"{topology}-{instances}"
            cluster = Cluster(directory, instances=instances, redis=redis_kind, log_level="warning", **flags).start()
            try:
                _, warm = many_uploads(cluster.proxy.port, 50, body, 8)  # warm up: connections, script cache
                asyncio.run(heads(cluster.proxy.port, warm))  # and the release script (HEAD's) on every node
                nodes = data_nodes(cluster, topology)
                trips = round_trips(nodes, cluster, body)
                for url in nodes:
                    with redis.Redis.from_url(url) as admin:
                        admin.config_resetstat()
                cpu_before = cpu_used(cluster, nodes)
                elapsed, paths = many_uploads(cluster.proxy.port, args.count, body, args.concurrency)
                cpu_after = cpu_used(cluster, nodes)
                tusd_us, redis_us = ((after - before) / args.count * 1e6 for after, before in zip(cpu_after, cpu_before))
                calls = Counter()
                for url in nodes:
                    calls.update(redis_commands(url))
                assert len(paths) == args.count
                for path in paths[:: max(1, len(paths) // 50)]:
                    stored = upload_file(cluster.data_dir, path.rsplit("/", 1)[1])
                    assert hashlib.sha256(stored.read_bytes()).hexdigest() == expected, "stored bytes differ"
            finally:
                cluster.stop()
            per_upload = Counter({name: n / args.count for name, n in calls.items() if name not in NOT_UPLOADS})
            rate = args.count / elapsed
            total = sum(per_upload.values())
            detail = ", ".join(f"{name} {n:.2f}" for name, n in per_upload.most_common())
            print(f"{topology}, {instances} instance(s): {rate:,.0f} uploads/s; Redis commands per upload {total:.2f} ({detail})")
            print(f"  round trips to Redis: POST {trips['POST']}, PATCH {trips['PATCH']}, HEAD {trips['HEAD']}", flush=True)
            print(f"  CPU per upload: tusd-py {tusd_us:,.0f} us, Redis {redis_us:,.0f} us", flush=True)
            trips_cell = f"{trips['POST']} / {trips['PATCH']} / {trips['HEAD']}"
            rows.append((topology, instances, f"{rate:,.0f}", f"{total:.1f}", trips_cell, f"{tusd_us:,.0f} / {redis_us:,.0f}"))
    print()
    print(f"{args.count} uploads of {args.kib} KiB (POST + PATCH), concurrency {args.concurrency}, through nginx:")
    print()
    print("| Redis | instances | uploads/s | Redis commands per upload | Redis round trips POST / PATCH / HEAD | CPU us per upload tusd-py / Redis |")
    print("|---|---:|---:|---:|---|---:|")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


if __name__ == "__main__":
    main()
