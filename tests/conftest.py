from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.redis_topologies import RedisClusterNodes
from tests.support import S3_CREDENTIALS, RedisServer, TusServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """A clean database on the shared redis-server for each test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    client.close()
    yield redis_server.url


@pytest.fixture(scope="session")
def redis_cluster_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    nodes = RedisClusterNodes(tmp_path_factory.mktemp("redis-cluster")).start()
    yield nodes
    nodes.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster_nodes: RedisClusterNodes) -> Iterator[str]:
    """The shared 3-master Redis Cluster, emptied for each test."""
    redis_cluster_nodes.flush()
    yield redis_cluster_nodes.url


@pytest.fixture(params=["embedded", "redis"])
def state_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=["embedded", "redis", "redis-cluster"])
def state_backend_or_cluster(request: pytest.FixtureRequest) -> str:
    """`state_backend` plus a Redis Cluster; a module opts in with
    `from tests.conftest import state_backend_or_cluster as state_backend`."""
    return request.param


REDIS_URL_FIXTURES = {"redis": "redis_url", "redis-cluster": "redis_cluster_url"}


@pytest.fixture
def make_server(tmp_path: Path, state_backend: str, request: pytest.FixtureRequest) -> Iterator:
    """Start tusd-py servers (with the parametrized state backend); all are stopped afterwards."""
    started: list[TusServer] = []
    fixture = REDIS_URL_FIXTURES.get(state_backend)
    redis = request.getfixturevalue(fixture) if fixture else None

    def make(**flags: object) -> TusServer:
        server = TusServer(tmp_path / f"data{len(started)}", redis_url=redis, **flags)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def server(make_server) -> TusServer:
    return make_server()


@pytest.fixture
def proxies() -> Iterator:
    """Start test proxies (`tests/netproxy.py`) in front of a port; all are stopped afterwards."""
    from tests.netproxy import Proxy

    started: list = []

    def make(port: int, **options: object):
        proxy = Proxy(port, **options).start()  # type: ignore[arg-type]
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


@pytest.fixture
def s3_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test S3 servers' access key in the environment, where botocore's chain finds it."""
    for name, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
