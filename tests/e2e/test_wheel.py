"""The package as a user installs it: the wheel of scripts/build-wheel.sh in a fresh venv.

The wheel is built the way the Dockerfile builds it (the same script: an sdist, then the
wheel from that sdist, which builds the upload page with npm ci + esbuild), installed
into a new venv with nothing else from the checkout, and run from there: `tusd-py` serves
the page (its JavaScript loads and Uppy's Dashboard takes an upload in headless Chromium),
`tus-upload` uploads, and the image's HEALTHCHECK command passes against it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.browser import CHROMIUM, FLAGS, until
from tests.support import ROOT, free_port, head, stop_process, wait_for_port


pytestmark = pytest.mark.timeout(420)


def clean_env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH, no TUSD_PY_*/TUS_UPLOAD_* settings: only the venv decides what runs."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith(("TUSD_PY_", "TUS_UPLOAD_"))}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(sdist, wheel) built by scripts/build-wheel.sh, as the Dockerfile's build stage runs it."""
    out = tmp_path_factory.mktemp("wheelhouse")
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-wheel.sh"), str(out)],
        env=clean_env(PYTHON=sys.executable),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [sdist] = out.glob("tusd_py-*.tar.gz")
    [wheel] = out.glob("tusd_py-*.whl")
    return sdist, wheel


@pytest.fixture(scope="module")
def venv(built: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel and its dependencies (from pip's index and cache)."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=120)
    result = subprocess.run(
        [str(root / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(built[1])],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root


@pytest.fixture
def installed_server(venv: Path, tmp_path: Path) -> Iterator[str]:
    """`tusd-py` from the venv (not the checkout), on a free port; stopped by its PID."""
    port = free_port()
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        [str(venv / "bin" / "tusd-py"), "--port", str(port), "--dir", str(tmp_path / "data")],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=clean_env(),
        cwd=tmp_path,
    )
    log.close()
    try:
        wait_for_port(port, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


def test_sdist_carries_the_page_sources_and_the_wheel_the_built_page(built: tuple[Path, Path]) -> None:
    sdist, wheel = built
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert {"clients/web/package.json", "clients/web/package-lock.json", "clients/web/build.mjs", "clients/web/src/main.js"} <= names
    assert {"setup.py", "LICENSE", "tusd_py/py.typed", "clients/tus_upload/py.typed"} <= names
    assert not any("node_modules" in name or "static/dist" in name for name in names)  # sources, never built files

    with zipfile.ZipFile(wheel) as whl:
        files = set(whl.namelist())
        metadata = whl.read(next(n for n in files if n.endswith(".dist-info/METADATA"))).decode()
    assert {"tusd_py/static/dist/index.html", "tusd_py/static/dist/app.js", "tusd_py/static/dist/app.css"} <= files
    assert {"tusd_py/py.typed", "tus_upload/py.typed", "tus_upload/cli.py"} <= files
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in files)
    assert "License-Expression: MIT" in metadata and "Classifier: Typing :: Typed" in metadata
    assert "Project-URL: Source" in metadata


def test_the_installed_wheel_serves_the_page_and_tus_upload_works(venv: Path, installed_server: str, tmp_path: Path) -> None:
    python = str(venv / "bin" / "python")
    where = subprocess.run([python, "-c", "import tusd_py, tus_upload; print(tusd_py.__file__, tus_upload.__file__)"],
                           capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=60, check=True)
    assert all(path.startswith(str(venv)) for path in where.stdout.split()), where.stdout  # nothing from the checkout
    for command in ("tusd-py", "tus-upload"):
        version = subprocess.run([str(venv / "bin" / command), "--version"], capture_output=True, text=True, timeout=60)
        assert version.returncode == 0 and version.stdout.strip() == f"{command}, version 0.1.0", version

    # The page, its JavaScript and Uppy's Dashboard, in Debian's Chromium; one upload through it.
    assert requests.get(installed_server + "/ui/app.js", timeout=10).status_code == 200
    data = hashlib.shake_256(b"page").digest(300_000)
    (tmp_path / "page.bin").write_bytes(data)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        try:
            context.set_default_timeout(30_000)
            page = context.new_page()
            page.goto(installed_server + "/")
            until(page, "window.uppy !== undefined")
            page.locator(".uppy-Dashboard").first.wait_for(state="visible")
            page.evaluate("() => { window.done = []; window.uppy.on('upload-success', (f, r) => window.done.push(r.uploadURL)) }")
            page.set_input_files("input.uppy-Dashboard-input >> nth=0", str(tmp_path / "page.bin"))
            page.click(".uppy-StatusBar-actionBtn--upload")
            until(page, "window.done.length === 1")
            url = page.evaluate("window.done[0]")
        finally:
            context.close()
    assert requests.get(url, timeout=10).content == data

    # tus-upload from the venv, against the same server.
    (tmp_path / "cli.bin").write_bytes(data[::-1])
    upload = subprocess.run(
        [str(venv / "bin" / "tus-upload"), str(tmp_path / "cli.bin"), "-e", installed_server + "/files/", "--json"],
        capture_output=True, text=True, env=clean_env(XDG_STATE_HOME=str(tmp_path / "state")), cwd=tmp_path, timeout=120,
    )
    assert upload.returncode == 0, upload.stderr
    record = json.loads(upload.stdout)
    assert record["ok"] and record["bytes"] == len(data) and record["verified"] == "digest"
    assert requests.get(record["url"], timeout=10).content == data[::-1]
    assert int(head(record["url"]).headers["Upload-Offset"]) == len(data)


def test_dockerfile_builds_with_the_same_script_and_its_healthcheck_passes(venv: Path, installed_server: str) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert len(stages) == 2 and stages[0].startswith("node:") and "slim" in stages[1]
    assert "bash scripts/build-wheel.sh /wheels" in dockerfile  # the script this module's wheel came from
    assert re.search(r"^USER (?!root)\S+", dockerfile, re.MULTILINE)
    [check] = re.findall(r"^HEALTHCHECK [^\n]*\\\n\s*CMD (\[[^\n]*\])$", dockerfile, re.MULTILINE)
    command = json.loads(check)
    assert command[0] == "python" and "/healthz" in command[-1]
    port = installed_server.rsplit(":", 1)[1]
    started = time.monotonic()
    passed = subprocess.run([str(venv / "bin" / "python"), *command[1:]], env=clean_env(TUSD_PY_PORT=port), timeout=30)
    assert passed.returncode == 0 and time.monotonic() - started < 10
    failed = subprocess.run([str(venv / "bin" / "python"), *command[1:]], env=clean_env(TUSD_PY_PORT=str(free_port())),
                            capture_output=True, timeout=30)
    assert failed.returncode != 0  # nothing listening: unhealthy
