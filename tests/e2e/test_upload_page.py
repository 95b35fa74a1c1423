"""The Uppy upload page in headless Debian Chromium (driven by Playwright, never a downloaded browser).

Uploads go through a proxy on 127.0.0.1 that slows request bodies down, so that
"mid-upload" (pause, reload) is a state the test waits for, not a race.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.browser import CHROMIUM, FLAGS, until
from tests.support import ROOT, LocalHttpServer, free_port, head, stop_process, upload_files, wait_for_port

MiB = 1024 * 1024
DIST = ROOT / "tusd_py" / "static" / "dist"

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
    """The built page (or `directory`) served by a plain static server on its own port: another origin."""
    procs: list[subprocess.Popen] = []

    def start(directory: Path = DIST) -> str:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(directory)],
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
    until(page, "window.uppy !== undefined")
    page.evaluate(RECORD_EVENTS)
    return page


def uploaded(page) -> int:  # type: ignore[no-untyped-def]
    return page.evaluate(FILE_STATE)[0]["progress"]["bytesUploaded"] or 0


def offset(url: str) -> int:
    return int(head(url).headers["Upload-Offset"])


def upload_until_paused(page, path: Path, above: int) -> str:  # type: ignore[no-untyped-def]
    """Pick `path` in the page, start, and pause once more than `above` bytes went out; the upload's URL."""
    page.set_input_files("input.uppy-Dashboard-input >> nth=0", str(path))
    page.click(".uppy-StatusBar-actionBtn--upload")
    until(page, f"() => Object.values(window.uppy.getState().files)[0].progress.bytesUploaded > {above}")
    page.click("button[title=Pause]")
    until(page, "() => Object.values(window.uppy.getState().files)[0].isPaused")
    return page.evaluate(FILE_STATE)[0]["url"]


def test_page_uploads_pauses_resumes_and_survives_a_reload(server, browser, proxies, tmp_path: Path) -> None:
    proxy = proxies(server.port, rate=8 * MiB)  # 50 MiB take some 6 s
    data = make_file(tmp_path / "video.mp4", 50 * MiB)
    page = open_page(browser, proxy.base + "/")
    assert page.title() == "Upload files · tusd-py"

    # Pause: nothing moves, in the page or on the server.
    url = upload_until_paused(page, tmp_path / "video.mp4", 5 * MiB)
    assert url and url.startswith(proxy.url)
    time.sleep(1.0)  # the aborted PATCH is committed by now
    paused_at, paused_offset = uploaded(page), offset(url)
    time.sleep(1.5)
    assert uploaded(page) == paused_at and offset(url) == paused_offset
    assert 0 < paused_offset < len(data)
    seen_before_pause = len(page.evaluate("window.seen.progress"))

    # Resume: on from the server's offset.
    page.click("button[title=Resume]")
    until(page, f"() => Object.values(window.uppy.getState().files)[0].progress.bytesUploaded > {20 * MiB}")
    progress = page.evaluate("window.seen.progress")
    before_pause, after_pause = progress[:seen_before_pause], progress[seen_before_pause:]
    assert len(before_pause) >= 2 and before_pause == sorted(before_pause)
    assert after_pause and min(after_pause) >= paused_offset and after_pause == sorted(after_pause)

    # Reload mid-upload: Golden Retriever brings the file back, the upload goes on where it was.
    page.reload()
    until(page, "window.uppy !== undefined")
    page.evaluate(RECORD_EVENTS)
    page.get_by_text("Session restored").wait_for()
    at_reload = offset(url)
    assert 0 < at_reload < len(data)
    page.click(".uppy-StatusBar-actionBtn--upload")
    until(page, "window.seen.success.length === 1", timeout=60)
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
    until(page, "window.seen.success.length === 2")
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
    assert not any(path.is_file() and path.stat().st_size for path in upload_files(server.data_dir))


# -- issue 13, item 5: where the page sends files, what it links to, its Content-Security-Policy

class FakeEndpoint(LocalHttpServer):
    """A tus endpoint on 127.0.0.1 that records every request and answers a creation with
    `location` (CORS open, so that a browser would talk to it)."""

    path = "/files/"

    def __init__(self, location: str) -> None:
        self.requests: list[str] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, headers: dict[str, str]) -> None:
                endpoint.requests.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                self.send_response(status)
                for name, value in {
                    "Access-Control-Allow-Origin": "*",
                    "Access-Control-Allow-Methods": "POST, HEAD, PATCH, OPTIONS",
                    "Access-Control-Allow-Headers": "*",
                    "Access-Control-Expose-Headers": "Location, Upload-Offset, Upload-Length, Tus-Resumable",
                    "Tus-Resumable": "1.0.0",
                    "Content-Length": "0",
                    **headers,
                }.items():
                    self.send_header(name, value)
                self.end_headers()

            def do_OPTIONS(self) -> None:  # noqa: N802
                self._answer(204, {})

            def do_POST(self) -> None:  # noqa: N802
                self._answer(201, {"Location": location})

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(404, {})

            def do_PATCH(self) -> None:  # noqa: N802
                self._answer(404, {})

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(Handler)


