"""The scale-out topology on 127.0.0.1: redis-server (AOF), N tusd-py instances
sharing one data directory, and nginx round-robin in front with the very proxy
settings of compose.yaml (deploy/nginx/tus-proxy.conf). `redis="sentinel"` or
`redis="cluster"` puts a Sentinel group or a 3-master Redis Cluster
(tests/redis_topologies.py) in the place of the one redis-server.

Used by tests/e2e/test_scale_out.py, bench/scale_out.py and scripts/cluster.sh
(`python -m tests.cluster` starts one and keeps it up until Ctrl-C).
Every process is stopped by its PID.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.redis_topologies import RedisClusterNodes, SentinelGroup
from tests.support import ROOT, RedisServer, TusServer, free_port, stop_process, wait_for_port

PROXY_SETTINGS = ROOT / "deploy" / "nginx" / "tus-proxy.conf"

_CONFIG = """\
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    log_format upstream '$request_method $uri $status $upstream_addr';
    access_log {prefix}/access.log upstream;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

    upstream tusd {{
{servers}
        keepalive 16;
    }}

    server {{
        listen 127.0.0.1:{port};

        location / {{
            include {settings};
            proxy_pass http://tusd;
        }}
    }}
}}
"""


class Nginx:
    """Debian's nginx as a foreground process with a generated config, round-robin over `upstreams`."""

    def __init__(self, directory: Path, upstreams: list[int], *, port: int | None = None) -> None:
        self.directory = directory
        self.upstreams = upstreams
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        servers = "\n".join(f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=10s;" for port in self.upstreams)
        return _CONFIG.format(prefix=self.directory, servers=servers, port=self.port, settings=PROXY_SETTINGS)

    @staticmethod
    def binary() -> str:
        binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
        if binary is None:
            raise RuntimeError("nginx is not installed: run the README's test command (scripts/test.sh)")
        return binary

    def start(self) -> Nginx:
        binary = self.binary()
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "nginx.conf"
        conf.write_text(self.config())
        log = open(self.directory / "stderr.log", "ab")
        args = [binary, "-p", str(self.directory), "-c", str(conf), "-e", str(self.directory / "error.log")]
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM)
            self.proc = None

    def upstream_log(self) -> list[tuple[str, str, int, str]]:
        """(method, path, status, instance address) of every request so far."""
        path = self.directory / "access.log"
        rows = []
        for line in path.read_text().splitlines() if path.exists() else []:
            parts = line.split()
            if len(parts) >= 4:
                rows.append((parts[0], parts[1], int(parts[2]), parts[3]))
        return rows


class Cluster:
    """Redis + `instances` tusd-py processes on one shared data directory (or one each) + nginx."""

    def __init__(
        self,
        directory: Path,
        *,
        instances: int = 3,
        proxy_port: int | None = None,
        redis: str = "single",
        separate_dirs: bool = False,
        **flags: object,
    ) -> None:
        self.directory = directory
        self.redis: RedisServer | SentinelGroup | RedisClusterNodes
        if redis == "sentinel":
            self.redis = SentinelGroup(directory / "redis")
        elif redis == "cluster":
            self.redis = RedisClusterNodes(directory / "redis")
        else:
            self.redis = RedisServer(directory / "redis", appendonly=True)
        self.data_dir = directory / "data"
        flags.setdefault("behind_proxy", True)
        flags.setdefault("ietf_interim", False)  # as compose.yaml: nginx mishandles upstream 1xx
        # separate_dirs: a --dir of each instance's own (the S3 store: nothing is shared but Redis and the bucket)
        dirs = [directory / f"data{i}" for i in range(instances)] if separate_dirs else [self.data_dir] * instances
        self.servers = [TusServer(data_dir, redis_url=self.redis.url, **flags) for data_dir in dirs]
        self.proxy = Nginx(directory / "nginx", [server.port for server in self.servers], port=proxy_port)

    @property
    def url(self) -> str:
        """The creation URL, through the proxy."""
        return f"{self.proxy.base}/files/"

    def start(self) -> Cluster:
        self.redis.start()
        try:
            for server in self.servers:
                server.start()
            self.proxy.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.proxy.stop()
        for server in self.servers:
            server.stop()
        self.redis.stop()

    def instance_of(self, address: str) -> TusServer:
        port = int(address.rsplit(":", 1)[1])
        return next(server for server in self.servers if server.port == port)

    def logs(self) -> str:
        return "\n".join(server.log() for server in self.servers)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def redis_commands(url: str) -> dict[str, int]:
    """Calls per command since the last CONFIG RESETSTAT, from INFO commandstats."""
    import redis

    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {name.removeprefix("cmdstat_"): int(values["calls"]) for name, values in stats.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description="Run redis-server, N tusd-py instances and nginx on 127.0.0.1.")
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--port", type=int, default=8080, help="the proxy's port")
    parser.add_argument("--dir", type=Path, default=None, help="where data and logs go (default: a temporary directory)")
    parser.add_argument("--redis", choices=["single", "sentinel", "cluster"], default="single", help="the Redis topology")
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="tusd-py-cluster-"))
    cluster = Cluster(directory.resolve(), instances=args.instances, proxy_port=args.port, redis=args.redis)
    cluster.start()
    print(f"tus endpoint:  {cluster.url}")
    print(f"instances:     {', '.join(server.url for server in cluster.servers)}")
    aof = f" (AOF in {cluster.redis.directory})" if isinstance(cluster.redis, RedisServer) else ""
    print(f"redis:         {cluster.redis.url}{aof}")
    print(f"data and logs: {directory}")
    print("Ctrl-C stops everything.")
    try:
        while all(server.proc is not None and server.proc.poll() is None for server in cluster.servers):
            time.sleep(0.5)
        print("an instance exited; stopping")
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
