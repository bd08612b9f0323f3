"""The hotspots worker: runs the user's model in an isolated worker and says where its time goes.

Started by `kernelwright.hotspots` as `python -m kernelwright.hotspots_worker FD` through
`runner.isolation.Worker` (the isolation every problem and candidate gets). It imports the model's
KernelBench wrapper (`user_problem.resolve_problem`), and

- wraps the `__init__` of every `torch.nn.Module` subclass while the model is constructed, so each
  submodule's own constructor call is recorded (positional and keyword arguments);
- runs forward once with forward pre-hooks on every submodule that record the inputs it is
  actually called with (dtypes, shapes, contiguity, keyword arguments);
- profiles `repeats` forward passes with `torch.profiler`, one profile each, each submodule's
  call inside a `record_function` range opened and closed by its hooks: a range's total time is
  the module's total time, less the ranges of the modules called inside it its self time (on
  `cuda` the device time of the kernels launched inside the range; on `cpu` the CPU time); self
  times are medians over the passes, a module's total is its self time plus its submodules', and
  `profiled_us` (what shares are of) is the sum of all self times, so they add up to 1;
- answers one JSON message: the forward's wall time and one entry per submodule.

Nothing here decides anything: the parent (`kernelwright.hotspots`) groups, ranks and writes the
problems. User code runs only here.
"""

from __future__ import annotations

import inspect
import math
import os
import time
import traceback
from pathlib import Path
from typing import Any

from kernelwright.runner.isolation import Channel

RANGE = "kw.module::"
ROOT = "<model>"

# torch.nn layers whose constructor arguments can be read back from their attributes, used where
# the recorded call has arguments that are not literals (a dtype, a device, an object).
_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "Linear": ("in_features", "out_features", "bias?"),
    "LayerNorm": ("normalized_shape", "eps", "elementwise_affine"),
    "RMSNorm": ("normalized_shape", "eps", "elementwise_affine"),
    "GroupNorm": ("num_groups", "num_channels", "eps", "affine"),
    "Embedding": ("num_embeddings", "embedding_dim"),
    "GELU": ("approximate",),
    "Softmax": ("dim",),
    "Dropout": ("p",),
    "ReLU": (),
    "SiLU": (),
    "Tanh": (),
    "Sigmoid": (),
    "Identity": (),
}


