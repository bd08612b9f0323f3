"""The options `optimize`, `bench` and `evaluate` (and some of `apply`, `hotspots`, `profile`)
share, declared once as Annotated types, so the same flag has the same name, type and help
everywhere.

The settings flags default to None, meaning "not given": their value then comes from
`$KERNELWRIGHT_HOME/config.toml`, a `KERNELWRIGHT_*` variable or the built-in default
(kernelwright.settings), and the help names the built-in default.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from kernelwright.settings import Layer, from_flags

ModelOption = Annotated[
    str | None,
    typer.Option(
        help="Coder model: openai:MODEL, anthropic:MODEL or replay:FILE.jsonl. Default: one "
        "chosen from the API key that is set."
    ),
]
JudgeModelOption = Annotated[str | None, typer.Option(help="Judge model (default: the coder's).")]
TargetOption = Annotated[
    str | None, typer.Option(help="cuda or cpu (default: cuda where a GPU is visible).")
]
BaseUrlOption = Annotated[
    str | None, typer.Option(help="An OpenAI-compatible server (vLLM, SGLang, Ollama).")
]
ReasoningOption = Annotated[
    str | None,
    typer.Option(
        help="OpenAI reasoning effort (low/medium/high); for Claude, thinking tokens or an "
        "effort (low ... max)."
    ),
]
RoundsOption = Annotated[int | None, typer.Option(help="Rounds to run (default 10).")]
WidthOption = Annotated[
    int | None, typer.Option(help="Candidates per round, from the best so far (default 1).")
]
BudgetOption = Annotated[
    float | None, typer.Option(help="Stop before a call that could pass this spend (USD).")
]
TargetSpeedupOption = Annotated[
    float | None, typer.Option(help="Stop once a correct candidate is this much faster.")
]
TimeLimitOption = Annotated[
    float | None, typer.Option(help="Stop starting new work after this many seconds.")
]
TrialsOption = Annotated[
    int | None, typer.Option(help="Seeded correctness trials per candidate (default 5).")
]
SeedOption = Annotated[int | None, typer.Option(help="Seed of the first trial (default 42).")]
AtolOption = Annotated[
    float | None,
    typer.Option(help="Absolute tolerance for every float dtype (default: per dtype)."),
]
RtolOption = Annotated[
    float | None,
    typer.Option(help="Relative tolerance for every float dtype (default: per dtype)."),
]
TimeoutOption = Annotated[
    float | None, typer.Option(help="Seconds allowed for running: verify + time (default 180).")
]
BuildTimeoutOption = Annotated[
    float | None, typer.Option(help="Seconds allowed for a build (default 300).")
]
CompileBaselineOption = Annotated[
    bool | None,
    typer.Option(
        "--compile-baseline/--no-compile-baseline",
        help="Also time the reference under torch.compile (default mode) and report speedups "
        "over it (default: off).",
        show_default=False,
    ),
]


class ProfileChoice(StrEnum):
    ALL = "all"
    BEST = "best"
    NONE = "none"


ProfileOption = Annotated[
    ProfileChoice | None,
    typer.Option(
        "--profile",
        case_sensitive=False,
        help="Which correct CUDA candidates Nsight Compute profiles for the judge (where ncu "
        "works): all, best (a new best of its lineage, faster than every correct ancestor) or "
        "none. Default: best, or as the resumed run had it.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="History database URL (default: $KERNELWRIGHT_DB or $KERNELWRIGHT_HOME/history.db).",
    ),
]
DryRunOption = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Check everything a run would check first (settings, problem, toolchain, models "
        "and keys; no network), print what would run, and stop. Writes nothing to the history.",
    ),
]
InitArgsOption = Annotated[
    str | None, typer.Option(help="The constructor's arguments, as a JSON list.")
]


def loop_flags(
    *,
    target: str | None,
    model: str | None,
    judge_model: str | None,
    base_url: str | None,
    reasoning: str | None,
    rounds: int | None,
    width: int | None,
    budget_usd: float | None,
    target_speedup: float | None,
    time_limit: float | None,
    trials: int | None,
    seed: int | None,
    atol: float | None,
    rtol: float | None,
    timeout: float | None,
    build_timeout: float | None,
    compile_baseline: bool | None,
    profile: ProfileChoice | None,
) -> Layer:
    """The flags layer of `optimize` and `bench`: every setting, by keyword (a missed one is a
    TypeError in the tests, not a flag that silently does nothing)."""
    return from_flags(
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
        profile=str(profile) if profile is not None else None,
    )
