"""The Uppy upload page in headless Debian Chromium (driven by Playwright, never a downloaded browser).

Uploads go through a proxy on 127.0.0.1 that slows request bodies down, so that
"mid-upload" (pause, reload) is a state the test waits for, not a race.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.support import ROOT, head, stop_process, wait_for_port, free_port

MiB = 1024 * 1024
CHROMIUM = "/usr/bin/chromium"
DIST = ROOT / "tusd_py" / "static" / "dist"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Records Uppy's events in the page (again after each reload).
RECORD_EVENTS = """() => {
  window.seen = { progress: [], success: [], errors: [] }
  window.uppy.on('upload-progress', (file, p) => window.seen.progress.push(p.bytesUploaded))
  window.uppy.on('upload-success', (file, r) => window.seen.success.push(r.uploadURL))
  window.uppy.on('upload-error', (file, error) => window.seen.errors.push(String(error)))
}"""
FILE_STATE = "() => Object.values(window.uppy.getState().files).map(f => ({name: f.name, progress: f.progress, isPaused: !!f.isPaused, url: f.tus && f.tus.uploadUrl}))"


@pytest.fixture
def state_backend() -> str:
    return "embedded"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator:
    """Debian's Chromium with a fresh profile; stopped with the test."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run the README's test command (it installs Debian's chromium)")
    if not (DIST / "index.html").exists():
        pytest.fail("the upload page is not built: run scripts/test.sh (npm ci + npm run build in clients/web)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        context.set_default_timeout(30_000)
        try:
            yield context
        finally:
            context.close()



@pytest.fixture
def static_site() -> Iterator:
    """The built page served by a plain static server on its own port: another origin."""
    procs: list[subprocess.Popen] = []

    def start() -> str:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(DIST)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        wait_for_port(port, proc=proc)
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        stop_process(proc)


def make_file(path: Path, size: int, seed: int = 0) -> bytes:
    data = hashlib.shake_256(f"{seed}:{size}".encode()).digest(size)
    path.write_bytes(data)
    return data


def open_page(context, url: str):  # type: ignore[no-untyped-def]
    page = context.pages[0] if context.pages else context.new_page()
    page.goto(url)
    page.wait_for_function("window.uppy !== undefined")
    page.evaluate(RECORD_EVENTS)
    return page


def uploaded(page) -> int:  # type: ignore[no-untyped-def]
    return page.evaluate(FILE_STATE)[0]["progress"]["bytesUploaded"] or 0


def offset(url: str) -> int:
    return int(head(url).headers["Upload-Offset"])


def test_page_uploads_pauses_resumes_and_survives_a_reload(server, browser, proxies, tmp_path: Path) -> None:
    proxy = proxies(server.port, rate=8 * MiB)  # 50 MiB take some 6 s
    data = make_file(tmp_path / "video.mp4", 50 * MiB)
    page = open_page(browser, proxy.base + "/")
    assert page.title() == "Upload files · tusd-py"

    page.set_input_files("input.uppy-Dashboard-input >> nth=0", str(tmp_path / "video.mp4"))
    page.click(".uppy-StatusBar-actionBtn--upload")
    page.wait_for_function(f"() => Object.values(window.uppy.getState().files)[0].progress.bytesUploaded > {5 * MiB}")

    # Pause: nothing moves, in the page or on the server.
    page.click("button[title=Pause]")
    page.wait_for_function("() => Object.values(window.uppy.getState().files)[0].isPaused")
    url = page.evaluate(FILE_STATE)[0]["url"]
    assert url and url.startswith(proxy.url)
    time.sleep(1.0)  # the aborted PATCH is committed by now
    paused_at, paused_offset = uploaded(page), offset(url)
    time.sleep(1.5)
    assert uploaded(page) == paused_at and offset(url) == paused_offset
    assert 0 < paused_offset < len(data)
    seen_before_pause = len(page.evaluate("window.seen.progress"))

    # Resume: on from the server's offset.
    page.click("button[title=Resume]")
    page.wait_for_function(f"() => Object.values(window.uppy.getState().files)[0].progress.bytesUploaded > {20 * MiB}")
    progress = page.evaluate("window.seen.progress")
    before_pause, after_pause = progress[:seen_before_pause], progress[seen_before_pause:]
    assert len(before_pause) >= 2 and before_pause == sorted(before_pause)
    assert after_pause and min(after_pause) >= paused_offset and after_pause == sorted(after_pause)

    # Reload mid-upload: Golden Retriever brings the file back, the upload goes on where it was.
    page.reload()
    page.wait_for_function("window.uppy !== undefined")
    page.evaluate(RECORD_EVENTS)
    page.get_by_text("Session restored").wait_for()
    at_reload = offset(url)
    assert 0 < at_reload < len(data)
    page.click(".uppy-StatusBar-actionBtn--upload")
    page.wait_for_function("window.seen.success.length === 1", timeout=60_000)
    assert page.evaluate("window.seen.success") == [url]  # the same upload, not a new one
    after_reload = page.evaluate("window.seen.progress")
    assert after_reload and min(after_reload) >= at_reload  # resumed, not restarted
    assert page.evaluate("window.seen.errors") == []

    link = page.locator("#finished a").first
    assert link.get_attribute("href") == url and link.inner_text() == "video.mp4"
    got = requests.get(url, timeout=60)
    assert got.content == data  # byte for byte


def test_page_on_another_origin_uploads_through_cors(make_server, browser, static_site, tmp_path: Path) -> None:
    server = make_server()
    site = static_site()
    assert site.rsplit(":", 1)[1] != str(server.port)
    files = {"notes.txt": make_file(tmp_path / "notes.txt", 300_000, 1), "photo.jpg": make_file(tmp_path / "photo.jpg", 2 * MiB, 2)}
    page = open_page(browser, f"{site}/index.html?endpoint={server.url}")
    assert page.inner_text("#endpoint") == server.url

    page.set_input_files("input.uppy-Dashboard-input >> nth=0", [str(tmp_path / name) for name in files])
    page.click(".uppy-StatusBar-actionBtn--upload")
    page.wait_for_function("window.seen.success.length === 2")
    assert page.evaluate("window.seen.errors") == []
    links = {a.inner_text(): a.get_attribute("href") for a in page.locator("#finished a").all()}
    assert set(links) == set(files)
    for name, data in files.items():
        assert links[name].startswith(server.url)
        assert requests.get(links[name], timeout=30).content == data


def test_page_on_an_origin_the_server_does_not_allow_fails(make_server, browser, static_site, tmp_path: Path) -> None:
    """The control for the test above: the same page, but CORS allows only another origin."""
    server = make_server(cors_origins="http://127.0.0.1:9")
    site = static_site()
    make_file(tmp_path / "a.txt", 1000)
    page = open_page(browser, f"{site}/index.html?endpoint={server.url}")
    blocked = []
    page.on("console", lambda message: blocked.append(message.text) if "CORS policy" in message.text else None)
    page.set_input_files("input.uppy-Dashboard-input >> nth=0", str(tmp_path / "a.txt"))
    page.click(".uppy-StatusBar-actionBtn--upload")
    deadline = time.monotonic() + 30
    while not blocked and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert blocked, "the browser did not block the request"
    assert page.evaluate("window.seen.success") == []
    assert not any(path.is_file() and path.stat().st_size for path in server.data_dir.glob("*") if "." not in path.name)
