"""Plain records that cross stage boundaries (compiler, verifier, profiler, orchestrator, CLI).

All are frozen dataclasses of JSON-friendly values, so they can travel between processes and be
stored as they are. A candidate's evaluation ends in exactly one `Status`; the log text that
explains it travels with it.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any


class Status(enum.StrEnum):
    COMPILE_ERROR = "compile_error"
    RUNTIME_ERROR = "runtime_error"
    TIMEOUT = "timeout"
    INCORRECT = "incorrect"
    REJECTED = "rejected"
    CORRECT = "correct"
    # The optimize loop's own: the coder's reply held no candidate. `evaluate` never returns it.
    NO_CODE = "no_code"


@dataclass(frozen=True)
class BuildResult:
    """What building a candidate produced. `status` is None when the build succeeded."""

    status: Status | None
    reason: str
    log: str
    compile_s: float
    cached: bool
    build_dir: str
    key: str
    # ptxas stats per kernel from the nvcc pre-check (or the cached build's), see compiler.ptxas
    kernels: list[dict[str, Any]] = field(default_factory=list)
    precheck_s: float | None = None  # None: no pre-check ran (not kernel-only, cached, CPU)

    @property
    def ok(self) -> bool:
        return self.status is None


@dataclass(frozen=True)
class SampleStats:
    """Summary of one side's timing samples, in milliseconds."""

    median_ms: float
    p20_ms: float
    p80_ms: float
    min_ms: float
    max_ms: float
    mean_ms: float
    samples: int


@dataclass(frozen=True)
class TimingReport:
    """Reference and candidate timed interleaved; speedup is the median of per-round ratios."""

    method: str
    reference: SampleStats
    candidate: SampleStats
    speedup: float
    round_ratios: list[float]
    host_reference_ms: float
    host_candidate_ms: float
    flush_bytes: int
    settings: dict[str, Any]
    # `CompiledReference.for_candidate`'s JSON, only with --compile-baseline (else left out of
    # the JSON, so timings without the flag read exactly as before)
    compiled_reference: dict[str, Any] | None = field(default=None, metadata={"omit_none": True})
    # New input values before each sample and host call (verifier/fresh_inputs.py): how many
    # calls got them, seconds spent, and a note (why fewer rounds ran). None in timings stored
    # before it existed; older ones also count `reused` calls.
    input_refresh: dict[str, Any] | None = field(default=None, metadata={"omit_none": True})
    # What the parent saw from outside the two workers (verifier/timing_driver.py): each side's
    # own figure against the parent's clock, the time to prepare inputs, CPU time, and the spot
    # checks of timed outputs. None in timings measured inside one worker (older records, and
    # the torch.compile baseline).
    observed: dict[str, Any] | None = field(default=None, metadata={"omit_none": True})


def within_noise(low: float | None, high: float | None) -> bool | None:
    """Whether a speedup's p20-p80 range (kernelwright.spread) holds 1.0; None without one."""
    if low is None or high is None:
        return None
    return low <= 1.0 <= high


def speedup_spread_fields(low: float | None, high: float | None) -> dict[str, Any]:
    """The JSON keys every record of a speedup carries beside it."""
    return {"speedup_p20": low, "speedup_p80": high, "within_noise": within_noise(low, high)}


def timing_from_json(raw: dict[str, Any]) -> TimingReport:
    """The inverse of `to_jsonable` for a TimingReport."""
    return TimingReport(
        **{
            **raw,
            "reference": SampleStats(**raw["reference"]),
            "candidate": SampleStats(**raw["candidate"]),
        }
    )


@dataclass(frozen=True)
class CompiledReference:
    """The reference compiled with `torch.compile` (default mode), timed in a reference-side
    worker with the same protocol as the candidate: `eager` is the eager reference timed
    interleaved with it there, `eager_over_compiled` the median of the per-round ratios.
    When compiling or timing failed, `compiled` is None and `note` says why in one line."""

    mode: str
    compiled: SampleStats | None = None
    eager: SampleStats | None = None
    eager_over_compiled: float | None = None
    compile_s: float | None = None  # the untimed first calls that compiled it
    note: str = ""

    def for_candidate(self, candidate_ms: float) -> dict[str, Any]:
        """What an evaluation stores as `timing["compiled_reference"]`; `speedup` is the
        candidate's over torch.compile (compiled median / candidate median)."""
        if self.compiled is None:
            return {"mode": self.mode, "note": self.note}
        return {
            "mode": self.mode,
            **dataclasses.asdict(self.compiled),
            "eager_median_ms": self.eager.median_ms if self.eager else None,
            "eager_over_compiled": self.eager_over_compiled,
            "compile_s": self.compile_s,
            "speedup": self.compiled.median_ms / max(candidate_ms, 1e-9),
        }


