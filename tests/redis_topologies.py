"""Redis Sentinel and Redis Cluster on 127.0.0.1 for the tests and bench/scale_out.py.

- `SentinelGroup`: one master, one replica, three redis-sentinel processes (quorum 2,
  a master is down after 1 s without answers), and the `redis+sentinel://` URL of them;
- `RedisClusterNodes`: three redis-server processes in cluster mode joined by
  `redis-cli --cluster create` (no replicas), and the `redis+cluster://` URL of them.

Every process is started here and stopped by its PID; every wait is bounded.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from tests.support import RedisServer, free_port, stop_process, wait_for_port

MASTER_NAME = "mymaster"


def _wait(condition, what: str, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} after {timeout}s")


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=2)


class Sentinel:
    """One redis-sentinel process with its own (writable) config file."""

    def __init__(self, directory: Path, master_port: int) -> None:
        self.directory = directory
        self.master_port = master_port
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> Sentinel:
        binary = shutil.which("redis-sentinel") or "/usr/bin/redis-sentinel"
        if not Path(binary).exists():
            raise RuntimeError("redis-sentinel is not installed: run the README's test command (scripts/test.sh)")
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndaemonize no\ndir {self.directory}\n"
            f"logfile {self.directory / 'sentinel.log'}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
            f"sentinel failover-timeout {MASTER_NAME} 10000\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        self.proc = subprocess.Popen([binary, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM)
            self.proc = None


class SentinelGroup:
    """A master, a replica and three sentinels watching them."""

    def __init__(self, directory: Path) -> None:
        master_port, replica_port = free_port(), free_port()
        self.servers = [
            RedisServer(directory / "redis-a", port=master_port),
            RedisServer(directory / "redis-b", port=replica_port, args=("--replicaof", "127.0.0.1", str(master_port))),
        ]
        self.sentinels = [Sentinel(directory / f"sentinel-{i}", master_port) for i in range(3)]

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels) + f"/{MASTER_NAME}/0"

    def start(self) -> SentinelGroup:
        try:
            for server in self.servers:
                server.start()
            self.wait_replicated()
            for sentinel in self.sentinels:
                sentinel.start()
            first = _client(self.sentinels[0].port)
            _wait(lambda: len(first.sentinel_sentinels(MASTER_NAME)) == 2, "the sentinels do not see each other")
            _wait(lambda: len(first.sentinel_slaves(MASTER_NAME)) == 1, "the sentinels do not see the replica")
            first.close()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for process in [*self.sentinels, *self.servers]:
            process.stop()

    def master_port(self) -> int:
        """The master the sentinels name now."""
        client = _client(self.sentinels[0].port)
        try:
            return int(client.sentinel_get_master_addr_by_name(MASTER_NAME)[1])
        finally:
            client.close()

    def master(self) -> RedisServer:
        port = self.master_port()
        return next(server for server in self.servers if server.port == port)

    def wait_replicated(self, timeout: float = 20.0) -> None:
        """Until every running non-master server is a connected replica of the master."""

        def synced() -> bool:
            for server in self.servers:
                if server.proc is None:
                    continue
                info = _client(server.port).info("replication")
                if info["role"] == "slave" and info.get("master_link_status") != "up":
                    return False
            return True

        _wait(synced, "the replica does not sync", timeout)

    def kill_master(self) -> RedisServer:
        """SIGKILL the master; returns it (stopped)."""
        master = self.master()
        master.stop(signal.SIGKILL)
        return master

    def wait_new_master(self, old_port: int, timeout: float = 30.0) -> int:
        """Until every sentinel names a master other than `old_port`; returns its port."""

        def moved() -> bool:
            ports = set()
            for sentinel in self.sentinels:
                client = _client(sentinel.port)
                try:
                    ports.add(int(client.sentinel_get_master_addr_by_name(MASTER_NAME)[1]))
                finally:
                    client.close()
            return len(ports) == 1 and old_port not in ports

        _wait(moved, "no new master", timeout)
        new_port = self.master_port()
        _wait(lambda: _client(new_port).info("replication")["role"] == "master", "the new master is not one yet", timeout)
        return new_port

    def failover(self) -> None:
        """SENTINEL FAILOVER: the graceful switch (the master becomes a replica of the other)."""
        client = _client(self.sentinels[0].port)
        try:
            client.sentinel_failover(MASTER_NAME)
        finally:
            client.close()


class RedisClusterNodes:
    """Three masters in cluster mode (slots split evenly by `redis-cli --cluster create`)."""

    def __init__(self, directory: Path, *, masters: int = 3) -> None:
        self.servers = []
        for i in range(masters):
            port = free_port()
            args = (
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(directory / f"node-{i}" / "nodes.conf"),
                "--cluster-node-timeout", "2000",
                "--cluster-port", str(free_port()),
            )
            self.servers.append(RedisServer(directory / f"node-{i}", port=port, args=args))

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{server.port}" for server in self.servers)

    @property
    def ports(self) -> list[int]:
        return [server.port for server in self.servers]

    def start(self) -> RedisClusterNodes:
        try:
            for server in self.servers:
                server.start()
            cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
            nodes = [f"127.0.0.1:{port}" for port in self.ports]
            subprocess.run(
                [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30,
            )
            for port in self.ports:
                _wait(lambda port=port: _client(port).cluster("info")["cluster_state"] == "ok", "the cluster is not ok")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def flush(self) -> None:
        for port in self.ports:
            client = _client(port)
            try:
                client.flushall()
            finally:
                client.close()

    def keys_per_node(self, pattern: str) -> dict[int, list[str]]:
        """Keys matching `pattern` on each master (by port)."""
        found = {}
        for port in self.ports:
            client = _client(port)
            try:
                found[port] = sorted(client.scan_iter(match=pattern, count=1000))
            finally:
                client.close()
        return found
