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

import ctypes
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


class SpotChecks:
    """Keeps `size` of the timed calls' outputs, with the seeds their inputs were drawn from, for
    the parent to check against a clean reference afterwards (`worker.spot_reference`).

    Outputs of timed calls are otherwise never checked, and a candidate can often tell a checked
    call from a timed one (the seed, the call stack, the harness's own ops around a check). Which
    calls are kept is decided after each call returned, by reservoir sampling from a secret
    random source: every timed call is equally likely to be checked, and nothing the candidate
    sees while it runs says which."""

    def __init__(self, refresher: InputRefresher, device: torch.device, size: int) -> None:
        self._refresher = refresher
        self._device = device
        self._size = size
        self._random = secrets.SystemRandom()
        self._seen = 0
        self._pending: tuple[int, Any] | None = None
        self.kept: list[tuple[int, Any]] = []

    def call(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        """`fn`, remembering its output and the seed of the inputs it saw."""

        def timed() -> Any:
            output = fn()
            seed = self._refresher.seed
            self._pending = (seed, output) if seed is not None else None
            return output

        return timed

    def prepare(self) -> None:
        """Before each timed call: settle the last one, then draw new inputs."""
        self.settle()
        self._refresher()

    def settle(self) -> None:
        from kernelwright.verifier.guards import Rejected, check_outputs

        if self._pending is None or self._size <= 0:
            return
        seed, output = self._pending
        self._pending = None
        self._seen += 1
        full = len(self.kept) >= self._size
        slot = self._random.randrange(self._seen) if full else len(self.kept)
        # Read before anything of torch runs: a candidate that finishes its work later (at the
        # harness's next allocation or op, from a thread) returns an output still changing.
        early = _memory(output) if slot < self._size else None
        check_outputs(output, self._device, "a timed call's output")
        if early is None:
            return
        kept = (seed, _copy(output))
        if _memory(output) != early:
            raise Rejected(
                "late_output",
                "a timed call's output changed after the call returned: its work ran after "
                "the timer stopped",
            )
        if full:
            self.kept[slot] = kept
        else:
            self.kept.append(kept)


def _memory(value: Any) -> list[bytes]:
    """The bytes of every CPU tensor in `value`, read straight from memory (no torch op runs and
    nothing is allocated through torch); nothing for tensors on a GPU."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [part for item in value for part in _memory(item)]
    if type(value) is not torch.Tensor:  # anything else is refused by check_outputs
        return []
    if value.device.type != "cpu" or value.layout != torch.strided or value.is_nested:
        return []
    if value.numel() == 0:
        return []
    shape = zip(value.shape, value.stride(), strict=True)
    span = 1 + sum((size - 1) * stride for size, stride in shape)
    return [ctypes.string_at(value.data_ptr(), span * value.element_size())]


def _copy(value: Any) -> Any:
    """A kept output, detached from tensors later calls overwrite (an output may be an input);
    saved through `cases.to_cpu` later, which makes every tuple a plain one anyway."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_copy(v) for v in value)
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
    spot_checks: int = 0,
) -> tuple[Any, list[tuple[int, Any]]]:
    """`timing.measure` of two calls, each side's inputs (its own tensors) refilled before every
    sample; the report's `input_refresh` says how many samples got new values. With
    `spot_checks`, also that many of the second call's timed outputs and their inputs' seeds."""
    from kernelwright.profiler import timing

    budget = settings.refresh_budget_s
    refresh = [InputRefresher(problem, case, side, device, budget) for side in inputs]
    # both sides through the same wrapper, so that its few instructions weigh on both alike
    sides = (SpotChecks(refresh[0], device, 0), SpotChecks(refresh[1], device, spot_checks))
    calls = (sides[0].call(first), sides[1].call(second))
    report = timing.measure(
        *calls,
        clock,
        settings,
        sides[0].prepare,
        sides[1].prepare,
        another_round=lambda: not any(r.over_budget for r in refresh),
    )
    spots = sides[1]
    spots.settle()
    summary = combined(*refresh)
    rounds = len(report.round_ratios)
    if rounds < settings.rounds:
        summary["note"] = (
            f"get_inputs() is slow: {summary['seconds']:.3g} s spent making new values, so "
            f"timing stopped after {rounds} of {settings.rounds} rounds"
        )
    return replace(report, input_refresh=summary), spots.kept


def combined(*refreshers: InputRefresher) -> dict[str, Any]:
    """One summary for both sides of a timing."""
    parts = [r.summary() for r in refreshers]
    return {
        "refreshed": sum(p["refreshed"] for p in parts),
        "seconds": round(sum(p["seconds"] for p in parts), 3),
        "note": "",
    }
