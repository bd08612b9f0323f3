"""Suite-level figures, as KernelBench reports them.

fast_p: the share of *all* problems whose best candidate is correct and more than p times faster
than the reference (a problem with no correct candidate counts against it; fast_0 is the share
solved correctly). The geometric mean of speedups is taken over problems with a correct candidate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

FAST_P_THRESHOLDS = (0.0, 0.5, 0.8, 1.0, 1.5, 2.0)


def fast_p(best: Mapping[str, float | None], p: float) -> float:
    """`best`: each problem's best correct speedup, or None when none was correct."""
    if not best:
        return 0.0
    return sum(1 for s in best.values() if s is not None and s > p) / len(best)


def fast_p_table(best: Mapping[str, float | None]) -> dict[str, float]:
    return {f"fast_{p:g}": fast_p(best, p) for p in FAST_P_THRESHOLDS}


def geomean(speedups: list[float]) -> float | None:
    values = [s for s in speedups if s is not None and s > 0]
    if not values:
        return None
    return math.exp(sum(math.log(s) for s in values) / len(values))
