"""New input values before every timed sample, so that no call sees values it has seen before.

A kernel that caches its results keyed on its inputs' contents (an address plus a few sampled
values, or a full hash) passes every correctness check, because each check uses values it has
not seen; if the timing then repeated one set of inputs, it would time cache lookups. So before
each sample (outside the timed window) the problem's own `get_inputs()` draws a new set from a
seed nobody can predict (drawn after the candidate is imported), and the values are copied into
the tensors being timed: the addresses stay, so an address-keyed cache still returns stale
results and fails the re-check after timing.

A problem whose `get_inputs()` is slow would stretch the timing without bound. Reusing values
once a time budget is spent would reopen the hole (a content-keyed memo replays on every reused
call, and its outputs are right), so every timed call always gets new values, and instead the
timing runs fewer rounds: none starts after `budget_s` seconds spent on either side, past the
first two (one in each order). The report says how many rounds ran and why.
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
        self.seconds = 0.0
        self.seed: int | None = None  # the seed of the values the next call sees

    @property
    def over_budget(self) -> bool:
        return self.seconds >= self._budget_s

    def __call__(self) -> None:
        self.seed = None
        started = time.perf_counter()
        seed = self._random.randrange(1 << 62)
        fresh = inputs_for(self._problem, self._get_inputs, self._case, seed, self._device)
        refill(self._targets, fresh, self._device)
        self.seed = seed
        self.refreshed += 1
        self.seconds += time.perf_counter() - started

    def summary(self) -> dict[str, Any]:
        return {"refreshed": self.refreshed, "seconds": round(self.seconds, 3)}


def copy_output(value: Any) -> Any:
    """A kept output, detached from tensors later calls overwrite (an output may be an input);
    saved through `cases.to_cpu` later, which makes every tuple a plain one anyway."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: copy_output(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_output(v) for v in value]
    if isinstance(value, tuple):
        return tuple(copy_output(v) for v in value)
    return value


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
    """`timing.measure` of two calls in this process, each side's inputs (its own tensors)
    refilled before every sample; the report's `input_refresh` says how many samples got new
    values. Only for two sides that are both trusted (eager and `torch.compile` of the
    reference): a candidate is timed in its own worker (`timing_driver`)."""
    from kernelwright.profiler import timing

    budget = settings.refresh_budget_s
    refresh = [InputRefresher(problem, case, side, device, budget) for side in inputs]
    report = timing.measure(
        first,
        second,
        clock,
        settings,
        refresh[0],
        refresh[1],
        another_round=lambda: not any(r.over_budget for r in refresh),
    )
    summary = combined(*refresh)
    rounds = len(report.round_ratios)
    if rounds < settings.rounds:
        summary["note"] = slow_inputs_note(summary["seconds"], rounds, settings.rounds)
    return replace(report, input_refresh=summary)


def slow_inputs_note(seconds: float, rounds: int, planned: int) -> str:
    return (
        f"get_inputs() is slow: {seconds:.3g} s spent making new values, so "
        f"timing stopped after {rounds} of {planned} rounds"
    )


def combined(*refreshers: InputRefresher) -> dict[str, Any]:
    """One summary for both sides of a timing."""
    parts = [r.summary() for r in refreshers]
    return {
        "refreshed": sum(p["refreshed"] for p in parts),
        "seconds": round(sum(p["seconds"] for p in parts), 3),
        "note": "",
    }
