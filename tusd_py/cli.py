"""The `tusd-py` command: flags (or TUSD_PY_<FLAG> variables) -> Config -> uvicorn.

Every option but `--workers` is a Config field, built here from the field's
declaration in `config.py` (default, help, bounds): nothing is written twice.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Callable, cast

import click

from tusd_py import allocator
from tusd_py.config import Config
from tusd_py.logs import configure_logging
from tusd_py.server import serve

_HINTS = typing.get_type_hints(Config)


def flag_name(field: dataclasses.Field[Any]) -> str:
    """The option's name without dashes: the field's, unless the setting names another."""
    return str(field.metadata.get("flag") or field.name.replace("_", "-"))


def env_names(field: dataclasses.Field[Any]) -> list[str]:
    """TUSD_PY_<FIELD>, and TUSD_PY_<FLAG> when the flag has another name (--dir, --hooks-enabled-events)."""
    names = [f"TUSD_PY_{field.name.upper()}"]
    other = "TUSD_PY_" + flag_name(field).replace("-", "_").upper()
    return names + [other] if other not in names else names


def _int(bound: float | None) -> int | None:
    return None if bound is None else int(bound)


def _option(field: dataclasses.Field[Any]) -> Callable[[Any], Any]:
    """The click option of one Config field."""
    meta = field.metadata
    hint = _HINTS[field.name]
    name = flag_name(field)
    common: dict[str, Any] = {"show_envvar": True, "envvar": env_names(field), "help": meta["help"]}
    default = field.default if field.default is not dataclasses.MISSING else cast(Callable[[], Any], field.default_factory)()
    minimum, maximum = meta.get("minimum"), meta.get("maximum")
    kind: Any
    if hint is bool:
        return click.option(f"--{name}/--no-{name}", field.name, default=default, **common)
    if hint is int:
        bounded = minimum is not None or maximum is not None
        kind = click.IntRange(min=_int(minimum), max=_int(maximum)) if bounded else int
    elif hint is float:
        kind = click.FloatRange(min=minimum, max=maximum) if minimum is not None or maximum is not None else float
    elif hint is Path:
        kind = click.Path(path_type=Path)
        default = str(default)
    elif meta.get("choices"):
        kind = click.Choice(list(meta["choices"]))
    elif typing.get_origin(hint) is tuple:
        kind, default = str, ",".join(default)
    else:  # str, or str | None
        kind = str
    return click.option(f"--{name}", field.name, default=default, type=kind, **common)


def config_from_options(options: dict[str, Any]) -> Config:
    """The click values, as Config fields: lists split on commas, empty optional strings unset."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(Config):
        value = options[field.name]
        hint = _HINTS[field.name]
        if typing.get_origin(hint) is tuple:
            items = tuple(item.strip() for item in str(value).split(",") if item.strip())
            value = items or field.metadata.get("if_empty") or ()
        elif type(None) in typing.get_args(hint):
            value = value or None  # an empty TUSD_PY_* variable means unset
        values[field.name] = value
    try:
        return Config(**values)
    except ValueError as error:  # a combination click's types cannot check (an endpoint that is not a URL, ...)
        raise click.UsageError(str(error)) from None


def check_data_store(config: Config) -> None:
    """With --s3-bucket: the bucket answers and takes writes, or the command ends with one line saying why."""
    if not config.s3_bucket:
        return
    import asyncio

    from tusd_py.storage import s3_options
    from tusd_py.storage.s3.startup import BucketUnusable, check

    try:
        asyncio.run(check(s3_options(config)))
    except BucketUnusable as error:
        raise click.ClickException(str(error)) from None


def _run(workers: int, **options: Any) -> None:
    """Serve tus 1.0.0 resumable uploads (and the IETF resumable-upload draft), with the
    browser upload page at / (its bundle is part of the installed package)."""
    if workers > 1 and not options["redis_url"]:
        raise click.UsageError("--workers above 1 needs --redis-url: the embedded SQLite state serves one process only.")
    allocator.tune()  # before the first request body: glibc settings for streaming (see allocator.py)
    config = config_from_options(options)
    configure_logging(config.log_level, config.log_format)
    click.echo(f"tusd-py serving http://{config.host}:{config.port}{config.base_path}" + (f" with {workers} workers" if workers > 1 else ""))
    check_data_store(config)
    if config.s3_bucket:
        where = f" at {config.s3_endpoint}" if config.s3_endpoint else ""
        click.echo(f"  data: S3 bucket {config.s3_bucket!r}{where}, prefix {config.s3_prefix!r}; state and temporary files: {config.data_dir.resolve()}")
    else:
        click.echo(f"  data directory: {config.data_dir.resolve()}")
    click.echo(f"  state: {'Redis, locks: Redis lease' if config.redis_url else 'embedded (SQLite), locks: in-process'}")
    serve(config, workers)  # each process builds its own app


def _command() -> click.Command:
    command: Any = _run
    command = click.option(
        "--workers", default=1, type=click.IntRange(min=1), show_envvar=True,
        help="Server processes sharing the port (more than 1 needs --redis-url).",
    )(command)
    command = click.version_option(package_name="tusd-py", prog_name="tusd-py")(command)
    for field in reversed(dataclasses.fields(Config)):  # decorators apply inside out: --help lists them in order
        command = _option(field)(command)
    return click.command(context_settings={"auto_envvar_prefix": "TUSD_PY", "show_default": True}, name="tusd-py")(command)


main = _command()


if __name__ == "__main__":
    main()
