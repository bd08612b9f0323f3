"""The figures of `benchmarks/throughput.py`, apart from measuring them: phases per candidate,
their spreads, rates per hour, the before/after comparison and the text report. Pure functions
over stored records (tested without builds: tests/test_benchmarks_throughput.py)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

PASSES = ("cold", "variant", "warm")
DEFAULT_CANDIDATES = {"cpu": 4, "cuda": 6}
DEFAULT_SCALE = {"cpu": 4, "cuda": 1}  # problem sizes divided by it: CI-sized on the cpu
GOAL_PER_GPU_HOUR = 200.0  # issue 23

# Canonical phases, in the order they are printed: (name, where the seconds come from, holds
# the device). `phases_s` keys of the evaluation record map onto them; keys this script does not
# know (the harness changes) are printed under their own name and counted as holding the device.
PHASE_KEYS = {
    "reference_s": "reference",
    "build_wait_s": "build wait",
    "candidate_s": "verify + time",
    "verify_s": "verify",
    "time_s": "time",
    "timing_s": "time",
    "compiled_reference_s": "torch.compile baseline",
    "profile_s": "profile",
}
OVERLAPPABLE = {
    "build wait",
    "build (in its worker)",
    "build worker start",
    "evaluation, other",
    "store",
    "llm",
}
# Printed, not summed into the candidate's total: they happen inside another phase.
INSIDE = {"build (in its worker)", "build worker start"}
NOT_SEPARATED = (
    "verify and time are one phase in the records (`candidate_s`: the candidate worker's cases, "
    "timing, re-check and spot checks, with that worker's start when the prestarted one was not "
    "used); where the timing records its own wall (`timing.observed.timing_wall_s`) it is split "
    "into `time` and `verify (+ checks)`, the latter holding everything else of `candidate_s`;",
    "process start is no phase of its own: the reference worker's start is inside `reference`, "
    "the spot-check worker's inside `verify + time`, the candidate worker is prestarted while "
    "the build runs; only the build worker's start is derived (reference + build wait - "
    "compile_s, where the evaluation waited for the build);",
    "the build (`compile_s`, in its worker) overlaps the reference; `build wait` is the part of "
    "it on the critical path, and includes making the precompiled headers after the first build;",
    "store is measured by this script (seconds in the history's writes), not recorded;",
    "static checks, loading and cleaning up are only the remainder `evaluation, other`.",
)


# -- pure figures (tested without builds) -------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    median: float
    p20: float
    p80: float
    n: int

    def text(self, digits: int = 2) -> str:
        if self.n == 1:
            return f"{self.median:.{digits}f}"
        return f"{self.median:.{digits}f} ({self.p20:.{digits}f}-{self.p80:.{digits}f})"


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default), q in [0, 100]."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def spread(values: Iterable[float]) -> Spread | None:
    found = [float(v) for v in values]
    if not found:
        return None
    return Spread(percentile(found, 50), percentile(found, 20), percentile(found, 80), len(found))


def per_hour(count: float, seconds: float) -> float | None:
    """Candidates per hour at `seconds` for `count` of them; None when no time was measured."""
    return 3600.0 * count / seconds if seconds > 0 else None


@dataclass
class Sample:
    """One candidate of a pass: the stored record's figures and this script's measurements."""

    candidate: str
    problem: str
    status: str
    cached: bool
    phases_s: dict[str, float] = field(default_factory=dict)  # the evaluation's, as stored
    compile_s: float | None = None
    evaluation_wall_s: float | None = None  # executor.evaluate, measured here
    store_s: float = 0.0  # the history's writes for it, measured here
    llm_s: float = 0.0  # latency of the calls that produced and reviewed it, as stored
    timing_wall_s: float | None = None  # the timing protocol's own wall, where the record has it


def phases_of(sample: Sample) -> dict[str, float]:
    """One candidate's seconds by canonical phase (see PHASE_KEYS and INSIDE)."""
    out: dict[str, float] = {}
    for key, seconds in sample.phases_s.items():
        name = PHASE_KEYS.get(key, key.removesuffix("_s").replace("_", " "))
        out[name] = out.get(name, 0.0) + float(seconds)
    both = out.get("verify + time")
    if both is not None and sample.timing_wall_s is not None:  # the timing says its own wall
        del out["verify + time"]
        out["verify (+ checks)"] = max(0.0, both - sample.timing_wall_s)
        out["time"] = min(both, sample.timing_wall_s)
    if sample.compile_s is not None:
        out["build (in its worker)"] = float(sample.compile_s)
        waited = sample.phases_s.get("build_wait_s", 0.0)
        # Where the evaluation waited for a build that reported its seconds, the build's wall
        # is known: from its start (just before the reference) to the end of the wait.
        if waited > 0.05 and sample.compile_s > 0:
            start = sample.phases_s.get("reference_s", 0.0) + waited - sample.compile_s
            out["build worker start"] = max(0.0, start)
    recorded = sum(float(v) for v in sample.phases_s.values())
    if sample.evaluation_wall_s is not None and sample.phases_s:
        out["evaluation, other"] = max(0.0, sample.evaluation_wall_s - recorded)
    out["store"] = sample.store_s
    out["llm"] = sample.llm_s
    return out


