"""The `tus-upload` command: flags -> Settings -> one Transfer per file, with progress and exit codes.

Exit codes: 0 every file uploaded and verified, 1 some failed, 2 usage error.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click

from tus_upload.display import Display
from tus_upload.files import collect
from tus_upload.resume import ResumeStore, default_path
from tus_upload.transfer import CHUNKED_ABOVE, MAX_CHUNK, WHOLE, Result, Server, Settings, Transfer
from tus_upload.uploader import RetryPolicy, UploadError, encode_metadata
from tus_upload.verify import MODES

_SIZE_RE = re.compile(r"(\d+)\s*([kmgt]?)(i?b?)", re.IGNORECASE)


def parse_size(value: str) -> int:
    """`1048576`, `512k`, `4M`, `4MiB`, `1G`: binary multiples."""
    match = _SIZE_RE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"not a size: {value!r}")
    number, unit = int(match.group(1)), match.group(2).lower()
    return number * 1024 ** " kmgt".index(unit or " ")


class SizeParam(click.ParamType):
    name = "SIZE"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            size = parse_size(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)
        if size <= 0:
            self.fail("must be > 0", param, ctx)
        return size


class ChunkSizeParam(SizeParam):
    """A size, or `auto` (None: transfer.chunk_size_for decides) or `whole` (one PATCH)."""

    name = "SIZE|auto|whole"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int | None:  # type: ignore[override]
        if value is None or value == "auto":
            return None
        if value == "whole":
            return WHOLE
        return super().convert(value, param, ctx)


def _pairs(values: tuple[str, ...], sep: str, what: str) -> dict[str, str]:
    pairs = {}
    for item in values:
        key, found, value = item.partition(sep)
        if not found or not key.strip():
            raise click.BadParameter(f"{item!r} is not {what}")
        pairs[key.strip()] = value.strip() if sep == ":" else value
    return pairs


def json_line(result: Result) -> str:
    record: dict[str, object] = {"path": str(result.file.path), "ok": result.error is None}
    if result.error is None:
        record.update(url=result.url, bytes=result.file.size, seconds=round(result.seconds, 3), digest=result.digest)
        record.update(resumed_from=result.resumed_from, parts=result.parts, verified=result.verified)
    else:
        record["error"] = result.error
    return json.dumps(record)


@click.command(context_settings={"auto_envvar_prefix": "TUS_UPLOAD", "show_default": True})
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--endpoint", "-e", required=True, show_envvar=True, help="The tus creation URL, e.g. http://host:1080/files/.")
@click.option("--recursive", "-r", is_flag=True, help="Upload the files under directories given.")
@click.option("--meta", "-m", multiple=True, metavar="KEY=VALUE", help="Extra Upload-Metadata (repeatable).")
@click.option("--header", "-H", multiple=True, metavar="NAME: VALUE", help="Extra request header (repeatable), e.g. Authorization.")
@click.option(
    "--chunk-size",
    type=ChunkSizeParam(),
    default="auto",
    help=(
        "Bytes per PATCH (e.g. 8MiB), or `whole` for one PATCH per file. `auto`: with checksums a server keeps only "
        f"PATCHes that arrived whole, so a file above {CHUNKED_ABOVE >> 20} MiB goes in chunks of an eighth of it, at "
        f"most {MAX_CHUNK >> 20} MiB: an interrupted run resumes within one chunk of where it stopped (at most 1/8 of "
        "the file is sent again), and a request per 64 MiB costs a few percent at most. Smaller files, and uploads "
        "without checksums (the server keeps what arrived), go in one PATCH."
    ),
)
@click.option("--parallel", "-p", type=click.IntRange(1, 64), default=1, help="Send each file as N partial uploads at once, joined by concatenation.")
@click.option("--resume/--no-resume", default=True, help="Resume unfinished uploads of the same file from an earlier run.")
@click.option("--state-file", type=click.Path(dir_okay=False, path_type=Path), default=None, show_envvar=True, help="Where unfinished uploads are remembered [default: uploads.json in the user's state directory].")
@click.option("--retries", type=click.IntRange(min=0), default=8, help="Retries of a failing request (no answer, 5xx, 409, 423, 460), with exponential backoff.")
@click.option("--retry-delay", type=click.FloatRange(min=0), default=0.5, help="Seconds before the first retry; doubles each time, up to 10s.")
@click.option("--checksum/--no-checksum", default=True, help="Send Upload-Checksum (sha256, or sha1) with each PATCH when the server supports it.")
@click.option(
    "--verify",
    type=click.Choice(MODES),
    default="auto",
    help=(
        "Compare the server's bytes with the file at the end. `digest`: ask the server for the digest of what it "
        "stored (the IETF draft's Want-Repr-Digest on HEAD; tusd-py answers it): nothing is downloaded. `download`: "
        "read the upload back. `auto`: the digest when the server reports one, else the download. `off`: no check."
    ),
)
@click.option("--no-verify", "no_verify", is_flag=True, hidden=True, help="The same as --verify=off.")
@click.option("--digest", type=click.Choice(["sha256", "sha1", "md5"]), default="sha256", help="Whole-file digest for verification and --json.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per file on stdout (path, url, bytes, seconds, digest, how it was verified).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or notes; errors only.")
@click.version_option(package_name="tusd-py", prog_name="tus-upload")
def main(
    paths: tuple[Path, ...],
    endpoint: str,
    recursive: bool,
    meta: tuple[str, ...],
    header: tuple[str, ...],
    chunk_size: int | None,
    parallel: int,
    resume: bool,
    state_file: Path | None,
    retries: int,
    retry_delay: float,
    checksum: bool,
    verify: str,
    no_verify: bool,
    digest: str,
    as_json: bool,
    quiet: bool,
) -> None:
    """Upload FILEs (and, with --recursive, directories) to a tus server, resumably.

    By default a big file goes in checksummed chunks (see --chunk-size), so a run that
    was interrupted resumes within one chunk of where it stopped, and the upload is then
    verified by the digest the server reports (see --verify), without downloading it.
    """
    metadata = _pairs(meta, "=", "KEY=VALUE")
    headers = _pairs(header, ":", "NAME: VALUE")
    try:
        encode_metadata(metadata)
        files = collect(paths, recursive)
    except (ValueError, IsADirectoryError) as error:
        raise click.UsageError(str(error)) from None
    if not endpoint.endswith("/"):
        endpoint += "/"  # the creation URL; relative Locations resolve against it

    if no_verify:
        verify = "off"
    settings = Settings(endpoint, headers, metadata, chunk_size, parallel, resume, checksum, verify, digest)
    store = ResumeStore(state_file or default_path()) if resume else None
    display = Display(quiet, sum(f.size for f in files))
    policy = RetryPolicy(retries=retries, delay=retry_delay, on_retry=lambda why, delay: display.note(f"retrying in {delay:.1f}s: {why}"))
    failed = 0
    with display:
        try:
            server = Server.discover(endpoint, headers, policy)
        except UploadError as error:
            display.error(f"{endpoint}: {error}")
            sys.exit(1)
        if checksum and server.checksum is None:
            display.note("the server has no sha256/sha1 checksum support: PATCHes go without Upload-Checksum")
        for file in files:
            task, update = display.file(file)
            try:
                result = Transfer(file, settings, server, store, policy, update, display.note).run()
            except KeyboardInterrupt:
                display.error(f"interrupted during {file.relative}: run the same command again to resume")
                sys.exit(130)
            display.finished(task, result)
            failed += result.error is not None
            if as_json:
                click.echo(json_line(result))
    sys.exit(1 if failed else 0)
