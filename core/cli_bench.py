"""`kernelwright bench`: the optimize loop over a suite, with KernelBench's summary figures.

Exit codes as for `optimize`: 0 when the run ended, 2 on bad input, 130 on Ctrl-C (resumable
with `--resume RUN`), 1 on a fault.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from kernelwright.cli_history import rounds_table
from kernelwright.cli_optimize import (
    BaseUrlOption,
    CompileBaselineOption,
    DbOption,
    JsonOption,
    JudgeModelOption,
    ModelOption,
    ProfileOption,
    TargetOption,
    TrialsOption,
    _per_round,
    finished_line,
    resumed_settings,
)
from kernelwright.errors import BadInput, KernelwrightError
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table


def bench(
    suite: Annotated[
        str | None,
        typer.Argument(help="`builtin` (the shipped problems) or a KernelBench checkout's folder."),
    ] = None,
    model: ModelOption = None,
    judge_model: JudgeModelOption = None,
    levels: Annotated[str | None, typer.Option(help="Levels to run, e.g. 1,2.")] = None,
    problems: Annotated[
        str | None, typer.Option(help="Problem numbers, e.g. 1-10,23 (a file's leading number).")
    ] = None,
    rounds: Annotated[
        int | None, typer.Option(help="Rounds per problem (default 10; with --resume, more).")
    ] = None,
    width: Annotated[int | None, typer.Option(help="Candidates per round (default 1).")] = None,
    target: TargetOption = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Problems at once (default: one per GPU, or per Ray slot)."),
    ] = None,
    executor: Annotated[str, typer.Option(help="local or ray.")] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="A Ray cluster's address (default: start a local one).")
    ] = None,
    budget_usd: Annotated[
        float | None, typer.Option(help="Stop before a call that could pass this total spend.")
    ] = None,
    resume: Annotated[str | None, typer.Option(help="Go on with an earlier bench run.")] = None,
    base_url: BaseUrlOption = None,
    trials: TrialsOption = 5,
    compile_baseline: CompileBaselineOption = False,
    profile: ProfileOption = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Optimize every problem of SUITE and report fast_p and speedups."""
    args = dict(locals())
    from kernelwright.cli import fail

    err = Console(stderr=True)
    try:
        runner = _build(args)
    except KernelwrightError as exc:
        fail(str(exc))
        return
    live = err.status("starting") if err.is_terminal else None

    def show(p: dict[str, Any]) -> None:
        finished = p.get("finished")
        if finished is not None:  # one line that stays, above the live line
            err.print(finished_line(finished, finished["problem"]), markup=False, highlight=False)
        line = (
            f"problems {p['done']}/{p['problems']} done · {p['solved']} with a correct kernel · "
            f"${p['cost_usd']:.4f} · {p['message']}"
        )
        if live is not None:
            live.update(escape(line))
        elif finished is None:
            err.print(line, markup=False, highlight=False, soft_wrap=True)

    runner.on_progress = show
    try:
        if live is not None:
            live.start()
        summary = runner.run()
    except BadInput as exc:
        fail(str(exc))
        return
    except KernelwrightError as exc:
        fail(str(exc), code=1)
        return
    finally:
        if live is not None:
            live.stop()
    summary["per_round"] = _per_round(runner.engine, summary["run_id"])
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        console = Console()
        console.print(rounds_table(summary["per_round"]))
        render_summary(console, summary)
    if summary["status"] == "interrupted":
        err.print(f"resume with: kernelwright bench --resume {summary['run_id']}", highlight=False)
        raise typer.Exit(130)


