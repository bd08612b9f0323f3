"""`kernelwright bench`: the optimize loop over a suite, with KernelBench's summary figures.

Exit codes as for `optimize`: 0 when the run ended, 2 on bad input, 130 on Ctrl-C (resumable
with `--resume RUN`), 1 on a fault.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from kernelwright.cli.history import rounds_table
from kernelwright.cli.options import (
    AtolOption,
    BaseUrlOption,
    BudgetOption,
    BuildTimeoutOption,
    CompileBaselineOption,
    DbOption,
    DryRunOption,
    JsonOption,
    JudgeModelOption,
    ModelOption,
    ProfileOption,
    ReasoningOption,
    RoundsOption,
    RtolOption,
    SeedOption,
    TargetOption,
    TargetSpeedupOption,
    TimeLimitOption,
    TimeoutOption,
    TrialsOption,
    WidthOption,
    loop_flags,
)
from kernelwright.cli.progress import finished_line, per_round
from kernelwright.errors import BadInput, KernelwrightError
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

if TYPE_CHECKING:
    from kernelwright.settings import Settings


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
    rounds: RoundsOption = None,
    width: WidthOption = None,
    target: TargetOption = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Problems at once (default: one per GPU, or per Ray slot)."),
    ] = None,
    executor: Annotated[str, typer.Option(help="local or ray.")] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="A Ray cluster's address (default: start a local one).")
    ] = None,
    budget_usd: BudgetOption = None,
    target_speedup: TargetSpeedupOption = None,
    time_limit: TimeLimitOption = None,
    resume: Annotated[str | None, typer.Option(help="Go on with an earlier bench run.")] = None,
    base_url: BaseUrlOption = None,
    reasoning: ReasoningOption = None,
    trials: TrialsOption = None,
    seed: SeedOption = None,
    atol: AtolOption = None,
    rtol: RtolOption = None,
    timeout: TimeoutOption = None,
    build_timeout: BuildTimeoutOption = None,
    compile_baseline: CompileBaselineOption = None,
    profile: ProfileOption = None,
    dry_run: DryRunOption = False,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Optimize every problem of SUITE and report fast_p and speedups (stops per problem)."""
    from kernelwright import settings
    from kernelwright.cli import fail

    err = Console(stderr=True)
    request = BenchRequest(suite, levels, problems, workers, executor, ray_address, resume, db)
    try:
        flags = loop_flags(
            target=target,
            model=model,
            judge_model=judge_model,
            base_url=base_url,
            reasoning=reasoning,
            rounds=rounds,
            width=width,
            budget_usd=budget_usd,
            target_speedup=target_speedup,
            time_limit=time_limit,
            trials=trials,
            seed=seed,
            atol=atol,
            rtol=rtol,
            timeout=timeout,
            build_timeout=build_timeout,
            compile_baseline=compile_baseline,
            profile=profile,
        )
        runner = build_bench(request, settings.load(flags), dry_run=dry_run, as_json=as_json)
    except KernelwrightError as exc:
        fail(str(exc))
        return
    if runner is None:  # a dry run, reported
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
    summary["per_round"] = per_round(runner.engine, summary["run_id"])
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        console = Console()
        console.print(rounds_table(summary["per_round"]))
        render_summary(console, summary)
    if summary["status"] == "interrupted":
        err.print(f"resume with: kernelwright bench --resume {summary['run_id']}", highlight=False)
        raise typer.Exit(130)


@dataclass(frozen=True)
class BenchRequest:
    """What `bench` takes besides the settings: the suite and how to run it."""

    suite: str | None
    levels: str | None = None
    problems: str | None = None
    workers: int | None = None
    executor: str = "local"
    ray_address: str | None = None
    resume: str | None = None
    db: str | None = None


def build_bench(
    r: BenchRequest, s: Settings, *, dry_run: bool = False, as_json: bool = False
) -> Any:
    """The Bench, everything checked and opened first; None after a dry run (reported)."""
    from kernelwright import options
    from kernelwright.agents.registry import lasting_spec
    from kernelwright.bench import Bench, select_problems
    from kernelwright.cli.optimize import make_models, resumed_config, stored_run
    from kernelwright.executors import make_executor
    from kernelwright.loop_config import OptimizeConfig
    from kernelwright.store.db import open_engine
    from kernelwright.targets import default_target

    options.at_least_one("workers", r.workers)
    engine = None
    if r.resume is not None:
        if r.suite is not None:
            raise BadInput("--resume goes on with the run's own suite; drop SUITE")
        engine = open_engine(r.db)
        stored = stored_run(engine, r.resume, "bench")
        config, resume = stored["config"], stored["id"]
        settings_config = resumed_config(stored, s)
        paths, suite, workers = config["problems"], config["suite"], config["workers"]
    else:
        if r.suite is None:
            raise BadInput("name a SUITE (`builtin` or a folder), or --resume RUN")
        if s.model is None:
            raise BadInput(
                "bench needs a model: --model (openai:MODEL, anthropic:MODEL or replay:FILE), "
                "or `model` in config.toml or KERNELWRIGHT_MODEL"
            )
        paths = [str(p) for p in select_problems(r.suite, r.levels, r.problems)]
        suite, workers, resume = r.suite, r.workers, None
        s = dataclasses.replace(
            s, model=lasting_spec(s.model), judge_model=lasting_spec(s.judge_model)
        )
        settings_config = OptimizeConfig.from_settings(
            s, problem="", target=s.target or default_target(), coder_model=str(s.model)
        )
    if dry_run:
        from kernelwright.cli.dry_run import dry_run_bench

        dry_run_bench(
            [Path(p) for p in paths],
            suite,
            settings_config,
            s,
            resume,
            r.executor,
            r.ray_address,
            workers,
            r.db,
            as_json,
        )
        return None
    engine = engine if engine is not None else open_engine(r.db)
    runner_executor = make_executor(r.executor, settings_config.target, r.ray_address)
    coder_model, judge = make_models(settings_config)
    return Bench(
        engine,
        settings_config,
        [Path(p) for p in paths],
        coder_model,
        judge,
        runner_executor,
        workers or runner_executor.slots,
        suite,
        resume=resume,
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
