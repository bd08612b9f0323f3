"""The `kernelwright` command line. Commands stay thin: parse, call one function, render.

Exit codes: 0 when the command did its job (an evaluation ran, whatever its verdict); 2 on bad
input or a missing toolchain, with one line on stderr that says what to do and no traceback.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from kernelwright.cli_options import (
    AtolOption,
    BuildTimeoutOption,
    JsonOption,
    RtolOption,
    SeedOption,
    TargetOption,
    TimeoutOption,
)
from kernelwright.errors import KernelwrightError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

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


@app.command()
def evaluate(
    problem: Annotated[
        str,
        typer.Argument(
            help="Problem file (KernelBench format: Model, get_inputs, get_init_inputs) or a "
            "shipped problem's name (`kernelwright suite`).",
        ),
    ],
    candidate: Annotated[Path, typer.Argument(help="Candidate file defining ModelNew.")],
    target: TargetOption = None,
    trials: Annotated[
        int | None, typer.Option(help="Seeded correctness trials at the problem's shape (5).")
    ] = None,
    atol: AtolOption = None,
    rtol: RtolOption = None,
    seed: SeedOption = None,
    timeout: TimeoutOption = None,
    build_timeout: BuildTimeoutOption = None,
    compile_baseline: Annotated[
        bool | None,
        typer.Option(
            "--compile-baseline/--no-compile-baseline",
            help="Also time the reference under torch.compile (default mode; default: off).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
    save: Annotated[
        bool, typer.Option("--save", help="Record the evaluation in the history.")
    ] = False,
    db: Annotated[
        str | None, typer.Option("--db", help="History database URL (with --save).")
    ] = None,
) -> None:
    """Build, verify and time CANDIDATE against PROBLEM."""
    from kernelwright import settings
    from kernelwright.evaluate import EvaluateOptions
    from kernelwright.evaluate import evaluate as run_evaluation
    from kernelwright.targets import default_target
    from kernelwright.user_problem import resolve_problem

    try:
        # the settings evaluate shares with optimize and bench: the file's and the
        # environment's count here too (a model, rounds and the like are not used)
        s = settings.load(
            settings.from_flags(
                target=target,
                trials=trials,
                seed=seed,
                atol=atol,
                rtol=rtol,
                timeout=timeout,
                build_timeout=build_timeout,
                compile_baseline=compile_baseline,
            )
        )
        problem_path = resolve_problem(problem)
        engine = None
        if save:  # open (and migrate) first: a bad database must fail before the work is done
            from kernelwright.store.db import open_engine

            engine = open_engine(db)
        options = EvaluateOptions(
            target=s.target or default_target(),
            trials=s.trials,
            seed=s.seed,
            atol=s.atol,
            rtol=s.rtol,
            timeout_s=s.timeout,
            build_timeout_s=s.build_timeout,
            compile_baseline=s.compile_baseline,
        )
        from kernelwright.cli_phases import Phases

        with Phases(err) as phases:  # on a terminal: each phase with its seconds
            result = run_evaluation(problem_path, candidate, options, on_phase=phases.step)
        data = result.to_dict()
        if engine is not None:
            data.update(_record(engine, problem_path, candidate, options, result))
    except KernelwrightError as exc:
        fail(str(exc))
        return
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    _render_evaluation(data)
    if engine is not None:
        out.print(f"saved as run {data['run_id']}, candidate {data['candidate_id']}")


def _record(
    engine: Any, problem: Path, candidate: Path, options: Any, result: Any
) -> dict[str, str]:
    """One `evaluate` run with its one candidate, committed before returning."""
    import dataclasses
    import hashlib

    from kernelwright.problem import load_problem
    from kernelwright.store import repo

    spec = load_problem(problem)
    source = candidate.read_text(encoding="utf-8")
    run_id = repo.start_run(engine, "evaluate", options.target, dataclasses.asdict(options))
    candidate_id = repo.add_candidate(
        engine,
        run_id,
        {
            "content_hash": spec.content_hash,
            "name": spec.name,
            "path": str(spec.path),
            "source": spec.source,
        },
        source,
        hashlib.sha256(source.encode()).hexdigest(),
        result,
    )
    repo.finish_run(engine, run_id, environment=result.environment)
    return {"run_id": run_id, "candidate_id": candidate_id}


def _fmt(value: Any, unit: str = "", digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}{unit}"
    return f"{value}{unit}"


def _speedup_text(r: dict[str, Any]) -> str:
    """The speedup with its spread (kernelwright.spread), and how many rounds it is over."""
    from kernelwright import spread

    rounds = len((r["timing"] or {}).get("round_ratios") or [])
    return spread.text(r["speedup"], r.get("speedup_p20"), r.get("speedup_p80"), rounds)


def _render_evaluation(r: dict[str, Any]) -> None:
    color = "green" if r["status"] == "correct" else "red"
    # Candidate text (reasons, warnings, logs) may contain [brackets]: never read it as markup.
    r = {
        **r,
        "reason": escape(r["reason"]),
        "warnings": [{k: escape(str(v)) for k, v in w.items()} for w in r["warnings"]],
    }
    table = Table(show_header=False, box=None)
    table.add_row("status", f"[bold {color}]{r['status']}[/]")
    if r["reason"]:
        table.add_row("reason", r["reason"])
    table.add_row("target", r["target"])
    table.add_row("speedup", _speedup_text(r))
    table.add_row("candidate", _fmt(r["candidate_ms"], " ms"))
    table.add_row("reference", _fmt(r["reference_ms"], " ms"))
    if (r["timing"] or {}).get("compiled_reference"):
        from kernelwright.records import compiled_text

        table.add_row("torch.compile", escape(compiled_text(r["timing"])))
    refresh = (r["timing"] or {}).get("input_refresh")
    if refresh:
        done = f"new values before {refresh['refreshed']} timed calls ({refresh['seconds']:.2g} s)"
        table.add_row("inputs", escape(f"{done}; {refresh['note']}" if refresh["note"] else done))
    table.add_row("max abs error", _fmt(r["max_abs_error"], "", 3))
    passed = sum(1 for c in r["cases"] if c["ok"])
    table.add_row("cases passed", f"{passed} of {len(r['cases'])}" if r["cases"] else "-")
    table.add_row("compile", f"{_fmt(r['compile_s'], ' s', 3)}{' (cached)' if r['cached'] else ''}")
    if r.get("phases_s"):
        from kernelwright.records import phases_text

        table.add_row("time", f"{r['duration_s']:.1f} s ({phases_text(r['phases_s'])})")
    for warning in r["warnings"]:
        table.add_row("[yellow]warning[/]", f"{warning['check']}: {warning['message']}")
    env = r["environment"]
    if env.get("gpu") or env.get("cpu"):
        table.add_row("on", f"{env.get('gpu') or env.get('cpu')} / torch {env.get('torch')}")
    if env.get("isolation"):
        note = f" ({env['isolation_note']})" if env.get("isolation_note") else ""
        table.add_row("isolation", escape(f"{env['isolation']}{note}"))
    out.print(table)
    if r["status"] != "correct" and r["log"].strip():
        tail = "\n".join(r["log"].rstrip().splitlines()[-25:])
        out.print("[dim]--- log (last lines; --json has all of it) ---[/]")
        out.print(tail, markup=False, highlight=False)


@app.command()
def suite(
    folder: Annotated[
        Path | None,
        typer.Argument(
            help="A folder of problems (a KernelBench checkout's KernelBench/); default: the suite."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List problems (and, for the shipped suite, their handwritten candidates)."""
    from kernelwright.problem import load_problem_dir
    from kernelwright.suite import builtin_dir, candidates_for

    try:
        problems = load_problem_dir(folder or builtin_dir())
    except KernelwrightError as exc:
        fail(str(exc))
        return
    rows = []
    for p in problems:
        cands = candidates_for(p.path) if folder is None else {}
        rows.append(
            {
                "name": p.name,
                "level": p.level,
                "path": str(p.path),
                "hash": p.content_hash[:12],
                "candidates": {k: str(v) for k, v in cands.items()},
            }
        )
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    _render_suite(folder or builtin_dir(), rows)


