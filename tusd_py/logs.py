"""Logs: text (default) or JSON lines (`--log-format json`), and one line per request.

Structured fields travel in `extra={"fields": {...}}`; the JSON formatter puts
them at the top level of the line, the text formatter appends them as key=value.

Text lines carry what clients send (a request path is percent-decoded, so `%0a`
is a newline): the text formatter escapes every control character (C0, DEL, C1,
and the Unicode line and paragraph separators) as `\\xNN` or `\\uNNNN`, and quotes a
field value that has spaces, quotes or `=`, so one request is always one line and
its fields cannot be forged. JSON lines are escaped by `json.dumps`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone
from typing import Any

from starlette.types import Scope

access_logger = logging.getLogger("tusd_py.access")

FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NEEDS_QUOTES_RE = re.compile(r'[\s"=]')


def escape_controls(text: str) -> str:
    """`text` with every control character written as a Python escape: one line, nothing hidden."""
    return _CONTROL_RE.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


def _field(value: object) -> str:
    text = escape_controls(str(value))
    return '"' + text.replace('"', '\\"') + '"' if _NEEDS_QUOTES_RE.search(text) else text


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's naming)
        # The message only: a traceback appended by format() keeps its own lines.
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if fields:
            text += " " + " ".join(f"{key}={_field(value)}" for key, value in fields.items() if value is not None and value != "")
        return text


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    """One handler on the root logger, in the chosen format; uvicorn's loggers go through it too."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def log_request(scope: Scope, status: int, bytes_in: int, bytes_out: int, location: str, duration: float) -> None:
    """One log line per request: method, path, status, upload id, bytes in and out, duration."""
    upload_id = scope.get("path_params", {}).get("upload_id") or location.rstrip("/").rsplit("/", 1)[-1]
    client = scope.get("client")
    fields = {
        "method": scope["method"],
        "path": scope["path"],
        "status": status,
        "upload_id": upload_id,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "duration_ms": round(duration * 1000, 3),
        "remote_addr": f"{client[0]}:{client[1]}" if client else "",
        "error": scope.get("state", {}).get("tus_error", ""),
    }
    # The message names the path as the client sent it (percent-encoded: no spaces, nothing decoded).
    raw_path = scope.get("raw_path")
    shown = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else scope["path"]
    access_logger.info("%s %s %s", scope["method"], shown, status, extra={"fields": fields})
