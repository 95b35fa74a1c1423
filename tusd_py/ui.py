"""The browser upload page at `/`: the Uppy bundle built from clients/web into static/dist/.

The bundle is built, never committed: building the package (a wheel, `pip install .`,
`pip install -e .`, so also scripts/serve.sh and scripts/test.sh) builds it (setup.py).
Without it (a package built with TUSD_PY_BUILD_WITHOUT_PAGE) the server still runs and
`/` says how to get it.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from tusd_py.config import Config

logger = logging.getLogger("tusd_py")

DIST = Path(__file__).parent / "static" / "dist"
ASSETS = "/ui/"


def render(template: str, base_path: str) -> str:
    """Point the page at this server: its assets under ASSETS, Uppy at the creation endpoint."""
    page = template.replace('<base href="./">', f'<base href="{ASSETS}">', 1)
    return page.replace(
        '<meta name="tus-endpoint" content="">',
        f'<meta name="tus-endpoint" content="{html.escape(base_path, quote=True)}">',
        1,
    )


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
    page = render(index.read_text(encoding="utf-8"), config.base_path)

    async def upload_page(request: Request) -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    return [Route("/", upload_page), Mount(ASSETS.rstrip("/"), app=StaticFiles(directory=dist), name="ui")]