def _render_suite(root: Path, rows: list[dict[str, Any]]) -> None:
    """Paths are never cut: the folder on a line of its own, each file relative to it (folded,
    not cut, in a narrow terminal), and where the candidates are."""
    from rich.table import Column

    plain = {"markup": False, "highlight": False, "soft_wrap": True}
    out.print(f"problems in {root.resolve()}:", **plain)
    levels = any(row["level"] is not None for row in rows)

    def relative(row: dict[str, Any]) -> str:
        path = Path(row["path"])
        inside = path.is_relative_to(root.resolve())
        return str(path.relative_to(root.resolve())) if inside else str(path)

    # a file named PROBLEM.py right in the folder needs no column of its own
    files = any(relative(row) != f"{row['name']}.py" for row in rows)
    table = Table(
        Column("problem", overflow="fold"),
        *([Column("level")] if levels else []),
        Column("hash", no_wrap=True),
        Column("candidates", no_wrap=True),
        *([Column("file", overflow="fold")] if files else []),
    )
    for row in rows:
        cells = [escape(row["name"]), *([_fmt(row["level"])] if levels else []), row["hash"]]
        cells.append(", ".join(row["candidates"]) or "-")
        table.add_row(*cells, *([escape(relative(row))] if files else []))
    out.print(table)
    found = [Path(p) for row in rows for p in row["candidates"].values()]
    if found:
        folders = sorted({str(p.parent) for p in found})
        out.print(
            f"handwritten candidates: {', '.join(f + '/' for f in folders)} (PROBLEM.py)", **plain
        )
        example = next((p for p in found if p.parent.name == "cpu"), found[0])
        out.print(
            f"e.g. kernelwright evaluate {example.stem} {example}"
            + (" --target cpu" if example.parent.name == "cpu" else ""),
            **plain,
        )


def _register_commands() -> None:
    from kernelwright.cli_apply import apply
    from kernelwright.cli_bench import bench
    from kernelwright.cli_calls import calls_app, runs_calls
    from kernelwright.cli_check import check
    from kernelwright.cli_config import config_app
    from kernelwright.cli_history import candidates_app, report, runs_app
    from kernelwright.cli_hotspots import hotspots
    from kernelwright.cli_optimize import optimize
    from kernelwright.cli_profile import profile

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
