"""Where unfinished uploads are remembered between runs, so a second run resumes them.

It is a tuspy `Storage` (keyed by tuspy's file fingerprint), but each entry also
holds what tuspy's does not: the file's size and whole-content digest, and every
part URL of a parallel upload. An entry whose size or digest no longer matches
the file is stale and never resumed (tuspy's fingerprint only reads the first
64 KiB), and entries of finished uploads are removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from tusclient.fingerprint.fingerprint import Fingerprint
from tusclient.storage.interface import Storage


@dataclass
class Entry:
    urls: list[str]  # one per part; a single upload has one
    size: int
    digest: str  # "algorithm:hex" of the whole file


def default_path() -> Path:
    from platformdirs import user_state_path

    return user_state_path("tus-upload") / "uploads.json"


def fingerprint(path: Path) -> str:
    with open(path, "rb") as stream:
        return Fingerprint().get_fingerprint(stream)


class ResumeStore(Storage):
    """A JSON file of entries; every change is a locked read-modify-write and an atomic replace,
    so several `tus-upload` processes (and the threads of one) can share it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = json.loads(self.path.read_text()) if self.path.exists() else {}
            except (OSError, ValueError):
                data = {}  # an unreadable store only costs resuming, never an upload
            entries = data.setdefault("uploads", {})
            before = json.dumps(entries, sort_keys=True)
            yield entries
            if json.dumps(entries, sort_keys=True) != before:
                fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".uploads-")
                with os.fdopen(fd, "w") as out:
                    json.dump({"version": 1, "uploads": entries}, out, indent=1, sort_keys=True)
                os.replace(tmp, self.path)

    def get(self, key: str) -> Entry | None:
        with self._locked() as entries:
            raw = entries.get(key)
        try:
            return Entry(**raw) if raw else None
        except TypeError:
            return None

    def put(self, key: str, entry: Entry) -> None:
        with self._locked() as entries:
            entries[key] = asdict(entry)

    def set_part(self, key: str, index: int, url: str) -> None:
        with self._locked() as entries:
            if key in entries:
                entries[key]["urls"][index] = url

    # tuspy's Storage interface: the URL of a single upload.
    def get_item(self, key: str) -> str | None:
        entry = self.get(key)
        return entry.urls[0] if entry and entry.urls else None

    def set_item(self, key: str, url: str) -> None:
        with self._locked() as entries:
            entries.setdefault(key, {"urls": [url], "size": -1, "digest": ""})["urls"][0] = url

    def remove_item(self, key: str) -> None:
        with self._locked() as entries:
            entries.pop(key, None)
