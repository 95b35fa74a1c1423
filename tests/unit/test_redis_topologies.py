"""The key layout (tusd_py/redis_keys.py) and the URL forms (tusd_py/redis_connect.py)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.crc import key_slot

from tusd_py.redis_connect import connect, is_clustered
from tusd_py.redis_keys import KeyLayout


def test_one_redis_keeps_the_names_existing_deployments_have() -> None:
    layout = KeyLayout("tusd-py:")
    assert layout.upload("abc") == "tusd-py:upload:abc"
    assert layout.lock("abc") == "tusd-py:lock:abc"
    assert layout.waiting("abc") == "tusd-py:waiting:abc"
    assert layout.expiry(0) == "tusd-py:expiry" and layout.finals(0) == "tusd-py:finals"
    assert layout.lock_channel(0) == "tusd-py:locks" and layout.shards == 1
    assert layout.stream("events", "abc") == "events"


def test_cluster_groups_share_one_slot_each_spread_evenly_over_three_masters() -> None:
    layout = KeyLayout("tusd-py:", clustered=True, shards=16)
    for upload_id in ("a", "b", "0123456789abcdef"):
        shard = layout.shard_of(upload_id)
        slots = {key_slot(k.encode()) for k in (layout.upload(upload_id), layout.lock(upload_id), layout.expiry(shard),
                                                layout.finals(shard), layout.lock_channel(shard), layout.waiting(upload_id))}
        assert len(slots) == 1
    slots = [key_slot(layout.expiry(shard).encode()) for shard in range(16)]
    masters = [sum(1 for slot in slots if low <= slot <= high) for low, high in ((0, 5460), (5461, 10922), (10923, 16383))]
    assert masters in ([5, 6, 5], [6, 5, 5], [5, 5, 6]), masters  # redis-cli --cluster create's ranges
    assert len({layout.shard_of(f"id{i}") for i in range(500)}) == 16


def test_a_prefix_with_hash_tag_braces_is_refused_on_a_cluster() -> None:
    with pytest.raises(ValueError, match="may not contain"):
        KeyLayout("t{x}:", clustered=True)


def test_url_forms() -> None:
    assert isinstance(connect("redis://127.0.0.1:6379/0", timeout=1), Redis)
    sentinel = connect("redis+sentinel://:pw@h1:26379,h2:26380/mymaster/2?sentinel_password=spw", timeout=1)
    assert isinstance(sentinel, Redis) and isinstance(sentinel.connection_pool, SentinelConnectionPool)
    assert sentinel.connection_pool.service_name == "mymaster"
    assert sentinel.connection_pool.connection_kwargs["db"] == 2
    assert sentinel.connection_pool.connection_kwargs["password"] == "pw"
    manager = sentinel.connection_pool.sentinel_manager
    assert [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"]) for s in manager.sentinels] == [("h1", 26379), ("h2", 26380)]
    assert manager.sentinels[0].connection_pool.connection_kwargs["password"] == "spw"
    cluster = connect("rediss+cluster://h1:7000,h2:7001?ssl_cert_reqs=none", timeout=1)
    assert isinstance(cluster, RedisCluster)
    assert is_clustered("redis+cluster://h1:7000") and not is_clustered("redis+sentinel://h1:1/m")


@pytest.mark.parametrize(
    "url, message",
    [
        ("redis+sentinel://h1:26379", "path must be"),
        ("redis+sentinel://h1:26379/m/x", "path must be"),
        ("redis+sentinel://h1/m", "not host:port"),
        ("redis+cluster://h1:7000/3", "only database 0"),
        ("redis+cluster://h1:7000?bogus=1", "unknown option"),
        ("redis+cluster://:secret@h1:7000?ssl_certfile=x", "need a rediss"),
    ],
)
def test_bad_url_forms_are_refused_clearly(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        connect(url, timeout=1)
    assert "secret" not in str(error.value)
