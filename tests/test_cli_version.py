"""`kernelwright --version`: the installed package's version, exit 0, no command needed."""

from __future__ import annotations

from importlib.metadata import version

from kernelwright.cli import app
from typer.testing import CliRunner


def test_version_prints_the_installed_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"kernelwright {version('kernelwright')}"
