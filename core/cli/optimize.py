"""`kernelwright optimize`: the coder/judge loop on one problem, with progress and a summary.

Which model: `--model`, else the stored one (`--resume`), else one chosen from the API key that
is set, else, for a shipped problem with a shipped demo, the demo's replay file on the cpu
target (so a newcomer sees the whole loop run without a key or a GPU). Exit codes: 0 when the run
ended (whatever it found), 2 on bad input, 130 when Ctrl-C stopped it (resumable), 1 when every
LLM call of a round failed (the reason is in the summary) or on a fault.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from kernelwright.cli.options import (
    AtolOption,
    BaseUrlOption,
    BudgetOption,
    BuildTimeoutOption,
    CompileBaselineOption,
    DbOption,
    DryRunOption,
    InitArgsOption,
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
from kernelwright.cli.progress import Display, per_round
from kernelwright.errors import BadInput, KernelwrightError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from kernelwright.loop_config import OptimizeConfig
    from kernelwright.settings import Settings

DEFAULT_MODELS = (
    ("OPENAI_API_KEY", "openai:gpt-5"),
    ("ANTHROPIC_API_KEY", "anthropic:claude-sonnet-5-5"),
)
# what a resumed run may take from flags (it keeps the rest of its stored settings): its stops,
# its models, and profiling (kernelwright.loop_config names time_limit `time_limit_s`)
RESUMABLE = ("rounds", "width", "budget_usd", "target_speedup", "time_limit", "model")
RESUMABLE += ("judge_model", "profile", "compile_baseline", "target")


@dataclass(frozen=True)
class ProblemSource:
    """The problem as named on the command line (kernelwright.user_problem resolves it)."""

    problem: str | None
    inputs: str | None = None
    get_inputs: str | None = None
    init_args: str | None = None


def resumed_settings(
    stored: dict[str, Any], run_id: str, compile_baseline: bool, profile: str | None
) -> dict[str, Any]:
    """Overrides of a resumed run's stored settings. `--profile` applies to the rest of the run;
    a baseline cannot be added halfway, since earlier results were summed without it."""
    if compile_baseline and not stored.get("compile_baseline"):
        raise BadInput(
            f"run {run_id} was started without --compile-baseline and a resumed run keeps its "
            "settings; start a new run to measure the baseline"
        )
    return {"profile": str(profile)} if profile is not None else {}


def resumed_config(stored: dict[str, Any], s: Settings) -> OptimizeConfig:
    """A resumed run's settings: its stored ones, with what flags may change (`RESUMABLE`). A flag
    it would ignore is bad input, not silence; the file's and the environment's values are for
    new runs."""
    from kernelwright.agents.registry import lasting_spec
    from kernelwright.loop_config import OptimizeConfig
    from kernelwright.settings import NAMES, flag_name

    run_id = stored["id"]
    kept = [flag_name(n) for n in NAMES if s.given(n) and n not in RESUMABLE]
    if kept:
        raise BadInput(
            f"run {run_id} keeps its {', '.join(kept)}: a resumed run goes on with its own "
            "settings; drop the option or start a new run"
        )
    if s.given("target") and s.target != stored["target"]:
        raise BadInput(f"run {run_id} runs on {stored['target']}; a resumed run keeps its target")
    config = stored["config"] if stored["kind"] == "optimize" else stored["config"]["settings"]
    if s.given("compile_baseline") and not s.compile_baseline and config.get("compile_baseline"):
        raise BadInput(
            f"run {run_id} measures the torch.compile baseline and a resumed run keeps its "
            "settings; drop --no-compile-baseline"
        )

    def flag(name: str) -> Any:
        return getattr(s, name) if s.given(name) else None

    return OptimizeConfig.from_json(
        config,
        rounds=flag("rounds"),
        width=flag("width"),
        budget_usd=flag("budget_usd"),
        target_speedup=flag("target_speedup"),
        time_limit_s=flag("time_limit"),
        coder_model=lasting_spec(flag("model")),
        judge_model=lasting_spec(flag("judge_model")),
        **resumed_settings(config, run_id, bool(flag("compile_baseline")), flag("profile")),
    )


def demo_replay(problem_name: str) -> Path | None:
    """The shipped demo replay for a shipped problem, if there is one."""
    demo = resources.files("kernelwright.suite") / "demo" / f"{problem_name}.jsonl"
    return Path(str(demo)) if demo.is_file() else None


def _choose_model(problem: Path, explicit: str | None, err: Console) -> tuple[str, bool]:
    """(model spec, is the demo)."""
    if explicit:
        return explicit, False
    for variable, spec in DEFAULT_MODELS:
        if os.environ.get(variable, "").strip():
            return spec, False
    suite = Path(str(resources.files("kernelwright.suite") / "problems"))
    demo = demo_replay(problem.stem) if problem.parent == suite.resolve() else None
    if demo is None:
        raise BadInput(
            "no model: set OPENAI_API_KEY or ANTHROPIC_API_KEY, or pass --model "
            "(openai:MODEL, anthropic:MODEL, or replay:FILE.jsonl)"
        )
    err.print(
        "no API key is set: running the shipped demo (scripted replies, cpu target); "
        "set OPENAI_API_KEY or ANTHROPIC_API_KEY to use a real model",
        highlight=False,
    )
    return f"replay:{demo}", True


def new_config(s: Settings, source: ProblemSource, err: Console) -> OptimizeConfig:
    """A new run's settings: the problem resolved, the model chosen where none is set."""
    from kernelwright.agents.registry import lasting_spec
    from kernelwright.loop_config import OptimizeConfig
    from kernelwright.targets import default_target
    from kernelwright.user_problem import resolve_problem

    if source.problem is None:
        raise BadInput("name a PROBLEM to optimize, or --resume RUN")
    path = resolve_problem(
        source.problem,
        inputs=source.inputs,
        get_inputs=source.get_inputs,
        init_args=source.init_args,
    )
    spec, demo = _choose_model(path, lasting_spec(s.model), err)
    s = dataclasses.replace(s, judge_model=lasting_spec(s.judge_model))
    target = s.target or ("cpu" if demo else default_target())
    return OptimizeConfig.from_settings(s, problem=str(path), target=target, coder_model=spec)


