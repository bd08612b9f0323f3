"""The seeded recipe that builds a model and its inputs for one correctness case.

Both workers (reference and candidate) follow it exactly, so the two models get identical
parameters and the two runs get identical inputs, each in its own process with its own copy:

    seed -> get_init_inputs() ; seed -> Model(*init) ; input_seed (default seed + 1) -> get_inputs()

A case may override module-level globals of the problem (an entry of `EXTRA_SHAPES`); the
override is applied around the calls and undone afterwards.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import torch

EXTRA_SHAPE_SEED_OFFSET = 1000
RECHECK_SEED_OFFSET = 5000


@dataclass(frozen=True)
class Case:
    index: int
    label: str
    seed: int
    overrides: dict[str, Any] = field(default_factory=dict)
    input_seed: int | None = None  # None: seed + 1
    after_timing: bool = False  # the re-check run after timing, on the timed tensors

    def to_message(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "label": self.label,
            "seed": self.seed,
            "overrides": self.overrides,
            "input_seed": self.input_seed,
            "after_timing": self.after_timing,
        }

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> Case:
        return cls(**message)


class ProblemError(Exception):
    """The problem file itself failed (not the candidate); the message names the step."""


def plan_cases(module: ModuleType, trials: int, seed: int) -> list[Case]:
    """`trials` seeded cases at the problem's own shape, then one per EXTRA_SHAPES entry."""
    cases = [Case(i, f"trial {i} (seed {seed + i})", seed + i) for i in range(trials)]
    extra = getattr(module, "EXTRA_SHAPES", [])
    if not isinstance(extra, (list, tuple)) or not all(isinstance(e, dict) for e in extra):
        raise ProblemError("EXTRA_SHAPES must be a list of dicts of module-global overrides")
    for j, overrides in enumerate(extra):
        unknown = [k for k in overrides if not hasattr(module, k)]
        if unknown:
            raise ProblemError(f"EXTRA_SHAPES entry {j} names unknown globals: {unknown}")
        shape = ", ".join(f"{k}={v}" for k, v in overrides.items())
        s = seed + EXTRA_SHAPE_SEED_OFFSET + j
        cases.append(Case(trials + j, f"extra shape {shape} (seed {s})", s, dict(overrides)))
    # Same weights as trial 0, new input values: after timing they are copied into the very
    # tensors that were timed, so a cache keyed on addresses returns stale results and fails.
    s = seed + RECHECK_SEED_OFFSET
    cases.append(Case(len(cases), f"re-check after timing (inputs seed {s})", seed, {}, s, True))
    return cases


@contextmanager
def overridden(modules: list[ModuleType], overrides: dict[str, Any]) -> Iterator[None]:
    saved: list[tuple[ModuleType, str, Any]] = []
    for module in modules:
        for name, value in overrides.items():
            if hasattr(module, name):
                saved.append((module, name, getattr(module, name)))
                setattr(module, name, value)
    try:
        yield
    finally:
        for module, name, value in reversed(saved):
            setattr(module, name, value)


def build(
    problem: ModuleType,
    model_class: type,
    case: Case,
    device: torch.device,
    also_override: list[ModuleType] | None = None,
    problem_step_errors: bool = True,
) -> tuple[torch.nn.Module, list[Any]]:
    """Construct the model and inputs for `case` on `device`.

    Failures of the problem's own functions raise ProblemError (when `problem_step_errors`);
    a failing `model_class(...)` propagates as it is, since for a candidate that is its fault.
    """
    modules = [problem, *(also_override or [])]
    with overridden(modules, case.overrides):
        seed_all(case.seed)
        init = _problem_step(problem.get_init_inputs, "get_init_inputs()", problem_step_errors)
        seed_all(case.seed)
        model = model_class(*init)
        seed_all(case.seed + 1 if case.input_seed is None else case.input_seed)
        inputs = _problem_step(problem.get_inputs, "get_inputs()", problem_step_errors)
    if not isinstance(inputs, (list, tuple)):
        raise ProblemError(f"get_inputs() returned {type(inputs).__name__}, not a list")
    if isinstance(model, torch.nn.Module):
        model = model.to(device)
    return model, [to_device(x, device) for x in inputs]


