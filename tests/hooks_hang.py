"""A hooks module whose `authorize` hangs for requests with `X-Hang: 1`
(`--hooks-module tests.hooks_hang`), until the file `release` appears in
HOOKS_HANG_DIR (at most 30 s). Each hanging call first appends a line to `entered`
there, so that a test knows when the hook holds its thread."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tusd_py.hooks import HookEvent


def authorize(event: HookEvent) -> None:
    if event.request is None or event.request.headers.get("x-hang") != "1":
        return
    folder = Path(os.environ["HOOKS_HANG_DIR"])
    with open(folder / "entered", "a") as entered:
        entered.write("1\n")
    deadline = time.monotonic() + 30
    while not (folder / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
