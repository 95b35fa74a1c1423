"""What `tus-upload` shows on stderr: bars on a terminal, one line per file elsewhere.

On a terminal, a bar per file and one for the total, with bytes, rate and time left,
redrawn as bytes go. Anywhere else (a CI log, a pipe, a file) redrawn bars are noise,
so each file gets one line when it is done (bytes, time, rate, digest, how it was
verified) and the run one total line at the end.

Every text goes through `printable` first: URLs, error bodies and other text from a
server (or a file name) could carry ESC sequences or other C0/C1 controls that move
the cursor, retitle the terminal or forge lines; they are shown escaped (`\\x1b`).
"""

from __future__ import annotations

import re
import time
from typing import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from tus_upload.files import LocalFile
from tus_upload.transfer import Result

# C0, DEL and C1 controls, and the bidirectional overrides that reorder what is shown.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
VERIFIED = {
    "digest": "verified against the server's bytes by its digest, nothing downloaded",
    "download": "verified against the server's bytes, read back",
    "off": "not verified",
}


def printable(text: str) -> str:
    """`text` with every control character escaped (`\\x1b`, `\\x9b`, `\\u202e`), nothing else changed."""

    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _UNPRINTABLE.sub(escape, text)


def size_text(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def summary(size: int, seconds: float) -> str:
    rate = size / seconds if seconds > 0 else 0.0
    return f"{size_text(size)} in {seconds:.1f}s, {size_text(rate)}/s"


class Display:
    """Progress and notes on stderr; nothing but errors with `quiet`."""

    def __init__(self, quiet: bool, total: int) -> None:
        self.console = Console(stderr=True, highlight=False)
        self.quiet = quiet
        self.bars = self.console.is_terminal and not quiet
        self.progress = Progress(
            TextColumn("{task.description}", table_column=None),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.bars,
        )
        self.total = self.progress.add_task("total", total=total)
        self._done = 0  # bytes of files already finished
        self._files = 0
        self._failed = 0
        self._began = time.monotonic()

    def __enter__(self) -> Display:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
        if not self.bars and not self.quiet and self._files:
            failed = f", {self._failed} failed" if self._failed else ""
            self.note(f"total: {self._files} file(s), {summary(self._done, time.monotonic() - self._began)}{failed}")

    def _print(self, message: str, style: str | None = None) -> None:
        self.progress.console.print(printable(message), markup=False, highlight=False, soft_wrap=True, style=style)

    def note(self, message: str) -> None:
        if not self.quiet:
            self._print(message)

    def error(self, message: str) -> None:
        self._print(message, style="bold red")

    def file(self, file: LocalFile) -> tuple[TaskID, Callable[[int], None]]:
        task = self.progress.add_task(printable(file.relative), total=file.size)

        def update(position: int) -> None:
            self.progress.update(task, completed=position)
            self.progress.update(self.total, completed=self._done + position)

        return task, update

    def finished(self, task: TaskID, result: Result) -> None:
        self._done += result.file.size
        self._files += 1
        self._failed += result.error is not None
        self.progress.update(self.total, completed=self._done)
        self.progress.update(task, visible=False)
        if result.error is None:
            checked = VERIFIED.get(result.verified or "off", "not verified")
            self.note(f"uploaded {result.file.relative} -> {result.url} ({summary(result.file.size, result.seconds)}; {result.digest}, {checked})")
        else:
            self.error(f"FAILED {result.file.relative}: {result.error}")
