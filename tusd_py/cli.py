"""The `tusd-py` command: flags (or TUSD_PY_<FLAG> variables) -> Config -> uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tusd_py import allocator
from tusd_py.config import Config
from tusd_py.logs import configure_logging
from tusd_py.server import serve


def _list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _origins(value: str) -> tuple[str, ...]:
    return tuple(origin.strip() for origin in value.split(",") if origin.strip()) or ("*",)


@click.command(context_settings={"auto_envvar_prefix": "TUSD_PY", "show_default": True})
@click.option("--host", default="127.0.0.1", show_envvar=True, help="Address to listen on.")
@click.option("--port", default=1080, type=int, show_envvar=True, help="Port to listen on.")
@click.option("--base-path", default="/files/", show_envvar=True, help="URL path of the creation endpoint.")
@click.option("--dir", "data_dir", default="./data", type=click.Path(path_type=Path), show_envvar=True, help="Where upload data (and the embedded state) is stored.")
@click.option("--redis-url", default=None, show_envvar=True, help="Keep state in Redis (e.g. redis://127.0.0.1:6379/0); unset: embedded SQLite state.")
@click.option("--redis-timeout", default=2.0, type=click.FloatRange(min=0.1), show_envvar=True, help="Seconds a Redis call may take before the request gets 503 (tried twice).")
@click.option("--max-size", default=0, type=click.IntRange(min=0), show_envvar=True, help="Largest upload in bytes (0 = no limit).")
@click.option("--expire-after", default=86400.0, type=click.FloatRange(min=0), show_envvar=True, help="Seconds an unfinished upload lives after its last write (0 = never).")
@click.option("--cors-origins", default="*", show_envvar=True, help="Comma-separated origins allowed by CORS, or *.")
@click.option("--behind-proxy/--no-behind-proxy", default=False, show_envvar=True, help="Trust X-Forwarded-Host/-Proto and Forwarded when building upload URLs.")
@click.option("--fsync/--no-fsync", default=False, show_envvar=True, help="fsync data (and state) before committing an offset.")
@click.option("--direct-io/--no-direct-io", default=True, show_envvar=True, help="Write large batches with O_DIRECT, past the page cache (faster where the page cache is slow to grow, e.g. some VMs).")
@click.option("--network-timeout", default=60.0, type=click.FloatRange(min=0), show_envvar=True, help="Idle seconds allowed between reads of a request body.")
@click.option("--max-concurrent-uploads", default=0, type=click.IntRange(min=0), show_envvar=True, help="Request bodies streaming at once on this instance; more get 429 + Retry-After (0 = no cap).")
@click.option("--max-concat-parts", default=1000, type=click.IntRange(min=1), show_envvar=True, help="Most partial uploads one final upload may list.")
@click.option("--max-metadata-size", default=16384, type=click.IntRange(min=0), show_envvar=True, help="Largest Upload-Metadata header in bytes.")
@click.option("--max-metadata-keys", default=64, type=click.IntRange(min=0), show_envvar=True, help="Most keys in Upload-Metadata.")
@click.option("--max-header-size", default=65536, type=click.IntRange(min=1024), show_envvar=True, help="Largest request head (request line and headers) in bytes; 431 above.")
@click.option("--sweep-interval", default=60.0, type=click.FloatRange(min=0.1), show_envvar=True, help="Seconds between looks for expired uploads.")
@click.option("--lock-wait", default=3.0, type=click.FloatRange(min=0), show_envvar=True, help="Seconds a request waits for a busy upload before 423.")
@click.option("--hooks-module", default=None, show_envvar=True, help="Python module whose functions (pre_create, post_finish, authorize, ...) are the hooks.")
@click.option("--hooks-http", default=None, show_envvar=True, help="URL each hook event is POSTed to as JSON.")
@click.option("--hooks-http-forward-headers", default="", show_envvar=True, help="Comma-separated client request headers copied onto webhook requests.")
@click.option("--hooks-http-timeout", default=10.0, type=click.FloatRange(min=0.001), show_envvar=True, help="Seconds one webhook attempt may take.")
@click.option("--hooks-http-retries", default=2, type=click.IntRange(min=0), show_envvar=True, help="Further attempts after a webhook failed.")
@click.option("--hooks-http-backoff", default=1.0, type=click.FloatRange(min=0), show_envvar=True, help="Seconds before the first webhook retry; doubles with each.")
@click.option("--hooks-redis-stream", default=None, show_envvar=True, help="Redis stream that post-create, post-finish and post-terminate events are added to.")
@click.option("--hooks-redis-url", default=None, show_envvar=True, help="Redis of --hooks-redis-stream (default: --redis-url).")
@click.option("--hooks-enabled-events", default=",".join(Config.hooks_events), show_envvar=True, help="Comma-separated hook events to send.")
@click.option("--hooks-timeout", default=30.0, type=click.FloatRange(min=0.001), show_envvar=True, help="Seconds a blocking hook may take in all before the request fails with 504.")
@click.option("--hooks-concurrency", default=16, type=click.IntRange(min=1), show_envvar=True, help="Blocking hook calls (authorize, pre-*) in progress at once; more get 503 at once. Plain hook functions run on twice as many threads of their own.")
@click.option("--hooks-queue-size", default=10_000, type=click.IntRange(min=1), show_envvar=True, help="Notifications waiting per transport and kind: progress (post-create, post-receive) past it is dropped and counted; post-finish and post-terminate are never dropped (the request waits for room).")
@click.option("--progress-interval", default=1.0, type=click.FloatRange(min=0), show_envvar=True, help="post-receive hooks: at most once per this many seconds per upload.")
@click.option("--log-format", default="text", type=click.Choice(["text", "json"]), show_envvar=True, help="Log lines as text or as JSON objects.")
@click.option("--expose-metrics/--no-expose-metrics", default=True, show_envvar=True, help="Serve Prometheus metrics on /metrics.")
@click.option("--ui/--no-ui", default=True, show_envvar=True, help="Serve the browser upload page (Uppy) at /.")
@click.option("--ui-endpoints", default="", show_envvar=True, help="Comma-separated tus endpoints (absolute http(s) URLs) besides this server's that the upload page's ?endpoint= may name; any other is refused.")
@click.option("--ui-frame-ancestors", default="'self'", show_envvar=True, help="Who may frame the upload page: its Content-Security-Policy frame-ancestors ('self', 'none', or origins separated by spaces).")
@click.option("--ietf-draft/--no-ietf-draft", default=True, show_envvar=True, help="Also serve requests that speak the IETF resumable-upload draft (Upload-Draft-Interop-Version 6 or 8) on the same uploads.")
@click.option("--ietf-interim/--no-ietf-interim", default=True, show_envvar=True, help="Send the draft's 104 interim responses (upload URL, progress). Turn off behind a proxy that does not pass 1xx responses on, such as nginx.")
@click.option("--remove-parts-after-concat/--no-remove-parts-after-concat", default=False, show_envvar=True, help="Delete partial uploads once a final upload has been assembled from them (unless another final upload still waits on one).")
@click.option("--workers", default=1, type=click.IntRange(min=1), show_envvar=True, help="Server processes sharing the port (more than 1 needs --redis-url).")
@click.option("--log-level", default="info", type=click.Choice(["critical", "error", "warning", "info", "debug"]), show_envvar=True)
@click.version_option(package_name="tusd-py", prog_name="tusd-py")
def main(workers: int, **options: Any) -> None:
    """Serve tus 1.0.0 resumable uploads (and the IETF resumable-upload draft), with the
    browser upload page at / (its bundle is part of the installed package)."""
    if workers > 1 and not options["redis_url"]:
        raise click.UsageError("--workers above 1 needs --redis-url: the embedded SQLite state serves one process only.")
    allocator.tune()  # before the first request body: glibc settings for streaming (see allocator.py)
    # Every other option is a Config field of the same name; these few need their shape changed.
    options["cors_origins"] = _origins(options["cors_origins"])
    options["hooks_http_forward_headers"] = _list(options["hooks_http_forward_headers"])
    options["ui_endpoints"] = _list(options["ui_endpoints"])
    options["hooks_events"] = _list(options.pop("hooks_enabled_events"))
    for name in ("redis_url", "hooks_module", "hooks_http", "hooks_redis_stream", "hooks_redis_url"):
        options[name] = options[name] or None  # an empty TUSD_PY_* variable means unset
    config = Config(**options)
    configure_logging(config.log_level, config.log_format)
    click.echo(f"tusd-py serving http://{config.host}:{config.port}{config.base_path}" + (f" with {workers} workers" if workers > 1 else ""))
    click.echo(f"  data directory: {config.data_dir.resolve()}")
    click.echo(f"  state: {'Redis, locks: Redis lease' if config.redis_url else 'embedded (SQLite), locks: in-process'}")
    serve(config, workers)  # each process builds its own app


if __name__ == "__main__":
    main()