def literal(value: Any) -> bool:
    """Whether `value` can be written into a problem file as a Python literal."""
    if isinstance(value, (list, tuple)):
        return all(literal(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (bool, int, str))


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _subclasses(base: type) -> list[type]:
    found, stack = [], [base]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in found:
                found.append(sub)
                stack.append(sub)
    return found


class InitRecorder:
    """Records the outermost constructor call of each module built while it is active."""

    def __init__(self) -> None:
        self.calls: dict[int, tuple[type, tuple[Any, ...], dict[str, Any]]] = {}
        self._undo: list[tuple[type, Any]] = []

    def __enter__(self) -> InitRecorder:
        import torch

        for cls in [torch.nn.Module, *_subclasses(torch.nn.Module)]:
            original = cls.__dict__.get("__init__")
            if original is None or cls is torch.nn.Module:
                continue
            cls.__init__ = self._wrap(cls, original)
            self._undo.append((cls, original))
        return self

    def _wrap(self, cls: type, original: Any) -> Any:
        calls = self.calls

        def __init__(module: Any, *args: Any, **kwargs: Any) -> None:
            # the most derived class's __init__ runs first: later (super) calls are not recorded
            calls.setdefault(id(module), (type(module), args, kwargs))
            original(module, *args, **kwargs)

        __init__.__wrapped__ = original  # type: ignore[attr-defined]
        return __init__

    def __exit__(self, *exc: object) -> None:
        for cls, original in reversed(self._undo):
            cls.__init__ = original


def constructor(module: Any, recorded: tuple[type, tuple[Any, ...], dict[str, Any]] | None) -> dict:
    """The module's constructor arguments as a positional list, and how they were recovered."""
    why = "no constructor call was recorded"
    if recorded is not None and recorded[0] is type(module):
        _, args, kwargs = recorded
        try:
            positional = _positional(type(module), args, kwargs)
        except (TypeError, ValueError) as exc:
            positional, why = None, f"the recorded call cannot be made positional ({exc})"
        if positional is not None:
            if literal(positional):
                return {"args": _plain(positional), "how": "recorded constructor call"}
            why = "the recorded constructor call has arguments that are not literals"
    attrs = _ATTRIBUTES.get(type(module).__name__)
    if attrs is not None and type(module).__module__.startswith("torch.nn"):
        values = []
        for name in attrs:
            if name.endswith("?"):
                values.append(getattr(module, name[:-1], None) is not None)
            else:
                values.append(getattr(module, name))
        if literal(values):
            return {"args": _plain(values), "how": "read back from the torch.nn layer's attributes"}
    return {"args": None, "how": None, "why": why}


def _positional(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any] | None:
    if not kwargs:
        return list(args)
    signature = inspect.signature(cls.__init__)
    bound = signature.bind(None, *args, **kwargs)
    params = list(signature.parameters.values())[1:]
    given = bound.arguments
    out: list[Any] = []
    last = max((i for i, p in enumerate(params) if p.name in given), default=-1)
    for param in params[: last + 1]:
        if param.kind not in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            raise ValueError(f"{param.name} is keyword-only or variadic")
        if param.name in given:
            out.append(given[param.name])
        elif param.default is not param.empty:
            out.append(param.default)
        else:
            raise ValueError(f"{param.name} has no value")
    return out


def describe_input(value: Any) -> dict[str, Any]:
    import torch

    if isinstance(value, torch.Tensor):
        return {
            "kind": "tensor",
            "dtype": str(value.dtype).removeprefix("torch."),
            "shape": list(value.shape),
            "contiguous": bool(value.is_contiguous()),
        }
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return {"kind": "other", "type": type(value).__name__}
    return {"kind": "number", "value": value}


def profile(request: dict[str, Any]) -> dict[str, Any]:
    import torch
    from kernelwright.compiler.loader import import_problem
    from kernelwright.verifier.worker_common import device_for, sync

    device = device_for(request["target"])
    problem = import_problem(Path(request["problem"]))
    torch.manual_seed(int(request.get("seed", 42)))
    init = problem.get_init_inputs()
    with InitRecorder() as recorder:
        model = problem.Model(*init)
    inputs = [x.to(device) if isinstance(x, torch.Tensor) else x for x in problem.get_inputs()]
    model = model.to(device)
    names = {id(m): name for name, m in model.named_modules()}
    seen: dict[str, dict[str, Any]] = {}
    ranges: dict[int, list[Any]] = {}
    profiling = {"on": False}

    def pre_hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        path = names.get(id(module), "?")
        entry = seen.setdefault(path, {"calls": 0, "signatures": []})
        entry["calls"] += 1
        signature = {
            "args": [describe_input(a) for a in args],
            "kwargs": sorted(kwargs),
        }
        if signature not in entry["signatures"] and len(entry["signatures"]) < 4:
            entry["signatures"].append(signature)
        if profiling["on"]:
            scope = torch.profiler.record_function(RANGE + (path or ROOT))
            scope.__enter__()
            ranges.setdefault(id(module), []).append(scope)

    def post_hook(module: Any, args: tuple[Any, ...], output: Any) -> None:
        stack = ranges.get(id(module))
        if profiling["on"] and stack:
            stack.pop().__exit__(None, None, None)

    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
        handles.append(module.register_forward_hook(post_hook))
    repeats = max(1, int(request.get("repeats", 5)))
    with torch.no_grad():
        model(*inputs)  # shapes, and warm-up
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            model(*inputs)
        sync(device)
        forward_ms = (time.perf_counter() - start) * 1000 / repeats
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        for entry in seen.values():
            entry["calls"] = 0
        profiling["on"] = True
        passes = []
        for _ in range(repeats):  # one profile per pass: medians over passes resist a hiccup
            with torch.profiler.profile(activities=activities) as prof:
                model(*inputs)
                sync(device)
            passes.append(prof.events())
        profiling["on"] = False
    for handle in handles:
        handle.remove()
    cuda = device.type == "cuda"
    if cuda and not any(_times(passes[0], True)[0].values()):
        cuda = False  # the profiler attributed no device time to the ranges here
    selfs = _medians([_times(events, cuda)[1] for events in passes])
    totals = _totals(selfs)
    modules = []
    for path, module in model.named_modules():
        cls = type(module)
        own_children = [type(c) for c in module.children()]
        entry = seen.get(path, {"calls": 0, "signatures": []})
        modules.append(
            {
                "path": path,
                "type": cls.__qualname__,
                "module": cls.__module__,
                "torch_nn": cls.__module__.startswith("torch."),
                "user_children": any(not c.__module__.startswith("torch.") for c in own_children),
                "leaf": not own_children,
                "calls": entry["calls"] // repeats,
                "signatures": entry["signatures"],
                "total_us": totals.get(path or ROOT, 0.0),
                "self_us": selfs.get(path or ROOT, 0.0),
                "init": constructor(module, recorder.calls.get(id(module))) if path else None,
                "parameters": sum(p.numel() for p in module.parameters()),
            }
        )
    return {
        "kind": "hotspots",
        "forward_ms": forward_ms,
        # what shares are of: the modules' own times add up to it
        "profiled_us": sum(selfs.values()),
        "repeats": repeats,
        "clock": "device time (CUDA kernels)" if cuda else "CPU time",
        "torch": torch.__version__,
        "modules": modules,
    }


def _medians(passes: list[dict[str, float]]) -> dict[str, float]:
    """Per range label, the median over passes of its self time."""
    from statistics import median

    labels = {label for times in passes for label in times}
    return {label: median(times.get(label, 0.0) for times in passes) for label in labels}


def _totals(selfs: dict[str, float]) -> dict[str, float]:
    """A module's total: its own time and its submodules'. Built from the medians of self times
    rather than taken as the median of each range's length: on a busy machine a pass the
    process was descheduled in lands in one range, and the model's range holds every range."""
    everything = sum(selfs.values())
    return {
        label: everything
        if label == ROOT
        else sum(v for sub, v in selfs.items() if sub == label or sub.startswith(label + "."))
        for label in selfs
    }


def _times(events: Any, cuda: bool) -> tuple[dict[str, float], dict[str, float]]:
    """Per range label: total time and self time (the total less the module ranges nested
    directly inside it), in microseconds summed over the profiled passes."""
    totals: dict[str, float] = {}
    nested: dict[str, float] = {}

    def spent(event: Any) -> float:
        if cuda:
            device = getattr(event, "device_time_total", None)
            if device is None:
                device = getattr(event, "cuda_time_total", 0.0)
            return float(device or 0.0)
        return float(event.cpu_time_total)

    for event in events:
        if not event.name.startswith(RANGE):
            continue
        label = event.name[len(RANGE) :]
        time_us = spent(event)
        totals[label] = totals.get(label, 0.0) + time_us
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith(RANGE):
            parent = parent.cpu_parent
        if parent is not None:
            outer = parent.name[len(RANGE) :]
            nested[outer] = nested.get(outer, 0.0) + time_us
    selfs = {label: max(0.0, total - nested.get(label, 0.0)) for label, total in totals.items()}
    return totals, selfs


def main() -> None:
    channel = Channel.from_argv()
    request = channel.recv()
    if request is None:
        return
    try:
        answer = profile(request)
    except BaseException as exc:  # the user's model failed: say where, with its traceback
        answer = {
            "kind": "failed",
            "message": f"{type(exc).__name__}: {exc}"[:500],
            "traceback": traceback.format_exc()[-4000:],
        }
    channel.send(answer)


if __name__ == "__main__":
    try:
        main()
    finally:
        os._exit(0)
