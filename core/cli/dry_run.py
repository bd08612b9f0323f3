"""`optimize --dry-run` and `bench --dry-run`: every check a run makes before it spends anything,
then what it would run, and no run.

Checked: the settings (file, environment, flags), the problem (it resolves and loads; for a new
`optimize` run its reference also runs once on the evaluation's cases, as the run would first),
the target's toolchain, the models (named correctly, their API key set, prices where a budget
is to be kept; no network call), a replay file's first coder reply. Nothing is written to the
history: a new run opens no database, and a resumed one only reads its run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    from kernelwright.cli.optimize import ProblemSource
    from kernelwright.loop_config import OptimizeConfig
    from kernelwright.settings import Settings


def dry_run_optimize(
    source: ProblemSource,
    resume: str | None,
    s: Settings,
    db: str | None,
    as_json: bool,
    err: Console,
) -> None:
    from kernelwright.cli.optimize import (
        check_replay_starts,
        make_models,
        new_config,
        resumed_config,
        stored_run,
    )
    from kernelwright.errors import BadInput
    from kernelwright.loop import check_settings

    checked = ["settings"]
    if resume is not None:
        if source.problem is not None:
            raise BadInput("--resume goes on with the run's own problem; drop PROBLEM")
        from kernelwright.store.db import open_engine

        stored = stored_run(open_engine(db), resume, "optimize")
        resume, config = stored["id"], resumed_config(stored, s)
        checked.append(f"run {resume}")
    else:
        config = new_config(s, source, err)
        checked.append("problem")
    coder_model, judge = make_models(config)
    checked.append("models and keys")
    if resume is None:
        check_replay_starts(coder_model, Path(config.problem).stem)
    check_settings(config, coder_model, judge)  # the toolchain; prices for a budget
    checked.append(f"{config.target} toolchain")
    if resume is None:
        from kernelwright.evaluate import check_reference

        err.print("running the reference once on the evaluation's cases", highlight=False)
        check_reference(Path(config.problem), evaluate_options(config))
        checked.append("reference")
    what = f"resume run {resume}" if resume else f"start an optimize run of {config.problem}"
    _report(what, config, s, checked, db, as_json)


def dry_run_bench(
    paths: list[Path],
    suite: str,
    settings_config: OptimizeConfig,
    s: Settings,
    resume: str | None,
    executor: str,
    ray_address: str | None,
    workers: int | None,
    db: str | None,
    as_json: bool,
) -> None:
    from kernelwright.cli.optimize import make_models
    from kernelwright.errors import BadInput
    from kernelwright.executors import EXECUTORS
    from kernelwright.loop import check_settings
    from kernelwright.problem import load_problem

    if executor not in EXECUTORS:
        raise BadInput(f"unknown executor {executor!r}; use {' or '.join(EXECUTORS)}")
    if executor == "local" and ray_address:
        raise BadInput("--ray-address goes with --executor ray")
    if executor == "ray":
        try:  # not started: a dry run starts no cluster
            import ray  # noqa: F401
        except ImportError as exc:
            raise BadInput("--executor ray needs Ray: pip install 'kernelwright[ray]'") from exc
    for path in paths:
        load_problem(path)
    coder_model, judge = make_models(settings_config)
    check_settings(settings_config, coder_model, judge)
    checked = ["settings", f"{len(paths)} problems load", "models and keys"]
    checked.append(f"{settings_config.target} toolchain")
    what = f"resume bench run {resume}" if resume else f"start a bench run of {suite}"
    extra = {"problems": [str(p) for p in paths], "executor": executor, "workers": workers}
    _report(what, settings_config, s, checked, db, as_json, extra)


def evaluate_options(config: OptimizeConfig) -> Any:
    """The options the loop evaluates with (as kernelwright.loop.Optimizer makes them)."""
    from kernelwright.evaluate import EvaluateOptions

    return EvaluateOptions(
        target=config.target,
        trials=config.trials,
        seed=config.seed,
        atol=config.atol,
        rtol=config.rtol,
        timeout_s=config.timeout_s,
        build_timeout_s=config.build_timeout_s,
        compile_baseline=config.compile_baseline,
    )


def _report(
    what: str,
    config: OptimizeConfig,
    s: Settings,
    checked: list[str],
    db: str | None,
    as_json: bool,
    extra: dict[str, Any] | None = None,
) -> None:
    from kernelwright.cli.config import settings_json, settings_table
    from kernelwright.store.db import database_url

    history = database_url(db)
    if as_json:
        data = {
            "dry_run": True,
            "would_run": what,
            "config": config.to_json(),
            "settings": settings_json(s),
            "checked": checked,
            "history": history,
            **(extra or {}),
        }
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    out = Console()
    plain = {"markup": False, "highlight": False, "soft_wrap": True}
    out.print(f"dry run: would {what}", **plain)
    out.print(
        f"on {config.target}; coder {config.coder_model}, judge {config.judge_model}; "
        f"up to {config.rounds} rounds of {config.width} candidate(s)" + _stops(config),
        **plain,
    )
    if extra and extra.get("problems"):
        names = ", ".join(Path(p).stem for p in extra["problems"])
        out.print(f"problems ({len(extra['problems'])}): {names}", **plain)
    out.print(settings_table(s))
    out.print(f"checked: {', '.join(checked)}", **plain)
    out.print(f"history: {history} (nothing written)", **plain)


def _stops(config: OptimizeConfig) -> str:
    stops = []
    if config.budget_usd is not None:
        stops.append(f"${config.budget_usd:g} spent")
    if config.target_speedup is not None:
        stops.append(f"{config.target_speedup:g}x reached")
    if config.time_limit_s is not None:
        stops.append(f"{config.time_limit_s:g} s passed")
    return f"; or until {', '.join(stops)}" if stops else ""
