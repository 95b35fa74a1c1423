"""The upload page route: rendered for this server, optional, and harmless when not built."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tusd_py import ui
from tusd_py.app import create_app
from tusd_py.config import Config

TEMPLATE = (
    '<html><head><base href="./"><meta name="tus-endpoint" content="">'
    '<link rel="stylesheet" href="app.css"></head><body><script src="app.js"></script></body></html>'
)


@pytest.fixture
def dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "dist"
    folder.mkdir()
    (folder / "index.html").write_text(TEMPLATE)
    (folder / "app.js").write_text("console.log('uppy')")
    monkeypatch.setattr(ui, "DIST", folder)
    return folder


def client(tmp_path: Path, **options: object) -> TestClient:
    return TestClient(create_app(Config(data_dir=tmp_path / "data", **options)))  # type: ignore[arg-type]


def test_page_points_at_the_servers_endpoint_and_assets(dist: Path, tmp_path: Path) -> None:
    with client(tmp_path, base_path="/up loads/") as http:
        page = http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<base href="/ui/">' in page.text
        assert '<meta name="tus-endpoint" content="/up loads/">' in page.text
        asset = http.get("/ui/app.js")
        assert asset.status_code == 200 and asset.text == "console.log('uppy')"


def test_endpoint_is_escaped_into_the_page(dist: Path) -> None:
    page = ui.render(TEMPLATE, '/a"><script>x</script>/')
    assert "<script>x" not in page
    assert 'content="/a&quot;&gt;&lt;script&gt;x&lt;/script&gt;/"' in page


def test_no_ui_keeps_the_greeting(dist: Path, tmp_path: Path) -> None:
    with client(tmp_path, ui=False) as http:
        response = http.get("/")
        assert response.text.startswith("tusd-py: a tus 1.0.0 server")
        assert http.get("/ui/app.js").status_code == 404


def test_unbuilt_page_says_how_to_build_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ui, "DIST", tmp_path / "nothing")
    with client(tmp_path) as http:
        response = http.get("/")
        assert response.status_code == 200
        assert "not built" in response.text and "scripts/serve.sh" in response.text


def test_base_path_root_leaves_no_room_for_the_page(dist: Path) -> None:
    assert ui.ui_routes(Config(base_path="/")) == []


def test_listed_endpoints_go_into_the_page_and_its_policy(dist: Path) -> None:
    template = TEMPLATE.replace("</head>", '<meta name="tus-endpoints" content=""></head>')
    page = ui.render(template, "/files/", ("https://a.example/files/", "http://127.0.0.1:8080/up/"))
    assert '<meta name="tus-endpoints" content="https://a.example/files/ http://127.0.0.1:8080/up/">' in page
    policy = ui.content_security_policy(Config(ui_endpoints=("https://a.example/files/", "http://127.0.0.1:8080/up/")))
    assert "connect-src 'self' http://127.0.0.1:8080 https://a.example;" in policy
    assert policy.endswith("frame-ancestors 'self'")


@pytest.mark.parametrize(
    "options",
    [
        {"ui_endpoints": ("javascript:alert(1)",)},
        {"ui_endpoints": ("/files/",)},
        {"ui_endpoints": ("https://a.example/; script-src *",)},
        {"ui_endpoints": ('https://a.example/"><script>',)},
        {"ui_frame_ancestors": "'self'; script-src *"},
        {"ui_frame_ancestors": "'unsafe-inline'"},
        {"ui_frame_ancestors": ""},
    ],
)
def test_nothing_can_be_injected_into_the_policy(options: dict) -> None:
    with pytest.raises(ValueError):
        Config(**options)