def device_seconds(phases: dict[str, float]) -> float:
    """Seconds a candidate held the device: every phase that is not overlappable or inside."""
    return sum(v for k, v in phases.items() if k not in OVERLAPPABLE and k not in INSIDE)


def candidate_seconds(phases: dict[str, float]) -> float:
    """A candidate's own seconds, end to end (phases inside others not counted twice)."""
    return sum(v for k, v in phases.items() if k not in INSIDE)


def aggregate(
    samples: list[Sample], wall_s: float, reference_checks: list[float] | None = None
) -> dict[str, Any]:
    """A pass's figures: per phase spreads, device and overlappable shares, rates per hour.

    `reference_checks`: seconds of each problem's reference check before its first LLM call
    (the loop runs it outside every evaluation, and the evaluations then find its outputs
    cached); each candidate gets an equal share, as device seconds."""
    count = len(samples)
    checks = [float(c) for c in reference_checks or []]
    per = [phases_of(s) for s in samples]
    if checks:
        for phases in per:
            phases["reference check (share)"] = sum(checks) / count
    names: list[str] = []
    for phases in per:
        names += [n for n in phases if n not in names]
    phase_spreads = {n: spread(p[n] for p in per if n in p) for n in names}
    device = spread(device_seconds(p) for p in per)
    own = spread(candidate_seconds(p) for p in per)
    overlap = spread(candidate_seconds(p) - device_seconds(p) for p in per)
    check_spread = spread(checks)
    accounted = sum(candidate_seconds(p) for p in per)
    statuses = sorted({x.status for x in samples})
    return {
        "candidates": count,
        "statuses": {s: sum(x.status == s for x in samples) for s in statuses},
        "cached_builds": sum(s.cached for s in samples),
        "wall_s": round(wall_s, 3),
        "per_hour": per_hour(count, wall_s),
        "seconds_per_candidate": wall_s / count if count else None,
        "loop_other_s": (wall_s - accounted) / count if count else None,
        "reference_checks": asdict(check_spread) if check_spread else None,
        "phases": {n: asdict(v) for n, v in phase_spreads.items() if v is not None},
        "candidate_s": asdict(own) if own else None,
        "device_s": asdict(device) if device else None,
        "overlappable_s": asdict(overlap) if overlap else None,
        "device_bound_per_hour": per_hour(1, device.median) if device else None,
        "device_share": (
            sum(device_seconds(p) for p in per) / wall_s if wall_s > 0 and per else None
        ),
    }