WATCH_CSP = """() => {
  window.violations = []
  document.addEventListener('securitypolicyviolation', (e) => window.violations.push(e.violatedDirective + ' ' + e.blockedURI))
}"""


def test_page_refuses_a_crafted_endpoint_and_uploads_to_its_own(make_server, browser, tmp_path: Path) -> None:
    server = make_server()
    data = make_file(tmp_path / "secret.pdf", 100_000, 3)
    with FakeEndpoint(location="http://127.0.0.1:9/files/x") as attacker:
        page = open_page(browser, f"{server.base}/?endpoint={attacker.url}")
        assert page.is_visible("#refused") and page.inner_text("#refused-endpoint") == attacker.url
        assert page.inner_text("#endpoint") == server.url
        page.set_input_files("input.uppy-Dashboard-input >> nth=0", str(tmp_path / "secret.pdf"))
        page.click(".uppy-StatusBar-actionBtn--upload")
        until(page, "window.seen.success.length === 1")
        url = page.evaluate("window.seen.success")[0]
        assert url.startswith(server.url) and requests.get(url, timeout=30).content == data
        assert attacker.requests == []  # not one byte, not one request


def test_listed_endpoint_is_allowed_but_a_javascript_location_never_becomes_a_link(make_server, browser, tmp_path: Path) -> None:
    hostile = "javascript:document.title='pwned'"
    with FakeEndpoint(location=hostile) as endpoint:
        server = make_server(ui_endpoints=endpoint.url)
        (tmp_path / "empty.txt").write_bytes(b"")  # zero bytes: tus-js-client succeeds right after the POST
        page = open_page(browser, f"{server.base}/?endpoint={endpoint.url}")
        assert not page.is_visible("#refused") and page.inner_text("#endpoint") == endpoint.url
        page.set_input_files("input.uppy-Dashboard-input >> nth=0", str(tmp_path / "empty.txt"))
        page.click(".uppy-StatusBar-actionBtn--upload")
        until(page, "window.seen.success.length === 1")
        assert page.evaluate("window.seen.success") == [hostile]
        assert any(request.startswith("POST /files/") for request in endpoint.requests)  # the listed endpoint was used
        assert page.locator("#finished li").count() == 1 and "empty.txt" in page.inner_text("#finished li")
        assert page.locator("#finished a").count() == 0
        assert page.locator("a[href^='javascript:' i]").count() == 0  # nowhere on the page, Uppy's Dashboard included
        page.locator("#finished li").first.click()
        assert page.title() == "Upload files · tusd-py"
        page.reload()  # the list comes back from localStorage: still no link
        until(page, "window.uppy !== undefined")
        assert page.locator("#finished li").count() == 1 and page.locator("#finished a").count() == 0


def test_page_and_assets_carry_a_csp_the_page_works_under(make_server, browser, static_site, tmp_path: Path) -> None:
    server = make_server(ui_endpoints="http://127.0.0.1:9/files/")
    for path in ("/", "/ui/index.html", "/ui/app.js"):
        policy = requests.get(server.base + path, timeout=10).headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy and "frame-ancestors 'self'" in policy
        assert "connect-src 'self' http://127.0.0.1:9;" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    data = make_file(tmp_path / "photo.png", 300_000, 4)
    page = browser.pages[0] if browser.pages else browser.new_page()
    page.add_init_script(WATCH_CSP.join(("(", ")()")))
    page = open_page(browser, server.base + "/")
    page.set_input_files("input.uppy-Dashboard-input >> nth=0", str(tmp_path / "photo.png"))
    page.click(".uppy-StatusBar-actionBtn--upload")
    until(page, "window.seen.success.length === 1")
    assert requests.get(page.evaluate("window.seen.success")[0], timeout=30).content == data
    assert page.evaluate("window.violations") == []  # nothing the page needs is blocked

    # Another origin cannot frame the page; the operator can let one.
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    site = static_site(site_dir)
    allowed = make_server(ui_frame_ancestors=f"'self' {site}")
    assert f"frame-ancestors 'self' {site}" in requests.get(allowed.base + "/", timeout=10).headers["Content-Security-Policy"]
    (site_dir / "refused.html").write_text(f'<iframe src="{server.base}/"></iframe>')
    (site_dir / "allowed.html").write_text(f'<iframe src="{allowed.base}/"></iframe>')
    framing = browser.new_page()
    framing.goto(f"{site}/allowed.html")
    until(framing.frames[1], "() => window.uppy !== undefined")
    framing.goto(f"{site}/refused.html")
    framing.wait_for_load_state("load")
    framing.wait_for_timeout(1000)
    assert framing.frames[1].evaluate("() => typeof window.uppy") == "undefined"