def optimize(
    problem: Annotated[
        str | None,
        typer.Argument(
            help="A problem file (KernelBench format), a shipped problem's name, or "
            "module.py:ClassName with --inputs or --get-inputs. Not needed with --resume."
        ),
    ] = None,
    model: ModelOption = None,
    judge_model: JudgeModelOption = None,
    rounds: RoundsOption = None,
    width: WidthOption = None,
    target: TargetOption = None,
    budget_usd: BudgetOption = None,
    target_speedup: TargetSpeedupOption = None,
    time_limit: TimeLimitOption = None,
    resume: Annotated[
        str | None,
        typer.Option(
            help="Go on with an earlier run (its id, or a unique prefix of 4+ characters)."
        ),
    ] = None,
    inputs: Annotated[
        str | None,
        typer.Option(help='Inputs for module.py:ClassName, e.g. "float32[8192,4096] int64[16]".'),
    ] = None,
    get_inputs: Annotated[
        str | None, typer.Option(help="file.py:function returning the inputs (a list).")
    ] = None,
    init_args: InitArgsOption = None,
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
    """Turn PROBLEM into a faster kernel with the coder and judge agents."""
    from kernelwright import settings
    from kernelwright.cli import fail

    err = Console(stderr=True)
    source = ProblemSource(problem, inputs, get_inputs, init_args)
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
        effective = settings.load(flags)
        if dry_run:
            from kernelwright.cli.dry_run import dry_run_optimize

            dry_run_optimize(source, resume, effective, db, as_json, err)
            return
        optimizer = build_optimizer(source, resume, effective, db, err)
    except KernelwrightError as exc:
        fail(str(exc))
        return
    display = Display(err, enabled=True)
    optimizer.on_progress = display.update
    try:
        with display:
            outcome = optimizer.run()
    except BadInput as exc:
        fail(str(exc))
        return
    except KernelwrightError as exc:
        fail(str(exc), code=1)
        return
    data = outcome.to_json()
    data["per_round"] = per_round(optimizer.engine, outcome.run_id)
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        _summary(Console(), data)
    if outcome.status == "interrupted":
        err.print(f"resume with: kernelwright optimize --resume {outcome.run_id}", highlight=False)
        raise typer.Exit(130)
    if outcome.status == "failed":
        raise typer.Exit(1)


def stored_run(engine: Any, run: str, kind: str) -> dict[str, Any]:
    """The run to resume (a unique prefix names it too), which must be of `kind`."""
    from kernelwright.store import ids, repo

    stored = repo.show_run(engine, ids.run_id(engine, run))
    if stored["kind"] != kind:
        only = "; only optimize runs resume" if kind == "optimize" else ", not a bench run"
        raise BadInput(f"run {stored['id']} is {a_or_an(stored['kind'])} run{only}")
    return stored


def build_optimizer(
    source: ProblemSource, resume: str | None, s: Settings, db: str | None, err: Console
) -> Any:
    """Everything checked and opened before the run starts: bad input fails here, whole."""
    from kernelwright.loop import Optimizer
    from kernelwright.store.db import open_engine

    engine = open_engine(db)
    if resume is not None:
        if source.problem is not None:
            raise BadInput("--resume goes on with the run's own problem; drop PROBLEM")
        stored = stored_run(engine, resume, "optimize")
        resume, config = stored["id"], resumed_config(stored, s)
    else:
        config = new_config(s, source, err)
    coder_model, judge = make_models(config)
    if resume is None:
        check_replay_starts(coder_model, Path(config.problem).stem)
    return Optimizer(engine, config, coder_model, judge, resume=resume)


def check_replay_starts(coder_model: Any, problem: str) -> None:
    """A new run starts with a coder call: a replay file with no coder reply for the problem
    would make a run that "finishes" at once with nothing done. Bad input, before it exists."""
    has_reply = getattr(coder_model, "has_reply", None)
    if has_reply is not None and not has_reply("coder", problem):
        raise BadInput(
            f"replay file {coder_model.path} has no coder reply for problem {problem!r}, and a run "
            f'starts with one; add a line {{"role": "coder", "text": ...}} (with no "problem", '
            f'or "problem": "{problem}")'
        )


def a_or_an(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def make_models(config: Any) -> tuple[Any, Any]:
    """The coder and the judge; one object when they are the same model."""
    from kernelwright.agents.registry import make_model

    def one(spec: str) -> Any:
        return make_model(spec, base_url=config.base_url, reasoning=config.reasoning)

    coder_model = one(config.coder_model)
    same = config.judge_model == config.coder_model
    return coder_model, coder_model if same else one(config.judge_model)


def _summary(console: Console, data: dict[str, Any]) -> None:
    from kernelwright import spread
    from kernelwright.cli.history import rounds_table

    if data.get("per_round"):
        console.print(rounds_table(data["per_round"]))
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    best = data["best_speedup"]
    shown = spread.text(best, data.get("best_speedup_p20"), data.get("best_speedup_p80"))
    rows = [
        ("run", data["run_id"]),
        ("status", f"{data['status']}: {escape(data['stop_reason'])}"),
        ("rounds", str(data["rounds"])),
        ("candidates", f"{data['candidates']} ({data['correct']} correct)"),
        ("best", f"{shown}, candidate {data['best_candidate_id']}" if best else "none correct"),
        ("tokens", f"{data['tokens']['input']} in, {data['tokens']['output']} out"),
        ("cost", f"${data['cost_usd']:.4f}"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    if data["export_command"]:
        console.print(f"export it: {data['export_command']} --out kernel.py", highlight=False)
    console.print(f"review it: kernelwright runs show {data['run_id']}", highlight=False)
