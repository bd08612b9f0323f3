"""Error lines keep every character: no rich markup is read into them. In-process."""

from __future__ import annotations

import pytest
from kernelwright.cli import app, fail
from typer.testing import CliRunner


@pytest.fixture
def kw():
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args), catch_exceptions=False)


def _one_line(proc, code: int = 2) -> str:
    assert proc.exit_code == code, proc.output
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_error_lines_keep_their_square_brackets(kw, tmp_path):
    line = _one_line(kw("runs", "show", "ab[ray]cd", "--db", f"sqlite:///{tmp_path / 'h.db'}"))
    assert "no run 'ab[ray]cd' in the history" in line


def test_fail_prints_a_message_with_markup_like_text_as_it_is(capsys):
    import typer

    with pytest.raises(typer.Exit) as exited:
        fail("--executor ray needs Ray: pip install 'kernelwright[ray]' ([bold]not bold[/])")
    assert exited.value.exit_code == 2
    err = capsys.readouterr().err
    assert err == (
        "error: --executor ray needs Ray: pip install 'kernelwright[ray]' ([bold]not bold[/])\n"
    )
