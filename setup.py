"""Builds the upload page into the package: a `build_py` that runs esbuild first.

pyproject.toml holds the metadata; this file only adds the page. setuptools runs
`build_py` for every wheel (`python -m build`, `pip wheel .`, `pip install .`) and,
in editable mode, for `pip install -e .`, so every installed tusd-py has its page:
the bundle in tusd_py/static/dist/ is (re)built from clients/web (`npm ci`, which
keeps to the lock file, then `npm run build`) when it is missing or older than any
of its sources, and package-data puts it into the wheel. An sdist carries those
sources and the lock file (MANIFEST.in), never the bundle, so a wheel built from it
builds the page the same way. The bundle and node_modules stay out of git.

Without npm the build stops with a message that says so, unless
TUSD_PY_BUILD_WITHOUT_PAGE=1 asks for a package without the page (the server then
answers at / that it has none). pip shows a failing build's message, but hides the
output of one that succeeds: a warning nobody sees would be "silently".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
WEB = ROOT / "clients" / "web"
DIST = ROOT / "tusd_py" / "static" / "dist"
WITHOUT_PAGE = "TUSD_PY_BUILD_WITHOUT_PAGE"


def page_sources() -> list[Path]:
    return [WEB / "package.json", WEB / "package-lock.json", WEB / "build.mjs", *sorted(p for p in (WEB / "src").rglob("*") if p.is_file())]


def page_is_fresh() -> bool:
    """The bundle exists and is newer than every source of the page."""
    built = [p for p in DIST.glob("*") if p.is_file()]
    if not (DIST / "index.html").is_file() or not built:
        return False
    oldest = min(p.stat().st_mtime for p in built)
    return all(source.stat().st_mtime <= oldest for source in page_sources())


def build_page() -> None:
    if not (WEB / "package.json").is_file():
        raise SystemExit(f"tusd-py: {WEB} is missing: the upload page's sources must be part of the source tree")
    if page_is_fresh():
        return
    npm = shutil.which("npm")
    if npm is None:
        state = "is older than its sources in clients/web" if (DIST / "index.html").is_file() else "is not built"
        raise SystemExit(
            f"tusd-py: the upload page (tusd_py/static/dist/) {state}, and npm is not installed to build it.\n"
            "  Install Node.js and npm (Debian: apt-get install nodejs npm) and build again, or set\n"
            f"  {WITHOUT_PAGE}=1 to build tusd-py without its upload page (the server then says so at /)."
        )
    marker = WEB / "node_modules" / ".package-lock.json"  # npm writes it on every install
    if not marker.is_file() or (WEB / "package-lock.json").stat().st_mtime > marker.stat().st_mtime:
        print("tusd-py: npm ci in clients/web (the upload page's packages, as the lock file lists them)", file=sys.stderr)
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=WEB, check=True)
    print("tusd-py: building the upload page into tusd_py/static/dist/", file=sys.stderr)
    subprocess.run([npm, "run", "--silent", "build"], cwd=WEB, check=True)


class BuildPyWithPage(build_py):
    """`build_py` (also run in editable mode) that first makes the page's bundle."""

    def run(self) -> None:
        if os.environ.get(WITHOUT_PAGE, "").strip().lower() in ("1", "true", "yes"):
            print(f"tusd-py: {WITHOUT_PAGE} is set: building without (re)building the upload page", file=sys.stderr)
        else:
            build_page()
        super().run()


setup(cmdclass={"build_py": BuildPyWithPage})
