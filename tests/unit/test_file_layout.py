"""The file store's layout: files in 4,096 shards, bounded at 1,000,000 uploads, and the
move of an older release's flat data directory into it (tusd_py/storage/file_layout.py)."""

from __future__ import annotations

import os
import secrets
from collections import Counter
from pathlib import Path

from tusd_py.storage import file_layout
from tusd_py.storage.files import FileStore


def test_a_million_uploads_leave_no_directory_large() -> None:
    for ids in ((secrets.token_hex(16) for _ in range(1_000_000)), (f"upload-{n}" for n in range(1_000_000))):
        sizes = Counter(file_layout.shard(upload_id) for upload_id in ids)  # random ids, and ids a hook numbered
        assert len(sizes) <= 4096
        assert max(sizes.values()) <= 400, max(sizes.values())  # 244 on average


def test_a_flat_directory_of_an_older_release_moves_into_its_shards(tmp_path: Path) -> None:
    uploads = {"a" * 32: os.urandom(1000), "b" * 32: b"", "chosen-by-a-hook": b"xyz"}
    for name, data in uploads.items():
        (tmp_path / name).write_bytes(data)
    others = {"tusd-py.sqlite3": b"state", "tusd-py.sqlite3-wal": b"log"}
    for name, data in others.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / f"{'c' * 32}.concat-deadbeef").write_bytes(b"half an assembly")  # a crash's left-over
    (tmp_path / "lost+found").mkdir()

    store = FileStore(tmp_path)
    for name, data in uploads.items():
        assert store.path(name).read_bytes() == data
        assert store.path(name).parent.name == file_layout.shard(name)
    for name, data in others.items():
        assert (tmp_path / name).read_bytes() == data
    assert (tmp_path / "lost+found").is_dir()
    assert sorted(path.name for path in tmp_path.iterdir() if path.is_file()) == sorted([*others, file_layout.MARKER])
    assert file_layout.migrate(tmp_path) == 0  # done once: the marker says so


def test_a_fresh_directory_is_marked_at_once(tmp_path: Path) -> None:
    assert file_layout.migrate(tmp_path) == 0
    assert (tmp_path / file_layout.MARKER).read_text() == file_layout.LAYOUT
