"""Logs: text (default) or JSON lines (`--log-format json`), and one line per request.

Structured fields travel in `extra={"fields": {...}}`; the JSON formatter puts
them at the top level of the line, the text formatter appends them as key=value.
"""

from __future__ import annotations

import json
import logging
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


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if fields:
            text += " " + " ".join(f"{key}={value}" for key, value in fields.items() if value is not None and value != "")
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
    access_logger.info("%s %s %s", scope["method"], scope["path"], status, extra={"fields": fields})
