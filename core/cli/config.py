"""`kernelwright config [show]`: the effective settings and where each came from (the built-in
default, `$KERNELWRIGHT_HOME/config.toml`, a `KERNELWRIGHT_*` variable). Bad values in the file
or the environment are one line and exit code 2, as for every command that reads them."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from kernelwright.cli.options import JsonOption
from kernelwright.errors import KernelwrightError
from kernelwright.settings import Settings, config_path, env_name
from rich.console import Console
from rich.markup import escape
from rich.table import Table

config_app = typer.Typer(
    help="The settings optimize, bench and evaluate use (docs/configuration.md).",
    no_args_is_help=False,
)


def settings_json(s: Settings) -> dict[str, Any]:
    """Per setting: its value and its origin (default, file, env or flag)."""
    return {name: {"value": v, "origin": s.origin(name)} for name, v in s.values().items()}


def settings_table(s: Settings) -> Table:
    table = Table("setting", "value", "from", box=None, pad_edge=False)
    for name, value in s.values().items():
        origin = s.origin(name)
        where = {"file": "config.toml", "env": env_name(name), "flag": "flag"}.get(origin, "")
        shown = "-" if value is None else str(value).lower() if isinstance(value, bool) else value
        table.add_row(name, escape(str(shown)), where or "default")
    return table


def _show(as_json: bool) -> None:
    from kernelwright import settings
    from kernelwright.cli import fail

    try:
        effective = settings.load()
    except KernelwrightError as exc:
        fail(str(exc))
        return
    path = config_path()
    if as_json:
        data = {"file": str(path), "file_exists": path.is_file(), **settings_json(effective)}
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    out = Console()
    state = "" if path.is_file() else " (none there: defaults and environment only)"
    out.print(f"config file: {path}{state}", markup=False, highlight=False, soft_wrap=True)
    out.print(settings_table(effective))
    out.print(
        "target -: cuda where a GPU is visible; model -: chosen from the API key that is set",
        highlight=False,
    )


@config_app.callback(invoke_without_command=True)
def config(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Print the effective settings and where each came from (as `config show`)."""
    if ctx.invoked_subcommand is None:
        _show(as_json)


@config_app.command("show")
def show(as_json: JsonOption = False) -> None:
    """Print the effective settings and where each came from: default, file or env."""
    _show(as_json)
