"""Metrics in several processes (PROMETHEUS_MULTIPROC_DIR): any process's /metrics sums them all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent.parent

WORKER = """
from tusd_py.metrics import Metrics
m = Metrics()
m.uploads_created.inc(2)
m.requests.labels("PATCH", "204").inc()
m.patch_duration.observe(0.2)
"""

READER = """
import sys
from tusd_py.metrics import Metrics
sys.stdout.write(Metrics().render().decode())
"""


def run(code: str, env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_values_of_all_worker_processes_are_summed(tmp_path: Path) -> None:
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    run(WORKER, env)
    run(WORKER, env)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(run(READER, env))
        for s in family.samples
    }
    assert samples[("tusd_py_uploads_created_total", ())] == 4
    assert samples[("tusd_py_requests_total", (("method", "PATCH"), ("status", "204")))] == 2
    assert samples[("tusd_py_patch_duration_seconds_count", ())] == 2
