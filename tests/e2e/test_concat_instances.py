"""Concatenation across instances: two tusd-py processes sharing one redis-server (or one
3-master Redis Cluster) and one data directory, parts written through both, final uploads
completed once."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.conftest import REDIS_URL_FIXTURES
from tests.e2e.test_concat import PARTIAL, create_final, wait_for_offset
from tests.support import TusServer, create, head, patch


@pytest.fixture(params=["redis", "redis-cluster"])
def instances(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[list[TusServer]]:
    redis_url = request.getfixturevalue(REDIS_URL_FIXTURES[request.param])
    shared = tmp_path / "shared"
    servers = [TusServer(shared, redis_url=redis_url, sweep_interval=0.5) for _ in range(2)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def assembled(servers: list[TusServer]) -> list[str]:
    """Ids of final uploads assembled, once per log line, from every instance."""
    return [match for server in servers for match in re.findall(r"final upload (\w+) assembled", server.log())]


def test_parts_written_through_both_instances(instances: list[TusServer]) -> None:
    a, b = instances
    data = os.urandom(300_000)
    part = create(a.url, len(data), **PARTIAL)
    part_on_b = part.replace(a.url, b.url)
    assert patch(part, 0, data[:100_000]).status_code == 204
    assert patch(part_on_b, 100_000, data[100_000:]).status_code == 204
    other = create(b.url, 3, **PARTIAL)
    assert patch(other, 0, b"end").status_code == 204
    final = create_final(b.url, [part, other])  # URLs naming the other instance's host: only the ids count
    response = head(final.replace(b.url, a.url))
    assert response.headers["Upload-Offset"] == str(len(data) + 3)
    assert requests.get(final.replace(b.url, a.url), timeout=10).content == data + b"end"


def test_last_parts_finishing_together_on_two_instances_assemble_once(instances: list[TusServer]) -> None:
    a, b = instances
    rounds = 6
    finals, expected, last_steps = [], [], []
    for _ in range(rounds):
        first, second = os.urandom(50_000), os.urandom(40_000)
        url_a = create(a.url, len(first), **PARTIAL)
        url_b = create(b.url, len(second), **PARTIAL)
        assert patch(url_a, 0, first[:-1]).status_code == 204
        assert patch(url_b, 0, second[:-1]).status_code == 204
        finals.append(create_final(a.url, [url_a, url_b]))
        expected.append(first + second)
        last_steps += [(url_a, len(first) - 1, first[-1:]), (url_b, len(second) - 1, second[-1:])]
    # Both parts of each final finish at (nearly) the same time, one on each instance.
    with ThreadPoolExecutor(max_workers=4) as pool:
        codes = list(pool.map(lambda step: patch(*step).status_code, last_steps))
    assert codes == [204] * len(last_steps)
    for final, data in zip(finals, expected):
        response = wait_for_offset(final)
        assert response.headers.get("Upload-Offset") == str(len(data))
        assert requests.get(final.replace(a.url, b.url), timeout=10).content == data
    final_ids = sorted(url.rsplit("/", 1)[1] for url in finals)
    assert sorted(assembled(instances)) == final_ids  # each exactly once, across both instances
