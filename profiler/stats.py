"""Order statistics for timing samples (no numpy needed)."""

from __future__ import annotations

from collections.abc import Sequence

from kernelwright.records import SampleStats


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile, q in [0, 1] (numpy's default method)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(values: Sequence[float]) -> float:
    return quantile(values, 0.5)


def summarize(samples_ms: Sequence[float]) -> SampleStats:
    return SampleStats(
        median_ms=median(samples_ms),
        p20_ms=quantile(samples_ms, 0.2),
        p80_ms=quantile(samples_ms, 0.8),
        min_ms=min(samples_ms),
        max_ms=max(samples_ms),
        mean_ms=sum(samples_ms) / len(samples_ms),
        samples=len(samples_ms),
    )
