"""`kernelwright evaluate PROBLEM CANDIDATE`: build, verify and time one candidate
(kernelwright.evaluate does the work; this reads the settings, shows the phases and prints the
verdict). Exit code 0 whatever the verdict; 2 on bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from kernelwright.cli.options import (
    AtolOption,
    BuildTimeoutOption,
    JsonOption,
    RtolOption,
    SeedOption,
    TargetOption,
    TimeoutOption,
)
from kernelwright.errors import KernelwrightError
from rich.markup import escape
from rich.table import Table


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
    from kernelwright.cli import err, fail, out
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
        from kernelwright.cli.phases import Phases

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
    from kernelwright.cli import out

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
