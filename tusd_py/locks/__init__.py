"""Per-upload locks (see `base.Locker`)."""

from tusd_py.locks.base import Lock, Locker, LockTimeout
from tusd_py.locks.memory import MemoryLocker

__all__ = ["Lock", "LockTimeout", "Locker", "MemoryLocker"]
