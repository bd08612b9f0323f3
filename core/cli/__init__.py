"""The `kernelwright` command line. Commands stay thin: parse, call one function, render; one
module per command or command group (`kernelwright.cli.optimize`, `.bench`, `.history`, ...),
the options they share in `kernelwright.cli.options`, and here the app, the consoles and `fail`,
the one place an error becomes an exit code.

Exit codes: 0 when the command did its job (an evaluation ran, whatever its verdict); 2 on bad
input or a missing toolchain, with one line on stderr that says what to do and no traceback.
"""

from __future__ import annotations

import logging
import signal
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Turn slow PyTorch modules into fast, verified CUDA kernels.",
)
out = Console()
err = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            out.print(f"kernelwright {version('kernelwright')}", highlight=False)
        except PackageNotFoundError:  # run from a source tree that was never installed
            out.print("kernelwright (not installed)", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Turn slow PyTorch modules into fast, verified CUDA kernels."""


def fail(message: str, code: int = 2) -> None:
    """One line on stderr, exit code 2: for bad input and missing toolchains (1: for a run that
    could not go on). The one place error lines are printed: the message is text, never rich
    markup, or the `[ray]` of `pip install 'kernelwright[ray]'` would be read as a style and
    vanish."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _register_commands() -> None:
    # imported here, after `app`, `out`, `err` and `fail` exist: the command modules use them
    from kernelwright.cli.apply import apply
    from kernelwright.cli.bench import bench
    from kernelwright.cli.calls import calls_app, runs_calls
    from kernelwright.cli.candidates import candidates_app
    from kernelwright.cli.check import check
    from kernelwright.cli.config import config_app
    from kernelwright.cli.evaluate import evaluate
    from kernelwright.cli.history import report, runs_app
    from kernelwright.cli.hotspots import hotspots
    from kernelwright.cli.optimize import optimize
    from kernelwright.cli.profile import profile
    from kernelwright.cli.suite import suite

    app.command()(evaluate)
    app.command()(suite)
    app.command()(optimize)
    app.command()(profile)
    app.command()(bench)
    app.command()(report)
    app.command()(hotspots)
    app.command()(apply)
    app.command()(check)
    runs_app.command("calls")(runs_calls)
    app.add_typer(runs_app, name="runs")
    app.add_typer(candidates_app, name="candidates")
    app.add_typer(calls_app, name="calls")
    app.add_typer(config_app, name="config")


_register_commands()


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # `kill PID` (timeout(1), batch schedulers, `docker stop`) stops a run as Ctrl-C does: the
    # workers killed, the run marked interrupted and resumable. Left alone where it is ignored.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
    app()


if __name__ == "__main__":
    main()
