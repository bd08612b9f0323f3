"""The settings of one optimize run, as stored with the run (so `--resume` can go on with them)
and as the outcome is reported."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from kernelwright.spread import within_noise

if TYPE_CHECKING:
    from kernelwright.settings import Settings

ProfilePolicy = Literal["all", "best", "none"]
PROFILE_POLICIES: tuple[str, ...] = ("all", "best", "none")


@dataclass(frozen=True)
class OptimizeConfig:
    problem: str  # path of a KernelBench-format problem file
    target: str
    coder_model: str
    judge_model: str
    base_url: str | None = None
    reasoning: str | None = None
    rounds: int = 10
    width: int = 1
    budget_usd: float | None = None
    target_speedup: float | None = None
    time_limit_s: float | None = None
    trials: int = 5
    seed: int = 42
    atol: float | None = None
    rtol: float | None = None
    timeout_s: float = 180.0
    build_timeout_s: float = 300.0
    compile_baseline: bool = False  # also time the reference under torch.compile
    # Which correct candidates get Nsight Compute metrics for the judge (cuda target): `all`,
    # `best` (a new best of its lineage: faster than every correct ancestor) or `none`
    profile: ProfilePolicy = "best"

    def __post_init__(self) -> None:
        # runs stored before the policy had a flag: on meant every correct candidate
        if isinstance(self.profile, bool):
            object.__setattr__(self, "profile", "all" if self.profile else "none")
        if self.profile not in PROFILE_POLICIES:
            raise ValueError(f"profile must be one of {', '.join(PROFILE_POLICIES)}")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, problem: str, target: str, coder_model: str
    ) -> OptimizeConfig:
        """A new run's config from the effective settings (kernelwright.settings); `target` and
        `coder_model` as decided where None means "choose" (the GPU, the key that is set)."""
        return cls(
            problem=problem,
            target=target,
            coder_model=coder_model,
            judge_model=settings.judge_model or coder_model,
            base_url=settings.base_url,
            reasoning=settings.reasoning,
            rounds=settings.rounds,
            width=settings.width,
            budget_usd=settings.budget_usd,
            target_speedup=settings.target_speedup,
            time_limit_s=settings.time_limit,
            trials=settings.trials,
            seed=settings.seed,
            atol=settings.atol,
            rtol=settings.rtol,
            timeout_s=settings.timeout,
            build_timeout_s=settings.build_timeout,
            compile_baseline=settings.compile_baseline,
            profile=settings.profile,  # type: ignore[arg-type]  # checked by settings.load
        )

    @classmethod
    def from_json(cls, data: dict[str, Any], **overrides: Any) -> OptimizeConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True)
class Progress:
    """A snapshot for the progress display, sent after every recorded event."""

    run_id: str
    problem: str
    round: int
    rounds: int
    candidates: int
    correct: int
    pending: int
    best_speedup: float | None
    best_id: str | None
    cost_usd: float
    tokens: int
    message: str
    best_speedup_p20: float | None = None  # the best speedup's spread (kernelwright.spread)
    best_speedup_p80: float | None = None
    # set when this event is a candidate's end: id, round, status, reason, speedup, speedup_p20,
    # speedup_p80 (the display prints one line that stays for each)
    finished: dict[str, Any] | None = None


@dataclass(frozen=True)
class Outcome:
    run_id: str
    status: str  # finished | interrupted | failed
    stop_reason: str
    rounds: int
    candidates: int
    correct: int
    best_candidate_id: str | None
    best_speedup: float | None
    tokens_in: int
    tokens_out: int
    cost_usd: float
    # the best speedup's spread: p20 and p80 of its per-round ratios (kernelwright.spread)
    best_speedup_p20: float | None = None
    best_speedup_p80: float | None = None

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["best_within_noise"] = within_noise(self.best_speedup_p20, self.best_speedup_p80)
        data["tokens"] = {"input": self.tokens_in, "output": self.tokens_out}
        data["export_command"] = (
            f"kernelwright runs export {self.run_id}" if self.best_candidate_id else None
        )
        return data
