"""Dynamic anti-cheat checks that run inside the candidate's worker, around each call.

Each check raises `Rejected(check, message)`; the worker reports it and the candidate ends
`rejected` with that check's name. These complement the static checks (which refuse most of these
constructs outright) for code that hides them: native code, obfuscated Python.

- `patched_harness`: timers, synchronisation, copying and saving functions, and the harness's own
  functions must be the very objects they were before the candidate was imported;
- `threads`: no Python thread the candidate started may still be alive after a call;
- `inputs_modified`: every input holds exactly its values from before the call;
- `output_type`: outputs are plain `torch.Tensor`s (no subclass, no Parameter) with real storage on
  the target device;
- poisoning: before each call the caching allocator is handed blocks of the outputs' sizes filled
  with NaN bytes, so a kernel that leaves part of its output unwritten returns NaN, not stale data.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import torch
from kernelwright.verifier.check_names import Check


class Rejected(Exception):
    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"{check}: {message}")
        self.check = check
        self.message = message


def _protected(harness_modules: list[Any]) -> list[tuple[Any, str]]:
    """Functions whose identity must not change: torch's timing, copying and comparing, and
    every callable of the harness modules (and classes) given."""
    pairs: list[tuple[Any, str]] = [
        (time, "perf_counter"),
        (time, "perf_counter_ns"),
        (time, "time"),
        (time, "monotonic"),
        (torch, "save"),
        (torch, "load"),
        (torch, "equal"),
        (torch, "allclose"),
        (torch, "manual_seed"),
        (torch, "no_grad"),
        (torch, "empty"),
        (torch.Tensor, "clone"),
        (torch.Tensor, "copy_"),
        (torch.Tensor, "to"),
        (torch.Tensor, "cpu"),
        (torch.Tensor, "detach"),
        (torch.Tensor, "zero_"),
        (torch.Tensor, "fill_"),
        (torch.Tensor, "__eq__"),
        (torch.nn.Module, "__call__"),
        (torch.cuda, "synchronize"),
        (torch.cuda.Event, "record"),
        (torch.cuda.Event, "elapsed_time"),
        (torch.cuda.Event, "synchronize"),
        (threading, "enumerate"),
    ]
    for module in harness_modules:
        pairs += [(module, name) for name, value in vars(module).items() if callable(value)]
    return pairs


def _interposers() -> dict[str, int]:
    """How many torch function and dispatch modes are active, and how many global nn.Module
    hooks are set: each runs on the reference's calls too, so a candidate could slow it down."""
    import torch.nn.modules.module as module_module

    counts = {}
    for what, name in (
        ("a torch function mode", "_len_torch_function_stack"),
        ("a torch dispatch mode", "_len_torch_dispatch_stack"),
    ):
        length = getattr(torch._C, name, None)
        if length is not None:
            counts[what] = length()
    for name, value in vars(module_module).items():
        if name.startswith("_global_") and name.endswith("hooks") and isinstance(value, dict):
            counts[f"a global module hook ({name})"] = len(value)
    return counts


def settle_torch() -> None:
    """Let torch rebind its own functions before a snapshot is taken.

    Running the profiler (the kernel-launch check) imports torch._dynamo, which wraps
    `torch.manual_seed` and friends; importing it first keeps that from looking like tampering.
    """
    try:
        import torch._dynamo  # noqa: F401
    except Exception:  # an old or trimmed torch without dynamo rebinds nothing
        pass


def _reassigned_globals(module: Any) -> set[str]:
    """Globals a module's own functions rebind (`global _MASK; _MASK = ...`): the reference's
    caches change as it runs, and only its own code reaches them (a candidate's reach into the
    problem module is rejected before it runs)."""
    import ast

    try:
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, TypeError, AttributeError, ValueError):
        return set()
    return {name for node in ast.walk(tree) if isinstance(node, ast.Global) for name in node.names}


_GONE = object()


def _insides(value: Any) -> dict[str, Any]:
    """What `value` runs, by identity: a class's own entries (methods, class attributes), a
    function's code, defaults and closure cells' contents; nothing for other objects."""
    if isinstance(value, type):
        return {name: id(entry) for name, entry in vars(value).items()}
    code = getattr(value, "__code__", None)
    if code is None:
        return {}
    cells = tuple(id(_cell(c)) for c in getattr(value, "__closure__", None) or ())
    defaults = (id(value.__defaults__), id(value.__kwdefaults__))
    return {"__code__": id(code), "defaults": defaults, "cells": cells}


def _still(value: Any, insides: dict[str, Any]) -> bool:
    """`value` holds what it held: every entry as it was, and no new one but dunders (copyreg
    adds `__slotnames__` to a class the first time one of its objects is saved)."""
    now = _insides(value)
    added = now.keys() - insides.keys()
    return all(now.get(k, _GONE) == v for k, v in insides.items()) and all(
        k.startswith("__") for k in added
    )


