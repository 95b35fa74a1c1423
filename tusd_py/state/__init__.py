"""State stores: upload records and offsets (see `base.StateStore`)."""

from __future__ import annotations

from tusd_py.config import Config
from tusd_py.state.base import StateStore, Upload


def open_state_store(config: Config) -> StateStore:
    """Redis when a URL is configured, else the embedded SQLite store in the data dir."""
    if config.redis_url:
        from tusd_py.state.redis import RedisStateStore

        return RedisStateStore.from_url(
            config.redis_url,
            prefix=config.redis_prefix,
            timeout=config.redis_timeout,
            min_replicas=config.redis_min_replicas,
            shards=config.redis_shards,
        )
    from tusd_py.state.local import LocalStateStore

    return LocalStateStore(config.data_dir / "tusd-py.sqlite3", fsync=config.fsync)


__all__ = ["StateStore", "Upload", "open_state_store"]
