"""The S3 store's pure rules: part sizes, copy ranges for concatenation, object keys."""

from __future__ import annotations

import pytest

from tusd_py.storage.s3 import UploadTooLarge, part_size
from tusd_py.storage.s3.concat import copy_ranges
from tusd_py.storage.s3.keys import check_key, safe_metadata
from tusd_py.storage.s3.partsize import (
    MAX_OBJECT_SIZE,
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    part_count,
)

MiB = 1024 * 1024
GiB = 1024 * MiB


@pytest.mark.parametrize("total", [0, 1, 5 * MiB, 8 * MiB * MAX_PARTS, 8 * MiB * MAX_PARTS + 1, 100 * GiB, 3 * 1024 * GiB, MAX_OBJECT_SIZE])
def test_part_size_keeps_every_limit(total: int) -> None:
    size = part_size(total, 8 * MiB)
    assert MIN_PART_SIZE <= size <= MAX_PART_SIZE
    assert part_count(total, size) <= MAX_PARTS
    assert size == 8 * MiB or total > 8 * MiB * MAX_PARTS  # the preferred size wherever it fits


def test_part_size_never_below_the_minimum_and_refuses_what_s3_cannot_hold() -> None:
    assert part_size(10, 1) == MIN_PART_SIZE
    with pytest.raises(UploadTooLarge):
        part_size(MAX_OBJECT_SIZE + 1, 8 * MiB)
    assert part_count(0, MIN_PART_SIZE) == 1 and part_count(MIN_PART_SIZE + 1, MIN_PART_SIZE) == 2


def test_copy_ranges() -> None:
    assert copy_ranges([6 * MiB, 10]) == [(0, 0, 6 * MiB), (1, 0, 10)]
    assert copy_ranges([10, 6 * MiB]) is None  # a small part that is not the last: re-upload
    assert copy_ranges([0, 0]) is None
    assert copy_ranges([6 * MiB, 0, 1]) == [(0, 0, 6 * MiB), (2, 0, 1)]  # empty parts add nothing
    big = copy_ranges([11 * GiB])
    assert big is not None and len(big) == 3 and all(end - start <= MAX_PART_SIZE for _, start, end in big)
    assert big[-1][2] == 11 * GiB


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", ".tusd/x.info", "a\nb", "./a"])
def test_hook_keys_stay_inside_the_prefix(key: str) -> None:
    with pytest.raises(ValueError):
        check_key(key)


def test_hook_keys_and_metadata_that_are_fine() -> None:
    assert check_key("2026/report final.pdf") == "2026/report final.pdf"
    assert safe_metadata({"Owner": "Menü", "bad name": "x", "ok-1": "v"}) == {"owner": "Men?", "ok-1": "v"}
