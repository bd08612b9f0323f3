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

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


def to_jsonable(value: Any) -> Any:
    """Dataclasses, enums, lists and dicts as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value
