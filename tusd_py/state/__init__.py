"""State stores: upload records and offsets (see `base.StateStore`)."""

from __future__ import annotations

from tusd_py.config import Config
from tusd_py.locks.base import Locker
from tusd_py.state.base import StateStore, Upload


def open_state_store(config: Config) -> tuple[StateStore, Locker]:
    """The state store and the locker that goes with it, created together: Redis (a Redis
    lease, which reads the record while acquiring) when a URL is configured, else the
    embedded SQLite store in the data dir with in-process locks."""
    if config.redis_url:
        from tusd_py.state.redis import RedisStateStore

        store = RedisStateStore.from_url(
            config.redis_url,
            prefix=config.redis_prefix,
            timeout=config.redis_timeout,
            min_replicas=config.redis_min_replicas,
            shards=config.redis_shards,
        )
        return store, store.locker()
    from tusd_py.locks.memory import MemoryLocker
    from tusd_py.state.local import LocalStateStore

    return LocalStateStore(config.data_dir / "tusd-py.sqlite3", fsync=config.fsync), MemoryLocker()


__all__ = ["StateStore", "Upload", "open_state_store"]
