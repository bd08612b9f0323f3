"""How sure a speedup is: the spread of the per-round ratios it is the median of.

A speedup is the median over the timing's rounds of (reference median / candidate median) in
that round (profiler/timing.py, verifier/timing_driver.py). Its spread is the 20th to the 80th
percentile of those same per-round ratios (linear interpolation, numpy's default), written
`p20-p80`. It describes how much the rounds disagreed (a loaded machine, clock drift, a kernel
whose time varies), not a confidence interval for the median: with the default 5 rounds it spans
the middle three. A figure whose p20-p80 holds 1.0 is marked "within noise": some rounds found
the candidate no faster than the reference, so the figure alone does not show it is faster (or,
below 1, slower).

Every place that prints or stores a speedup takes its spread from here: `EvaluationResult`
(`speedup_p20`, `speedup_p80`, `within_noise`), the history's evaluations (same columns), the
CLI, `runs show`, the report's error bars and the export's docstring.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kernelwright.profiler.stats import quantile
from kernelwright.records import speedup_spread_fields, within_noise

__all__ = ["cell", "fields", "from_timing", "interval", "range_cell", "text", "within_noise"]

LOW_Q, HIGH_Q = 0.2, 0.8
NAME = "p20-p80 of the per-round ratios"
NOISE_MARK = "~"
NOISE_NOTE = "within noise (the p20-p80 of its per-round ratios holds 1.0)"
LEGEND = (
    "speedup: the median of the per-round ratios, with the p20-p80 of those ratios; "
    f"{NOISE_MARK} or 'within noise': that range holds 1.0"
)


def interval(ratios: Sequence[float] | None) -> tuple[float, float] | None:
    """(p20, p80) of the per-round ratios; None where there are none."""
    values = [float(r) for r in ratios or () if r is not None]
    if not values:
        return None
    return quantile(values, LOW_Q), quantile(values, HIGH_Q)


def from_timing(timing: dict[str, Any] | None) -> tuple[float, float] | None:
    """The spread from a stored evaluation's timing JSON (`round_ratios`)."""
    return interval((timing or {}).get("round_ratios"))


def _x(value: float) -> str:
    return f"{value:.3g}"


def text(
    speedup: float | None,
    low: float | None = None,
    high: float | None = None,
    rounds: int | None = None,
) -> str:
    """`1.09x (p20-p80 1.00-1.57, within noise)`, `25.3x (p20-p80 24.1-26)`, `1.09x`, `-`;
    with `rounds`, `1.09x (median of 5 rounds, p20-p80 1.00-1.57, within noise)`."""
    if speedup is None:
        return "-"
    parts = [f"median of {rounds} rounds"] if rounds else []
    if low is not None and high is not None:
        parts.append(f"p20-p80 {_x(low)}-{_x(high)}")
        if within_noise(low, high):
            parts.append("within noise")
    return f"{_x(speedup)}x ({', '.join(parts)})" if parts else f"{_x(speedup)}x"


def cell(speedup: float | None, low: float | None = None, high: float | None = None) -> str:
    """A table cell: `1.09x~` (within noise), `25.3x`, `-`."""
    if speedup is None:
        return "-"
    return f"{_x(speedup)}x{NOISE_MARK if within_noise(low, high) else ''}"


def range_cell(low: float | None, high: float | None) -> str:
    """A table cell for the range alone: `1.00-1.57`, `-`."""
    if low is None or high is None:
        return "-"
    return f"{_x(low)}-{_x(high)}"


def fields(low: float | None, high: float | None) -> dict[str, Any]:
    """The JSON keys every record of a speedup carries beside it."""
    return speedup_spread_fields(low, high)
