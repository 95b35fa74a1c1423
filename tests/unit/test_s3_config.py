"""The `--s3-*` settings: every one reaches Config from its flag and its TUSD_PY_S3_* variable,
the bounds S3 imposes are the CLI's, and `S3Options` is built from Config field by field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.unit.test_config import run
from tusd_py import cli
from tusd_py.config import Config
from tusd_py.storage import S3_TEMP_DIR, open_data_store, s3_options
from tusd_py.storage.files import FileStore
from tusd_py.storage.s3 import S3Options, S3Store

MiB = 1024 * 1024

# (flag arguments, the same as a variable, field, value)
S3_SETTINGS = [
    (["--s3-bucket", "uploads"], {"TUSD_PY_S3_BUCKET": "uploads"}, "s3_bucket", "uploads"),
    (["--s3-endpoint", "http://127.0.0.1:8333"], {"TUSD_PY_S3_ENDPOINT": "http://127.0.0.1:8333"}, "s3_endpoint", "http://127.0.0.1:8333"),
    (["--s3-region", "eu-west-1"], {"TUSD_PY_S3_REGION": "eu-west-1"}, "s3_region", "eu-west-1"),
    (["--s3-prefix", "tus/"], {"TUSD_PY_S3_PREFIX": "tus/"}, "s3_prefix", "tus/"),
    (["--s3-part-size", str(16 * MiB)], {"TUSD_PY_S3_PART_SIZE": str(16 * MiB)}, "s3_part_size", 16 * MiB),
    (["--s3-path-style"], {"TUSD_PY_S3_PATH_STYLE": "true"}, "s3_path_style", True),
    (["--s3-request-checksums"], {"TUSD_PY_S3_REQUEST_CHECKSUMS": "1"}, "s3_request_checksums", True),
    (["--s3-concurrency", "2"], {"TUSD_PY_S3_CONCURRENCY": "2"}, "s3_concurrency", 2),
    (["--s3-max-in-flight", "3"], {"TUSD_PY_S3_MAX_IN_FLIGHT": "3"}, "s3_max_in_flight", 3),
    (["--s3-timeout", "7.5"], {"TUSD_PY_S3_TIMEOUT": "7.5"}, "s3_timeout", 7.5),
    (["--s3-attempts", "5"], {"TUSD_PY_S3_ATTEMPTS": "5"}, "s3_attempts", 5),
]


@pytest.fixture(autouse=True)
def no_bucket_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests stop before serving; the start-up check of the bucket is the e2e tests' (test_s3_serving.py)."""
    monkeypatch.setattr(cli, "check_data_store", lambda config: None)


def test_the_table_names_every_s3_setting() -> None:
    assert {row[2] for row in S3_SETTINGS} == {field.name for field in dataclasses.fields(Config) if field.name.startswith("s3_")}


@pytest.mark.parametrize(("args", "env", "name", "expected"), S3_SETTINGS, ids=[row[2] for row in S3_SETTINGS])
def test_every_s3_setting_reaches_config_by_flag_and_by_variable(
    monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str], name: str, expected: object
) -> None:
    assert getattr(run(monkeypatch, args), name) == expected
    assert getattr(run(monkeypatch, [], env), name) == expected


def test_s3_defaults_keep_the_files_store_and_s3_off() -> None:
    config = Config()
    assert config.s3_bucket is None and not config.s3_request_checksums and config.s3_part_size == 8 * MiB
    assert isinstance(open_data_store(config), FileStore)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--s3-part-size", str(5 * MiB - 1)], f"{5 * MiB}<=x"),
        (["--s3-concurrency", "0"], "x>=1"),
        (["--s3-max-in-flight", "0"], "x>=1"),
        (["--s3-attempts", "0"], "x>=1"),
        (["--s3-timeout", "0"], "x>=0.1"),
        (["--s3-endpoint", "127.0.0.1:8333"], "not an absolute http(s) URL"),
        (["--s3-prefix", "/abs"], "must not start with '/'"),
    ],
)
def test_bad_s3_values_are_usage_errors(args: list[str], words: str) -> None:
    result = CliRunner().invoke(cli.main, ["--s3-bucket", "b", *args])
    assert result.exit_code == 2, result.output
    assert words in result.output
    assert "Traceback" not in result.output


def test_s3_options_come_from_config(tmp_path: Path) -> None:
    config = Config(
        data_dir=tmp_path, s3_bucket="b", s3_endpoint="http://127.0.0.1:9", s3_region="r", s3_prefix="p/", s3_part_size=6 * MiB,
        s3_path_style=True, s3_request_checksums=True, s3_concurrency=2, s3_max_in_flight=3, s3_timeout=4.0, s3_attempts=5,
    )
    assert s3_options(config) == S3Options(
        bucket="b", endpoint_url="http://127.0.0.1:9", region="r", prefix="p/", part_size=6 * MiB, path_style=True,
        request_checksums=True, concurrency=2, max_in_flight=3, read_timeout=4.0, attempts=5, temp_dir=str(tmp_path / S3_TEMP_DIR),
    )
    store = open_data_store(config)
    assert isinstance(store, S3Store) and store.options == s3_options(config)
    assert (tmp_path / S3_TEMP_DIR).is_dir()  # bodies waiting on their checksum stay under --dir
