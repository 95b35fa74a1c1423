"""The concatenation option reaches Config from the flag and from its TUSD_PY_ variable."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tusd_py import cli
from tusd_py.config import Config


class Stop(Exception):
    pass


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ([], {}, False),
        (["--remove-parts-after-concat"], {}, True),
        ([], {"TUSD_PY_REMOVE_PARTS_AFTER_CONCAT": "1"}, True),
        (["--no-remove-parts-after-concat"], {"TUSD_PY_REMOVE_PARTS_AFTER_CONCAT": "true"}, False),
    ],
)
def test_remove_parts_after_concat_option(monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str], expected: bool) -> None:
    seen: list[Config] = []

    def fake_serve(config: Config, workers: int) -> None:
        seen.append(config)
        raise Stop  # the config is all this test wants: no server starts

    monkeypatch.setattr(cli, "serve", fake_serve)
    result = CliRunner().invoke(cli.main, args, env=env)
    assert isinstance(result.exception, Stop), result.output
    assert seen[0].remove_parts_after_concat is expected
