"""FileStore.concatenate and its copy methods: kernel first, bounded fallbacks, and
never a half-assembled final file."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import pytest

from tusd_py.storage import file_concat
from tusd_py.storage.files import FileStore

PARTS = {"a": b"alpha-" * 1000, "b": b"", "c": os.urandom(3 * 1024 * 1024 + 7)}


def make_store(tmp_path: Path, **kwargs: object) -> FileStore:
    store = FileStore(tmp_path, **kwargs)  # type: ignore[arg-type]
    for name, data in PARTS.items():
        stored(store, name).write_bytes(data + b"scratch past the length")  # bytes past a part's length are ignored
    stored(store, "final").write_bytes(b"")
    return store


def stored(store: FileStore, name: str) -> Path:
    """The upload's file, in its shard (made if need be)."""
    path = store.path(name)
    path.parent.mkdir(exist_ok=True)
    return path


def concatenate(store: FileStore, order: list[str]) -> None:
    asyncio.run(store.concatenate("final", [(name, len(PARTS[name])) for name in order]))


def expected(order: list[str]) -> bytes:
    return b"".join(PARTS[name] for name in order)


def leftovers(tmp_path: Path) -> list[str]:
    return sorted(path.name for path in tmp_path.rglob("*") if ".concat-" in path.name)


@pytest.mark.parametrize("fsync", [False, True])
def test_concatenate_in_order_with_repeats(tmp_path: Path, fsync: bool) -> None:
    store = make_store(tmp_path, fsync=fsync)
    order = ["c", "a", "b", "c", "a"]
    concatenate(store, order)
    assert stored(store, "final").read_bytes() == expected(order)
    assert leftovers(tmp_path) == []


def _refuse(*args: object) -> int:
    raise OSError(errno.EXDEV, "cross-device")


def test_falls_back_to_sendfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real_sendfile = os.sendfile

    def counting_sendfile(*args: int) -> int:
        calls.append(args[3])
        return real_sendfile(*args)

    monkeypatch.setattr(os, "copy_file_range", _refuse)
    monkeypatch.setattr(os, "sendfile", counting_sendfile)
    store = make_store(tmp_path)
    concatenate(store, ["a", "c", "a"])
    assert stored(store, "final").read_bytes() == expected(["a", "c", "a"])
    assert calls  # the kernel copy through sendfile did the work


def test_falls_back_to_a_bounded_buffer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    real_pread = os.pread

    def counting_pread(fd: int, size: int, offset: int) -> bytes:
        sizes.append(size)
        return real_pread(fd, size, offset)

    monkeypatch.setattr(os, "copy_file_range", _refuse)
    monkeypatch.setattr(os, "sendfile", lambda *args: (_ for _ in ()).throw(OSError(errno.EINVAL, "no")))
    monkeypatch.setattr(os, "pread", counting_pread)
    store = make_store(tmp_path)
    concatenate(store, ["c", "a"])
    assert stored(store, "final").read_bytes() == expected(["c", "a"])
    assert sizes and max(sizes) <= 1024 * 1024  # one bounded buffer, never a whole part


def test_a_short_part_fails_and_leaves_the_final_file_untouched(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    stored(store, "final").write_bytes(b"before")
    stored(store, "short").write_bytes(b"12345")
    with pytest.raises(OSError):
        asyncio.run(store.concatenate("final", [("a", len(PARTS["a"])), ("short", 10)]))
    assert stored(store, "final").read_bytes() == b"before"
    assert leftovers(tmp_path) == []


def test_a_missing_part_fails_and_leaves_the_final_file_untouched(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    stored(store, "final").write_bytes(b"before")
    with pytest.raises(FileNotFoundError):
        asyncio.run(store.concatenate("final", [("a", len(PARTS["a"])), ("nope", 1)]))
    assert stored(store, "final").read_bytes() == b"before"
    assert leftovers(tmp_path) == []


def test_other_errors_are_not_swallowed_by_the_fallbacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "copy_file_range", lambda *args: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    store = make_store(tmp_path)
    with pytest.raises(OSError) as raised:
        concatenate(store, ["a"])
    assert raised.value.errno == errno.ENOSPC
    assert leftovers(tmp_path) == []


def test_copy_range_writes_at_the_position(tmp_path: Path) -> None:
    source, target = tmp_path / "s", tmp_path / "t"
    source.write_bytes(b"0123456789")
    target.write_bytes(b"abcdefghij")
    with open(source, "rb") as src, open(target, "r+b") as dst:
        file_concat.copy_range(src.fileno(), dst.fileno(), 4, 3)
    assert target.read_bytes() == b"abc0123hij"


def test_left_overs_of_an_earlier_attempt_are_removed(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    stored(store, "final").with_name("final.concat-deadbeef").write_bytes(b"half an assembly")
    stored(store, "other").with_name("other.concat-deadbeef").write_bytes(b"another final's")
    concatenate(store, ["a"])
    assert leftovers(tmp_path) == ["other.concat-deadbeef"]
