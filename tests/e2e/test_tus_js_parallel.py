"""tus-js-client under node with `parallelUploads: 4`: four partial uploads sent at once
and one final upload, verified byte for byte through GET.

`check_parallel_upload(endpoint, directory)` is the whole check; it runs here against
one instance (both state backends). For the three-instance set-up, a test that calls
it with the cluster's load-balanced creation URL is all it takes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support import ROOT, head

JS_DIR = ROOT / "tests" / "js"
SIZE = 64 * 1024 * 1024


def tus_js_upload(endpoint: str, file: Path, parallel: int, timeout: float = 180.0) -> str:
    """Run tests/js/upload.js; returns the upload URL it printed."""
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "tus-js-client").is_dir():
        pytest.fail("node or tus-js-client is missing: run the README's test command (scripts/test.sh)")
    result = subprocess.run(
        [node, "upload.js", endpoint, str(file), str(parallel)],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def sha256_of_download(url: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with requests.get(url, stream=True, timeout=60) as response:
        assert response.status_code == 200
        for chunk in response.iter_content(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def check_parallel_upload(endpoint: str, directory: Path) -> None:
    """Upload 64 MiB of random bytes with parallelUploads 4 and check the result."""
    file = directory / "random.bin"
    data = os.urandom(SIZE)
    file.write_bytes(data)
    url = tus_js_upload(endpoint, file, parallel=4)

    response = head(url)
    assert response.status_code == 200
    assert response.headers["Upload-Offset"] == response.headers["Upload-Length"] == str(SIZE)
    concat = response.headers["Upload-Concat"]
    assert concat.startswith("final;")
    parts = concat[len("final;"):].split()
    assert len(parts) == 4  # it really was a concatenation of four partial uploads
    for part in parts:
        assert head(part).headers["Upload-Concat"] == "partial"
    assert sha256_of_download(url) == (SIZE, hashlib.sha256(data).hexdigest())


def test_parallel_uploads_4_on_64_mib(server, tmp_path: Path) -> None:
    check_parallel_upload(server.url, tmp_path)
