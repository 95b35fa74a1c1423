"""Headless Debian Chromium for the page tests (driven by Playwright, never a downloaded browser)."""

from __future__ import annotations

import time

CHROMIUM = "/usr/bin/chromium"
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


def until(page, predicate: str, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """Poll a JS expression (or arrow function) until truthy; bounded. Not `wait_for_function`:
    Playwright evaluates its predicate with eval(), which the page's CSP (rightly) refuses."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(predicate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{predicate} still false after {timeout} s")
        time.sleep(0.1)
