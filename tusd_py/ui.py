"""The browser upload page at `/`: the Uppy bundle built from clients/web into static/dist/.

The bundle is built, never committed: building the package (a wheel, `pip install .`,
`pip install -e .`, so also scripts/serve.sh and scripts/test.sh) builds it (setup.py).
Without it (a package built with TUSD_PY_BUILD_WITHOUT_PAGE) the server still runs and
`/` says how to get it.

The page is on the server's own origin, so what it does counts as the server's:
- it uploads only to this server's endpoint, or to one the operator listed
  (`--ui-endpoints`) when `?endpoint=` names it; a crafted link cannot send a
  visitor's files elsewhere (the page checks, and the policy below enforces it);
- its answers (the page and its assets) carry a Content-Security-Policy that
  allows only what the page needs: its own scripts and styles, images and media
  from blob:/data: (Uppy's previews), connections to this origin and the listed
  endpoints' origins, and framing by `--ui-frame-ancestors` (default `'self'`).
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tusd_py.config import Config

logger = logging.getLogger("tusd_py")

DIST = Path(__file__).parent / "static" / "dist"
ASSETS = "/ui/"


def render(template: str, base_path: str, endpoints: tuple[str, ...] = ()) -> str:
    """Point the page at this server: its assets under ASSETS, Uppy at the creation endpoint,
    and the other endpoints `?endpoint=` may name."""
    page = template.replace('<base href="./">', f'<base href="{ASSETS}">', 1)
    page = page.replace(
        '<meta name="tus-endpoint" content="">',
        f'<meta name="tus-endpoint" content="{html.escape(base_path, quote=True)}">',
        1,
    )
    return page.replace(
        '<meta name="tus-endpoints" content="">',
        f'<meta name="tus-endpoints" content="{html.escape(" ".join(endpoints), quote=True)}">',
        1,
    )


def content_security_policy(config: Config) -> str:
    """What the page needs and nothing more (config.py checked the endpoints and ancestors)."""
    origins = sorted({"{0.scheme}://{0.netloc}".format(urlsplit(url)) for url in config.ui_endpoints})
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' blob: data:",
            "media-src 'self' blob:",
            "font-src 'self' data:",
            " ".join(("connect-src 'self'", *origins)),
            "base-uri 'self'",
            "form-action 'none'",
            f"frame-ancestors {config.ui_frame_ancestors}",
        )
    )


class WithHeaders:
    """Adds `headers` to every response of `app` (the page's assets: StaticFiles)."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self.headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *self.headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def ui_routes(config: Config, dist: Path | None = None) -> list[BaseRoute]:
    """Routes for `/` and the assets, or none (the UI is off, or `/` is the tus endpoint)."""
    dist = dist or DIST
    if not config.ui:
        return []
    if config.base_path == "/":
        logger.warning("no upload page: the base path / leaves no room for it")
        return []
    index = dist / "index.html"
    if not index.is_file():
        logger.warning("the upload page is not built (%s is missing): / shows how to build it", index)

        async def not_built(request: Request) -> Response:
            return PlainTextResponse(
                "tusd-py: the upload page is not built (this tusd-py was built without npm).\n"
                "Install tusd-py from a wheel, or build it where npm is installed (pip install .;\n"
                "in a checkout, scripts/serve.sh), then restart.\n"
                f"Uploads go to {config.base_path} all the same.\n"
            )

        return [Route("/", not_built)]
    page = render(index.read_text(encoding="utf-8"), config.base_path, config.ui_endpoints)
    policy = {"Content-Security-Policy": content_security_policy(config)}

    async def upload_page(request: Request) -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache", **policy})

    assets = WithHeaders(StaticFiles(directory=dist), policy)  # index.html is there too
    return [Route("/", upload_page), Mount(ASSETS.rstrip("/"), app=assets, name="ui")]