def render(figures: dict[str, Any]) -> str:
    """The report as text: one block per pass, then what the records do not separate."""
    target, unit = figures["target"], "GPU" if figures["target"] == "cuda" else "device"
    lines = [
        f"throughput on {target}: {figures['candidates']} candidates per pass, "
        f"{figures['layout']} layout, problem sizes / {figures.get('scale', 1)}, "
        f"profile {figures['profile']}, "
        f"{figures['machine']}",
        f"process start (python -c 'import torch', {figures['process_start']['n']} times): "
        f"{_spread_text(figures['process_start'])} s",
    ]
    for name, p in figures["passes"].items():
        statuses = ", ".join(f"{v} {k}" for k, v in p["statuses"].items())
        lines += [
            "",
            f"[{name}] {p['candidates']} candidates ({statuses}; {p['cached_builds']} cached "
            f"builds) in {p['wall_s']:.1f} s: {_num(p['per_hour'])} candidates per {unit}-hour "
            f"end to end ({_num(p['seconds_per_candidate'], 1)} s each)",
            "  seconds per candidate, median (p20-p80):",
        ]
        for phase, s in p["phases"].items():
            tag = " (inside the above)" if phase in INSIDE else ""
            share = "overlappable" if phase in OVERLAPPABLE or phase in INSIDE else "device"
            lines.append(f"    {phase:<24} {_spread_text(s):<22} {share}{tag}")
        if p.get("reference_checks"):
            lines.append(
                f"    (reference checks, once per problem before its first call: "
                f"{_spread_text(p['reference_checks'])} s each, {p['reference_checks']['n']} "
                "problems; shared out above)"
            )
        lines += [
            f"    {'loop, other (mean)':<24} {_num(p['loop_other_s'], 2):<22} overlappable",
            f"  device-exclusive {_spread_text(p['device_s'])} s, overlappable "
            f"{_spread_text(p['overlappable_s'])} s of {_spread_text(p['candidate_s'])} s; "
            f"device busy {_pct(p['device_share'])} of the wall time; ceiling if all else "
            f"overlapped: {_num(p['device_bound_per_hour'])} per {unit}-hour",
        ]
    if figures.get("comparison"):
        lines += [""] + render_comparison(figures["comparison"], unit)
    goal = figures.get("goal")
    if goal:
        lines += ["", goal]
    lines += ["", "not separated by the records:"] + [f"  - {n}" for n in NOT_SEPARATED]
    return "\n".join(lines)


def goal_line(figures: dict[str, Any]) -> str | None:
    """The issue's figure: candidates per GPU-hour in the steady state (the variant pass)."""
    steady = figures["passes"].get("variant") or next(iter(figures["passes"].values()), None)
    if steady is None or steady["per_hour"] is None:
        return None
    unit = "GPU" if figures["target"] == "cuda" else "device (cpu)"
    met = "met" if steady["per_hour"] >= GOAL_PER_GPU_HOUR else "not met"
    fixed = figures["passes"].get("warm")
    extra = (
        f"; fixed overhead per candidate with a cached build: "
        f"{_num(fixed['seconds_per_candidate'], 1)} s (candidate phases "
        f"{_spread_text(fixed['candidate_s'])} s)"
        if fixed
        else ""
    )
    return (
        f"goal >= {GOAL_PER_GPU_HOUR:.0f} candidates per GPU-hour: {_num(steady['per_hour'])} "
        f"per {unit}-hour end to end with new builds and warm caches ({met}){extra}"
    )


def compare_arms(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """One pass run both ways: each arm's seconds per candidate and rate, and after/before.

    The arms run the same problems in the same order, so the i-th candidates pair up; the
    ratio's spread is p20-p80 of the per-pair ratios of their own seconds."""
    own = {
        arm: [candidate_seconds(phases_of(Sample(**s))) for s in figures["samples"]]
        for arm, figures in (("before", before), ("after", after))
    }
    pairs = [a / b for a, b in zip(own["after"], own["before"], strict=False) if b > 0]
    ratio = spread(pairs)
    out: dict[str, Any] = {"ratio": asdict(ratio) if ratio else None}
    for arm, figures in (("before", before), ("after", after)):
        seconds = spread(own[arm])
        out[arm] = {
            "candidate_s": asdict(seconds) if seconds else None,
            "per_hour": figures["per_hour"],
            "seconds_per_candidate": figures["seconds_per_candidate"],
        }
    return out


def render_comparison(comparison: dict[str, Any], unit: str) -> list[str]:
    lines = [
        "before/after (before: every reference timer used once; after: kept for the problem's "
        "next candidate), seconds per candidate, median (p20-p80):"
    ]
    for name, c in comparison.items():
        b, a = c["before"], c["after"]
        lines.append(
            f"  [{name}] before {_spread_text(b['candidate_s'])} s, "
            f"{_num(b['per_hour'])} per {unit}-hour; after {_spread_text(a['candidate_s'])} s, "
            f"{_num(a['per_hour'])} per {unit}-hour; after/before "
            f"{_spread_text(c['ratio'])} (per candidate pair)"
        )
    return lines


def _spread_text(s: dict[str, Any] | None) -> str:
    return Spread(**s).text() if s else "-"


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f} %"
