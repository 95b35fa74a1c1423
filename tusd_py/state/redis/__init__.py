"""The Redis state store (standalone, Sentinel or Cluster), shared by every instance.

`store.py` `RedisStateStore`: records, offsets, claims, lengths, expiry; `finals.py`
its concatenation; `connection.py` the client, key layout, scripts and locker they share.
"""

from __future__ import annotations

from tusd_py.state.redis.store import RedisStateStore

__all__ = ["RedisStateStore"]
