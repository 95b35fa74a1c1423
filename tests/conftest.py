"""Fixtures shared by every test: real redis-server, SeaweedFS and tusd-py processes on 127.0.0.1.

Servers from `make_server` run on the parametrized state backend (`state_backend`) and
data backend (`data_backend`: files under --dir, or "s3": a bucket on the session's
SeaweedFS with a fresh key prefix per test). Which e2e modules also run on S3, and
with which state backends, is the table `S3_MODULES` below: the protocol tests, within
the suite's time budget. A test that looks at files on disk is marked `files_only`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.redis_topologies import RedisClusterNodes
from tests.support import S3_CREDENTIALS, RedisServer, S3Server, TusServer

# e2e module -> the state backends its `make_server` tests also run with on the S3 data store.
# Every module on Redis+S3; embedded+S3 for the core protocol only (the state backends are
# proven against each other on files already; what S3 changes is the data path).
S3_MODULES: dict[str, tuple[str, ...]] = {
    "tests.e2e.test_core": ("embedded", "redis"),
    "tests.e2e.test_lengths": ("redis",),
    "tests.e2e.test_concat": ("redis",),
    "tests.e2e.test_ietf_v9": ("redis",),
}
S3_STATE_BACKENDS = ("redis",)  # module-scoped servers on S3 (test_ietf's `srv`)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "files_only: the test inspects the data directory, so it does not run with S3 as the data backend")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`data_backend` is "files" everywhere, and also "s3" in the modules of `S3_MODULES`."""
    if "data_backend" not in metafunc.fixturenames or metafunc.module.__name__ not in S3_MODULES:
        return
    backends = ["files"]
    if metafunc.definition.get_closest_marker("files_only") is None:
        backends.append("s3")
    metafunc.parametrize("data_backend", backends)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop the S3 variants on state backends their module's row does not name."""
    keep, drop = [], []
    for item in items:
        params = getattr(item, "callspec", None)
        params = params.params if params is not None else {}
        allowed = S3_MODULES.get(getattr(item.module, "__name__", ""), ())  # type: ignore[attr-defined]
        if params.get("data_backend") == "s3" and params.get("state_backend", "embedded") not in allowed:
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def data_backend() -> str:
    """Where servers keep upload bytes: "files" (parametrized with "s3" in the modules of `S3_MODULES`)."""
    return "files"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One SeaweedFS (`weed mini`) for the session; tests keep apart by key prefix."""
    server = S3Server(tmp_path_factory.mktemp("seaweedfs")).start()
    yield server
    server.stop()


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
def make_server(tmp_path: Path, state_backend: str, data_backend: str, request: pytest.FixtureRequest) -> Iterator:
    """Start tusd-py servers (with the parametrized state and data backends); all are stopped afterwards.

    On S3, every server of one test shares one fresh prefix of the bucket (as instances
    of one deployment share it); a test's own `s3_*` flags win.
    """
    started: list[TusServer] = []
    fixture = REDIS_URL_FIXTURES.get(state_backend)
    redis = request.getfixturevalue(fixture) if fixture else None
    data_flags: dict[str, object] = {}
    if data_backend == "s3":
        data_flags = request.getfixturevalue("s3_server").server_flags()

    def make(**flags: object) -> TusServer:
        env = S3_CREDENTIALS if data_flags else None
        server = TusServer(tmp_path / f"data{len(started)}", redis_url=redis, env=env, **{**data_flags, **flags})
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