def _build(a: dict[str, Any]) -> Any:
    from kernelwright import options
    from kernelwright.agents.registry import lasting_spec
    from kernelwright.bench import Bench, select_problems
    from kernelwright.cli_optimize import a_or_an, make_models
    from kernelwright.executors import make_executor
    from kernelwright.loop_config import OptimizeConfig
    from kernelwright.store import repo
    from kernelwright.store.db import open_engine
    from kernelwright.targets import TARGETS, default_target

    for name in ("rounds", "width", "trials", "workers"):
        options.at_least_one(name, a[name])
    options.zero_or_more("budget-usd", a["budget_usd"])
    if a["target"] is not None and a["target"] not in TARGETS:
        raise BadInput(f"unknown target {a['target']!r}; use cuda or cpu")
    a["model"], a["judge_model"] = lasting_spec(a["model"]), lasting_spec(a["judge_model"])
    engine = open_engine(a["db"])
    if a["resume"] is not None:
        stored = repo.show_run(engine, a["resume"])
        if stored["kind"] != "bench":
            raise BadInput(f"run {a['resume']} is {a_or_an(stored['kind'])} run, not a bench run")
        config = stored["config"]
        settings = OptimizeConfig.from_json(
            config["settings"],
            rounds=a["rounds"],
            width=a["width"],
            budget_usd=a["budget_usd"],
            **resumed_settings(
                config["settings"], a["resume"], a["compile_baseline"], a["profile"]
            ),
        )
        paths, suite, workers = config["problems"], config["suite"], config["workers"]
    else:
        if a["suite"] is None:
            raise BadInput("name a SUITE (`builtin` or a folder), or --resume RUN")
        if a["model"] is None:
            raise BadInput("bench needs --model (openai:MODEL, anthropic:MODEL or replay:FILE)")
        paths = select_problems(a["suite"], a["levels"], a["problems"])
        suite, workers = a["suite"], a["workers"]
        settings = OptimizeConfig(
            problem="",
            target=a["target"] or default_target(),
            coder_model=a["model"],
            judge_model=a["judge_model"] or a["model"],
            base_url=a["base_url"],
            rounds=a["rounds"] or 10,
            width=a["width"] or 1,
            budget_usd=a["budget_usd"],
            trials=a["trials"],
            compile_baseline=a["compile_baseline"],
            profile=str(a["profile"] or "best"),
        )
    executor = make_executor(a["executor"], settings.target, a["ray_address"])
    coder_model, judge = make_models(settings)
    return Bench(
        engine,
        settings,
        [Path(p) for p in paths],
        coder_model,
        judge,
        executor,
        workers or executor.slots,
        suite,
        resume=a["resume"],
    )


def render_summary(console: Console, s: dict[str, Any]) -> None:
    """Per problem best speedup, tokens and cost; fast_p and the geometric mean; the same
    against torch.compile when the run measured that baseline."""
    from kernelwright import spread

    compiled = s.get("vs_torch_compile")
    levels = any(p["level"] is not None for p in s["problems"])
    # borderless and compact, to fit 80 columns; a problem's name is never cut (it folds)
    columns = [Column("problem", overflow="fold")]
    columns += [Column("lvl", justify="right")] if levels else []
    columns += [Column("best", no_wrap=True)]
    if compiled:
        columns += [Column("compiled ms", no_wrap=True), Column("vs compiled", no_wrap=True)]
    columns += [
        Column(name, justify="right", no_wrap=True)
        for name in ("cand.", "ok", "tokens", "cost", "wall")
    ]
    table = Table(*columns, box=None, pad_edge=False)
    for p in s["problems"]:
        low, high = p.get("best_speedup_p20"), p.get("best_speedup_p80")
        row = [escape(p["name"])] + ([str(p["level"] or "-")] if levels else [])
        row.append(spread.cell(p["best_speedup"], low, high))
        if compiled:
            ms = p["compiled_reference_ms"]
            row += [f"{ms:.4g}" if ms is not None else "-", _x(p["best_speedup_vs_compile"])]
        row += [
            str(p["candidates"]),
            str(p["correct"]),
            _tokens(p["tokens_in"] + p["tokens_out"]),
            f"${p['cost_usd']:.2f}",
            f"{p['seconds']:.0f} s" if p.get("seconds") is not None else "-",
        ]
        table.add_row(*row)
    console.print(table)
    if any(p.get("best_within_noise") for p in s["problems"]):
        console.print(f"{spread.NOISE_MARK}: {spread.NOISE_NOTE}", highlight=False)
    console.print(_fast_line(s["fast_p"], s["geomean_speedup"], "geomean speedup over solved"))
    if compiled:
        console.print(
            f"against torch.compile ({compiled['measured']} problems with a correct kernel "
            "and a compiled time):\n"
            + _fast_line(compiled["fast_p"], compiled["geomean_speedup"], "geomean speedup")
        )
        for p in s["problems"]:
            if p["compile_note"]:
                console.print(
                    f"{p['name']}: no torch.compile time: {p['compile_note']}",
                    markup=False,
                    highlight=False,
                )
    console.print(
        f"run {s['run_id']}: {s['status']} ({escape(s['stop_reason'])}); cost ${s['cost_usd']:.4f}"
    )
    console.print(f"review it: kernelwright runs show {s['run_id']}", highlight=False)


def _tokens(count: int) -> str:
    return (
        f"{count / 1e6:.1f}M"
        if count >= 1e6
        else f"{count / 1e3:.0f}k"
        if count >= 1e4
        else str(count)
    )


def _x(speedup: float | None) -> str:
    return f"{speedup:.2f}x" if speedup is not None else "-"


def _fast_line(fast_p: dict[str, float], geo: float | None, label: str) -> str:
    fast = " ".join(f"{k}={v:.2f}" for k, v in fast_p.items())
    return f"{fast}\n{label}: {_x(geo) if geo else '-'}"
