"""The command line is built from Config's declarations: every setting has a flag and a
TUSD_PY_ variable, and the CLI's defaults are Config's own."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from tusd_py import cli
from tusd_py.config import Config


class Stop(Exception):
    pass


def run(monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str] | None = None) -> Config:
    seen: list[Config] = []

    def fake_serve(config: Config, workers: int) -> None:
        seen.append(config)
        raise Stop

    monkeypatch.setattr(cli, "serve", fake_serve)
    result = CliRunner().invoke(cli.main, args, env=env or {})
    assert isinstance(result.exception, Stop), result.output
    return seen[0]


def test_every_setting_has_a_flag_with_help() -> None:
    options = {param.name: param for param in cli.main.params}
    for field in dataclasses.fields(Config):
        assert field.name in options, field.name
        assert field.metadata["help"], field.name


def test_cli_defaults_are_config_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(monkeypatch, []) == Config()


@pytest.mark.parametrize(
    ("args", "env", "name", "expected"),
    [
        (["--redis-prefix", "x:"], {}, "redis_prefix", "x:"),
        ([], {"TUSD_PY_RELEASE_GRACE": "0.25"}, "release_grace", 0.25),
        (["--shutdown-timeout", "3"], {}, "shutdown_timeout", 3.0),
        ([], {"TUSD_PY_WRITE_BATCH_SIZE": "4096"}, "write_batch_size", 4096),
        (["--dir", "/tmp/x"], {}, "data_dir", Path("/tmp/x")),
        ([], {"TUSD_PY_DATA_DIR": "/tmp/y"}, "data_dir", Path("/tmp/y")),
        (["--hooks-enabled-events", "pre-create, post-finish"], {}, "hooks_events", ("pre-create", "post-finish")),
        (["--hooks-enabled-events", ""], {}, "hooks_events", ()),
        ([], {"TUSD_PY_HOOKS_ENABLED_EVENTS": "post-finish"}, "hooks_events", ("post-finish",)),
        (["--cors-origins", ""], {}, "cors_origins", ("*",)),
        (["--cors-origins", "https://a.example,https://b.example"], {}, "cors_origins", ("https://a.example", "https://b.example")),
        ([], {"TUSD_PY_REDIS_URL": ""}, "redis_url", None),
        (["--no-direct-io"], {}, "direct_io", False),
    ],
)
def test_setting_reaches_config(
    monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str], name: str, expected: object
) -> None:
    assert getattr(run(monkeypatch, args, env), name) == expected


def test_bounds_come_from_the_declaration(monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(cli.main, ["--max-header-size", "10"])
    assert result.exit_code == 2 and "x>=1024" in result.output
