"""tusd-py on a 3-master Redis Cluster (tests/redis_topologies.py), beyond the protocol tests
that run on it as the `redis-cluster` state backend: where the keys go, and the hook streams.

Every key of one upload is in one hash slot; the uploads and the indexes' slices spread over
every master (redis_keys.KeyLayout), and post-* events over one stream per group.
"""

from __future__ import annotations

import redis
import requests
from redis.crc import key_slot

from tests.e2e.hookutil import wait_until
from tests.redis_topologies import RedisClusterNodes
from tests.support import TUS, TusServer, create, patch

STREAM = "tus-events"


def test_uploads_keys_spread_over_every_master_one_slot_per_upload(
    tmp_path, redis_cluster_nodes: RedisClusterNodes, redis_cluster_url: str
) -> None:
    server = TusServer(tmp_path / "data", redis_url=redis_cluster_url).start()
    try:
        urls = [create(server.url, 10) for _ in range(48)]
        for url in urls[:24]:
            assert patch(url, 0, b"01234").status_code == 204  # unfinished: each in its group's expiry slice
    finally:
        server.stop()
    records = redis_cluster_nodes.keys_per_node("tusd-py:upload:*")
    assert sum(len(keys) for keys in records.values()) == 48
    assert all(len(keys) >= 4 for keys in records.values()), {port: len(keys) for port, keys in records.items()}
    expiry = redis_cluster_nodes.keys_per_node("tusd-py:expiry:*")
    assert all(expiry.values()), expiry  # the expiry index is sliced over every master, no single hot slot
    slices = [key for keys in expiry.values() for key in keys]
    assert len({key_slot(key.encode()) for key in slices}) == len(slices)  # each slice in a slot of its own
    for keys in records.values():
        for key in keys:  # an upload's record, lock and expiry slice share its slot
            upload_id = key.rsplit("}", 1)[1]
            tag = key[key.index("{") : key.index("}") + 1]
            assert key_slot(f"tusd-py:lock:{tag}{upload_id}".encode()) == key_slot(key.encode())
            assert key_slot(f"tusd-py:expiry:{tag}".encode()) == key_slot(key.encode())


def test_hook_streams_are_sharded_over_the_cluster(
    tmp_path, redis_cluster_nodes: RedisClusterNodes, redis_cluster_url: str
) -> None:
    server = TusServer(tmp_path / "data", redis_url=redis_cluster_url, hooks_redis_stream=STREAM).start()
    client = redis.RedisCluster(host="127.0.0.1", port=redis_cluster_nodes.ports[0], decode_responses=True)
    try:
        urls = [create(server.url, 3) for _ in range(32)]
        for url in urls:
            assert patch(url, 0, b"abc").status_code == 204
        assert requests.delete(urls[0], headers=TUS, timeout=10).status_code == 204
        streams = [f"{STREAM}:{shard}" for shard in range(16)]
        wait_until(lambda: sum(client.xlen(name) for name in streams) >= 65)  # 32 created, 32 finished, 1 terminated
        per_stream = {name: client.xrange(name) for name in streams}
        assert sum(len(entries) for entries in per_stream.values()) == 65
        assert sum(1 for entries in per_stream.values() if entries) >= 8  # spread, not one hot stream
        for name, entries in per_stream.items():  # an upload's events stay in one stream, in order
            for _, fields in entries:
                others = [s for s, e in per_stream.items() if s != name and any(f["upload_id"] == fields["upload_id"] for _, f in e)]
                assert not others
        assert client.xlen(STREAM) == 0  # no unsharded stream
    finally:
        client.close()
        server.stop()


def move_slot(nodes: RedisClusterNodes, slot: int) -> None:
    """Migrate one hash slot, with its keys, to another master (as a resharding does)."""
    clients = {port: redis.Redis(host="127.0.0.1", port=port, decode_responses=True) for port in nodes.ports}
    try:
        ids = {port: client.cluster("myid") for port, client in clients.items()}
        source = next(port for port, client in clients.items() if client.cluster("countkeysinslot", slot) > 0)
        target = next(port for port in nodes.ports if port != source)
        clients[target].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
        clients[source].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
        keys = clients[source].execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
        clients[source].execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
        for client in clients.values():
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])
    finally:
        for client in clients.values():
            client.close()


def test_scripts_follow_a_moved_slot_and_a_flushed_script_cache(tmp_path) -> None:
    """The hiredis-packed scripts go to the master the client's slot map names; after a
    resharding that one answers MOVED, and after SCRIPT FLUSH NOSCRIPT: both are recovered."""
    nodes = RedisClusterNodes(tmp_path / "cluster").start()
    server = TusServer(tmp_path / "data", redis_url=nodes.url).start()
    try:
        data = b"0123456789" * 100
        url = create(server.url, len(data))
        assert patch(url, 0, data[:300]).status_code == 204
        key = f"tusd-py:upload:*{url.rsplit('/', 1)[1]}"
        record = next(k for keys in nodes.keys_per_node(key).values() for k in keys)
        move_slot(nodes, key_slot(record.encode()))
        assert patch(url, 300, data[300:600]).status_code == 204  # MOVED: followed, tried again
        for port in nodes.ports:
            with redis.Redis(host="127.0.0.1", port=port) as client:
                client.script_flush()
        assert patch(url, 600, data[600:]).status_code == 204  # NOSCRIPT: EVAL
        assert requests.get(url, timeout=10).content == data
    finally:
        server.stop()
        nodes.stop()