def compiled_figures(timing: dict[str, Any] | None) -> tuple[float | None, float | None, str]:
    """(compiled reference ms, speedup over it, note) from a stored evaluation's timing JSON;
    Nones and "" where it was not measured."""
    found = (timing or {}).get("compiled_reference") or {}
    return found.get("median_ms"), found.get("speedup"), found.get("note") or ""


def phases_text(phases: dict[str, float]) -> str:
    """An evaluation's `phases_s` as one line: "reference 4.6 s, build wait 0.0 s, ..."."""
    return ", ".join(
        f"{k.removesuffix('_s').replace('_', ' ')} {v:.1f} s" for k, v in phases.items()
    )


def compiled_text(timing: dict[str, Any] | None) -> str:
    """One line on the torch.compile baseline: its time and the speedup over it, or why not."""
    ms, speedup, note = compiled_figures(timing)
    if ms is None:
        return f"not timed: {note or 'not measured'}"
    return f"{ms:.4g} ms, speedup over it {speedup:.3g}x"


@dataclass(frozen=True)
class CaseResult:
    """One correctness case: a seeded trial at the problem's shape, or an extra shape."""

    index: int
    label: str
    ok: bool
    reason: str
    max_abs_error: float | None
    max_rel_error: float | None


@dataclass(frozen=True)
class EvaluationResult:
    """The verdict on one candidate against one problem."""

    status: Status
    reason: str
    target: str
    problem: str
    problem_hash: str
    candidate: str
    trials: int
    cases: list[CaseResult] = field(default_factory=list)
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    speedup: float | None = None
    candidate_ms: float | None = None
    reference_ms: float | None = None
    timing: TimingReport | None = None
    compile_s: float | None = None
    cached: bool = False
    log: str = ""
    environment: dict[str, Any] = field(default_factory=dict)
    tolerance: dict[str, Any] = field(default_factory=dict)
    warnings: list[dict[str, Any]] = field(default_factory=list)  # suspicious, not rejected
    duration_s: float = 0.0
    kernels: list[dict[str, Any]] = field(default_factory=list)  # BuildResult.kernels
    precheck_s: float | None = None  # BuildResult.precheck_s
    # Nsight Compute profile (`ProfileResult.to_json()`), for correct CUDA candidates when asked.
    profile: dict[str, Any] | None = field(default=None, metadata={"omit_none": True})
    # Seconds per step: reference_s, build_wait_s (the build's time beyond the reference's),
    # candidate_s (verify and time), compiled_reference_s, profile_s; steps that ran only.
    phases_s: dict[str, float] = field(default_factory=dict)
    # The speedup's spread: p20 and p80 of the timing's per-round ratios, and whether that range
    # holds 1.0 (kernelwright.spread). Filled from `timing` when not given; None without one.
    speedup_p20: float | None = None
    speedup_p80: float | None = None
    within_noise: bool | None = None

    def __post_init__(self) -> None:
        if self.timing is not None and self.speedup_p20 is None:
            from kernelwright import spread  # profiler.stats imports this module

            found = spread.interval(self.timing.round_ratios)
            if found is not None:
                object.__setattr__(self, "speedup_p20", found[0])
                object.__setattr__(self, "speedup_p80", found[1])
        if self.within_noise is None and self.speedup_p20 is not None:
            object.__setattr__(
                self, "within_noise", within_noise(self.speedup_p20, self.speedup_p80)
            )

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


def to_jsonable(value: Any) -> Any:
    """Dataclasses, enums, lists and dicts as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not (f.metadata.get("omit_none") and getattr(value, f.name) is None)
        }
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value
