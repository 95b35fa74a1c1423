"""Where tusd-py's records live in Redis: the key names, for one Redis or for a Redis Cluster.

On one Redis (standalone or Sentinel) the names are the ones tusd-py always used
(`<prefix>upload:<id>`, `<prefix>expiry`, ...), so an existing deployment keeps its data.

On a Redis Cluster a script may only touch keys of one hash slot, and the commit script
touches an upload's record, its lock and the expiry index together. So uploads are spread
over `shards` groups (crc32 of the id), and every key of a group, the group's own slice of
each index included, carries the group's hash tag: `<prefix>upload:{t}<id>`,
`<prefix>lock:{t}<id>`, `<prefix>expiry:{t}`, `<prefix>finals:{t}`, `<prefix>waiting:{t}<part>`,
`<prefix>unsettled:{t}<final>`, `<prefix>ready:{t}`, `<prefix>settle:{t}` (the settles owed to
final uploads in other groups, `state/redis/finals.py`), and the group's lock channel `<prefix>locks:{t}`. The tags are chosen so that their slots are
evenly spaced over the 16384 slots: a cluster whose masters hold contiguous slot ranges (as
`redis-cli --cluster create` makes them) gets the same number of groups on each master, and
no slot holds more than 1/shards of the traffic. The number of shards is fixed for the life
of a deployment (changing it renames every key).
"""

from __future__ import annotations

import zlib

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

DEFAULT_SHARDS = 16


def _tags(shards: int) -> list[str]:
    """For group k, the shortest tag `k.n` whose slot lies in the k-th of `shards` equal slot ranges."""
    tags = []
    for k in range(shards):
        low, high = k * REDIS_CLUSTER_HASH_SLOTS // shards, (k + 1) * REDIS_CLUSTER_HASH_SLOTS // shards
        n = 0
        while not low <= key_slot(f"{k}.{n}".encode()) < high:
            n += 1  # about `shards` tries: a slot is uniform over the range
        tags.append(f"{k}.{n}")
    return tags


class KeyLayout:
    """Key names for one deployment. `clustered=False`: the one-Redis names, one shard."""

    def __init__(self, prefix: str = "tusd-py:", *, clustered: bool = False, shards: int = DEFAULT_SHARDS) -> None:
        if clustered and ("{" in prefix or "}" in prefix):
            raise ValueError("the Redis key prefix may not contain { or } on a Redis Cluster (they are hash tags)")
        if clustered and not 1 <= shards <= REDIS_CLUSTER_HASH_SLOTS:
            raise ValueError(f"shards must be between 1 and {REDIS_CLUSTER_HASH_SLOTS}")
        self.prefix = prefix
        self.clustered = clustered
        self.shards = shards if clustered else 1
        self._tags = [f"{{{tag}}}" for tag in _tags(self.shards)] if clustered else [""]

    def shard_of(self, upload_id: str) -> int:
        return zlib.crc32(upload_id.encode()) % self.shards if self.clustered else 0

    def _tag(self, upload_id: str) -> str:
        return self._tags[self.shard_of(upload_id)]

    def upload(self, upload_id: str) -> str:
        return f"{self.prefix}upload:{self._tag(upload_id)}{upload_id}"

    def lock(self, upload_id: str) -> str:
        return f"{self.prefix}lock:{self._tag(upload_id)}{upload_id}"

    def waiting(self, part_id: str) -> str:
        """The final uploads waiting on a part: in the part's group."""
        return f"{self.prefix}waiting:{self._tag(part_id)}{part_id}"

    def unsettled(self, final_id: str) -> str:
        """The parts a final upload still waits on: in the final's group."""
        return f"{self.prefix}unsettled:{self._tag(final_id)}{final_id}"

    def ready(self, shard: int) -> str:
        return f"{self.prefix}ready" + (f":{self._tags[shard]}" if self.clustered else "")

    def settle(self, shard: int) -> str:
        """A Redis Cluster's settles owed by the group's uploads to final uploads in other groups."""
        return f"{self.prefix}settle" + (f":{self._tags[shard]}" if self.clustered else "")

    def expiry(self, shard: int) -> str:
        return f"{self.prefix}expiry" + (f":{self._tags[shard]}" if self.clustered else "")

    def finals(self, shard: int) -> str:
        return f"{self.prefix}finals" + (f":{self._tags[shard]}" if self.clustered else "")

    def lock_channel(self, shard: int) -> str:
        return f"{self.prefix}locks" + (f":{self._tags[shard]}" if self.clustered else "")

    def stream(self, name: str, upload_id: str) -> str:
        """A hook stream's key for an upload's events: `name` on one Redis, `name:<shard>` on a Cluster."""
        return f"{name}:{self.shard_of(upload_id)}" if self.clustered else name
