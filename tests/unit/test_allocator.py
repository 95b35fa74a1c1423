"""tusd-py sets glibc's allocator thresholds in itself (tusd_py/allocator.py)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")

PROBE = "import os; from tusd_py import allocator; print(allocator.tune(), os.environ.get('MALLOC_MMAP_THRESHOLD_'), os.environ.get('MALLOC_TRIM_THRESHOLD_'))"


def run_probe(**env: str) -> list[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**base, **env}, cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_tune_sets_the_thresholds_and_passes_them_to_children() -> None:
    assert run_probe() == ["True", "4194304", "1073741824"]


def test_values_from_the_environment_win() -> None:
    assert run_probe(MALLOC_MMAP_THRESHOLD_="131072") == ["True", "131072", "1073741824"]


def test_cli_with_env_flags_still_works() -> None:
    """The tuning happens inside `main`, after click read flags and TUSD_PY_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "TUSD_PY_"))}
    env["TUSD_PY_MAX_SIZE"] = "not-a-number"
    result = subprocess.run([sys.executable, "-m", "tusd_py"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "--max-size" in result.stderr