def _cell(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # not filled yet
        return _GONE


class HarnessGuard:
    """Remembers the harness's functions before candidate code runs; `check()` compares."""

    def __init__(self, harness_modules: list[Any], frozen: list[Any] = ()) -> None:
        """`harness_modules`: modules or classes (the reference's `Model`) whose functions must
        hold still; `frozen`: modules (the problem) every global of which must (its `torch`, a
        size), since the reference runs through them in this process."""
        pairs = _protected(harness_modules)
        for module in frozen:
            own_state = _reassigned_globals(module)
            pairs += [(module, name) for name in vars(module) if name not in own_state]
        self._saved = [(owner, name, getattr(owner, name)) for owner, name in pairs]
        # What lies inside those objects, where code (native code through the C API, say) could
        # change it and keep the object: a class's own entries, a function's code and defaults.
        self._insides = [(value, _insides(value)) for _, _, value in self._saved]
        # Whatever the reference computes with, by any spelling (`T = torch.Tensor; T.__mul__ =
        # slow`): the raw entries, since a classmethod looked up is a new object every time.
        self._entries = [(ns, dict(vars(ns))) for ns in (torch, torch.Tensor, torch.nn.functional)]
        self._tensor_entries, self._tensor_names = set(vars(torch.Tensor)), set(dir(torch.Tensor))
        self._threads = {t.ident for t in threading.enumerate()}
        self._interposers = _interposers()

    def check(self) -> None:
        for owner, name, value in self._saved:
            if getattr(owner, name, None) is not value:
                where = getattr(owner, "__name__", type(owner).__name__)
                raise Rejected(Check.PATCHED_HARNESS, f"replaced `{where}.{name}`")
        for value, insides in self._insides:
            if not _still(value, insides):
                where = getattr(value, "__qualname__", type(value).__name__)
                raise Rejected(Check.PATCHED_HARNESS, f"changed what `{where}` holds")
        for owner, entries in self._entries:
            now_entries = vars(owner)
            for name, value in entries.items():
                if now_entries.get(name, _GONE) is not value:
                    raise Rejected(Check.PATCHED_HARNESS, f"replaced `{owner.__name__}.{name}`")
        # A new entry of Tensor's that shadows TensorBase's own (`__mul__`); new names of its
        # own (copyreg's `__slotnames__`) or torch's (lazy submodules) shadow nothing.
        shadowing = (set(vars(torch.Tensor)) - self._tensor_entries) & self._tensor_names
        if shadowing:
            raise Rejected(Check.PATCHED_HARNESS, f"replaced `Tensor.{min(shadowing)}`")
        now = _interposers()
        for what, count in now.items():
            if count != self._interposers.get(what):
                raise Rejected(Check.PATCHED_HARNESS, f"installed {what} around every torch call")
        extra = [t for t in threading.enumerate() if t.ident not in self._threads and t.is_alive()]
        if extra:
            raise Rejected(Check.THREADS, f"left {len(extra)} thread(s) running: {extra[0].name}")

    def allow_threads_of(self, reference: Any) -> None:
        """Run the reference once and accept the threads it leaves (a `torch.compile`d reference
        starts a compile pool): checked first, so that none of the candidate's is among them."""
        self.check()
        reference()
        self._threads |= {t.ident for t in threading.enumerate()}


def poison(device: torch.device, sizes: list[int]) -> None:
    """Hand the allocator NaN-filled blocks of the expected output sizes (0xFF.. is NaN)."""
    blocks = [torch.empty(n, dtype=torch.uint8, device=device).fill_(0xFF) for n in sizes if n > 0]
    del blocks


def snapshot_inputs(inputs: list[Any]) -> list[Any]:
    return [x.detach().clone() if isinstance(x, torch.Tensor) else x for x in inputs]


def check_inputs_unchanged(before: list[Any], after: list[Any]) -> None:
    for i, (old, new) in enumerate(zip(before, after, strict=True)):
        if isinstance(old, torch.Tensor):
            same = (
                isinstance(new, torch.Tensor)
                and new.shape == old.shape
                and new.dtype == old.dtype
                and _nan_equal(new, old)
            )
            if not same:
                raise Rejected(Check.INPUTS_MODIFIED, f"input {i} was changed by the candidate")


# Bound when the harness is imported, before any candidate code: rebinding `torch.isnan` later
# (through `torch.__dict__`, say) cannot reach these checks.
_equal, _isnan = torch.equal, torch.isnan


def _nan_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    if _equal(a, b):
        return True
    if not (a.dtype.is_floating_point or a.dtype.is_complex):
        return False
    return bool(((a == b) | (_isnan(a) & _isnan(b))).all())


def check_outputs(value: Any, device: torch.device, where: str = "output") -> None:
    if isinstance(value, torch.Tensor):
        if type(value) is not torch.Tensor:
            # a subclass can run code of its own when the harness reads it; `.detach()` of a
            # Parameter the reference also returns is the plain tensor to hand back
            hint = " (return `.detach()` of it)" if isinstance(value, torch.nn.Parameter) else ""
            raise Rejected(
                Check.OUTPUT_TYPE, f"{where} is a {type(value).__name__}, not a plain tensor{hint}"
            )
        if value.device.type != device.type:
            raise Rejected(Check.OUTPUT_TYPE, f"{where} is on {value.device}, not on {device.type}")
        if value.is_meta:
            raise Rejected(Check.OUTPUT_TYPE, f"{where} has no real storage behind it")
        if value.layout != torch.strided or value.is_nested:
            raise Rejected(
                Check.OUTPUT_TYPE, f"{where} is a {value.layout} tensor, not a dense one"
            )
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_outputs(item, device, f"{where}[{i}]")
