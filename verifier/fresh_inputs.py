"""New input values before every timed sample, so that no call sees values it has seen before.

A kernel that caches its results keyed on its inputs' contents (an address plus a few sampled
values, or a full hash) passes every correctness check, because each check uses values it has
not seen; if the timing then repeated one set of inputs, it would time cache lookups. So before
each sample (outside the timed window) the problem's own `get_inputs()` draws a new set from a
seed nobody can predict (drawn after the candidate is imported), and the values are copied into
the tensors being timed: the addresses stay, so an address-keyed cache still returns stale
results and fails the re-check after timing.

A problem whose `get_inputs()` is slow would stretch the timing without bound, so refreshing
stops after `budget_s` seconds spent on it; the report says how many samples got new values.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from types import ModuleType
from typing import Any

import torch
from kernelwright.verifier.cases import Case, inputs_for, refill


class InputRefresher:
    def __init__(
        self,
        problem: ModuleType,
        case: Case,
        targets: list[Any],
        device: torch.device,
        budget_s: float,
    ) -> None:
        self._problem = problem
        self._get_inputs = problem.get_inputs  # taken now: later rebinding does not reach us
        self._case = case
        self._targets = targets
        self._device = device
        self._budget_s = budget_s
        self._random = secrets.SystemRandom()
        self.refreshed = 0
        self.skipped = 0
        self.seconds = 0.0

    def __call__(self) -> None:
        if self.seconds >= self._budget_s:
            self.skipped += 1
            return
        started = time.perf_counter()
        seed = self._random.randrange(1 << 62)
        fresh = inputs_for(self._problem, self._get_inputs, self._case, seed, self._device)
        refill(self._targets, fresh, self._device)
        self.refreshed += 1
        self.seconds += time.perf_counter() - started

    def summary(self) -> dict[str, Any]:
        note = ""
        if self.skipped:
            note = (
                f"get_inputs() is slow: new values stopped after {self._budget_s:g} s, "
                f"{self.skipped} calls reused the last ones"
            )
        return {
            "refreshed": self.refreshed,
            "reused": self.skipped,
            "seconds": round(self.seconds, 3),
            "note": note,
        }


def measure(
    first: Callable[[], Any],
    second: Callable[[], Any],
    clock: Any,
    settings: Any,
    problem: ModuleType,
    case: Case,
    inputs: tuple[list[Any], list[Any]],
    device: torch.device,
) -> Any:
    """`timing.measure` of two calls, each side's inputs (its own tensors) refilled before every
    sample; the report's `input_refresh` says how many samples got new values."""
    from kernelwright.profiler import timing

    budget = settings.refresh_budget_s
    refresh = [InputRefresher(problem, case, side, device, budget) for side in inputs]
    report = timing.measure(first, second, clock, settings, *refresh)
    return replace(report, input_refresh=combined(*refresh))


def combined(*refreshers: InputRefresher) -> dict[str, Any]:
    """One summary for both sides of a timing."""
    parts = [r.summary() for r in refreshers]
    return {
        "refreshed": sum(p["refreshed"] for p in parts),
        "reused": sum(p["reused"] for p in parts),
        "seconds": round(sum(p["seconds"] for p in parts), 3),
        "note": next((p["note"] for p in parts if p["note"]), ""),
    }