def inputs_for(
    problem: ModuleType, get_inputs: Any, case: Case, input_seed: int, device: torch.device
) -> list[Any]:
    """The case's inputs drawn from another seed, made straight on `device` (torch's factory
    functions follow the default device) where the problem's `get_inputs` allows it; else on
    the CPU. The values differ from the CPU's for the same seed, which timing does not mind."""
    with overridden([problem], case.overrides):
        seed_all(input_seed)
        try:
            with device:
                inputs = get_inputs()
        except Exception:
            seed_all(input_seed)
            inputs = _problem_step(get_inputs, "get_inputs()", True)
    if not isinstance(inputs, (list, tuple)):
        raise ProblemError(f"get_inputs() returned {type(inputs).__name__}, not a list")
    return list(inputs)


def refill(targets: list[Any], fresh: list[Any], device: torch.device) -> None:
    """Copy `fresh` into the tensors of `targets` (same addresses, new values); an entry whose
    kind, shape or dtype differs is replaced instead."""
    for i, (target, value) in enumerate(zip(targets, fresh, strict=True)):
        same = isinstance(target, torch.Tensor) and isinstance(value, torch.Tensor)
        if same and target.shape == value.shape and target.dtype == value.dtype:
            if _writable_in_place(target):
                with torch.no_grad():  # inputs made with requires_grad=True stay leaves
                    target.copy_(value)
                continue
        targets[i] = to_device(value, device)


def _writable_in_place(tensor: torch.Tensor) -> bool:
    """Whether each element has its own memory (not an `expand`ed, stride-0 view)."""
    return all(
        stride != 0 or size <= 1 for stride, size in zip(tensor.stride(), tensor.shape, strict=True)
    )


def seed_all(seed: int) -> None:
    """Seed torch, and Python's `random` and numpy's global generator too: a problem that draws
    its inputs with them gets the same inputs in the reference's and the candidate's workers."""
    torch.manual_seed(seed)
    random.seed(seed)
    numpy = sys.modules.get("numpy")  # only where the problem already imported it
    if numpy is not None:
        numpy.random.seed(seed % 2**32)


def _problem_step(fn: Any, what: str, wrap: bool) -> Any:
    if not wrap:
        return fn()
    try:
        return fn()
    except Exception as exc:
        raise ProblemError(f"{what} raised {type(exc).__name__}: {exc}") from exc


def _same_kind(value: list[Any] | tuple[Any, ...], items: list[Any]) -> Any:
    """`items` in a sequence of `value`'s type: a namedtuple takes them one by one, and a
    tuple type that takes neither form (torch.Size of tensors) becomes a plain tuple."""
    if isinstance(value, list):
        return list(items)
    try:
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    except (TypeError, ValueError):
        return tuple(items)


def to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return _same_kind(value, [to_device(v, device) for v in value])
    return value


def clone_inputs(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, (list, tuple)):
        return _same_kind(value, [clone_inputs(v) for v in value])
    return value


def to_cpu(value: Any) -> Any:
    """Outputs as CPU data that `torch.load(weights_only=True)` accepts: tuples of any kind
    (`torch.max(x, dim)`'s values/indices, namedtuples, torch.Size) as plain tuples, numbers of
    any kind (numpy's float64) as Python's own."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, list):
        return [to_cpu(v) for v in value]
    if isinstance(value, tuple):
        return tuple(to_cpu(v) for v in value)
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if value is None:
        return value
    for kind in (bool, int, float):  # bool first: it is an int
        if isinstance(value, kind) or _numpy_scalar_of(value, kind):
            return kind(value)
    raise TypeError(f"output of type {type(value).__name__} is not a tensor, tuple, list or number")


def _numpy_scalar_of(value: Any, kind: type) -> bool:
    """numpy's int32/float32/bool_ scalars (not Python subclasses, unlike float64)."""
    module = type(value).__module__
    if module != "numpy" or not hasattr(value, "item"):
        return False
    return isinstance(value.item(), kind)


def output_nbytes(value: Any) -> list[int]:
    """Byte sizes of the tensors in an output structure (for poisoning the allocator)."""
    if isinstance(value, torch.Tensor):
        return [value.numel() * value.element_size()]
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in output_nbytes(v)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in output_nbytes(v)]
    return []
