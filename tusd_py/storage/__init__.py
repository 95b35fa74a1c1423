"""Data stores: the bytes of uploads (see `base.DataStore`)."""

from tusd_py.storage.base import DataStore, Writer
from tusd_py.storage.files import FileStore

__all__ = ["DataStore", "FileStore", "Writer"]
