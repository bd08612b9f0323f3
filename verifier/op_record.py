"""A record of the ATen ops that ran during a call, and what it says about who did the work.

Static checks guess from the text whether PyTorch does a candidate's work; a size threshold
(`if x.numel() < N: return torch...`), a dunder (`torch.Tensor.__mul__(a, b)`) or an ATen call
from C++ (`at::matmul`) slips past any text rule. This records what actually ran instead: every
op the dispatcher hands to the Python key while `forward` runs, which is every op called from
Python or from C++ through `at::`, including those inside the candidate's own registered ops
(`TORCH_LIBRARY`, `torch.library`), whose kernels run with the record still on.

Each op is one of three kinds (`op_kind`): `own` (any namespace that is not PyTorch's: the
candidate's registered ops), `free` (allocation, views, copies, metadata, random draws: what a
kernel's wrapper does around its kernel) and `compute` (everything else). A compute op's work is
its FLOPs where PyTorch's flop counter knows the op (matmuls, convolutions, attention), else the
number of elements it reads or writes, whichever is larger; the reference's ops are weighed the
same way in its own worker, so the two compare.

Worker side: `record_call` (needs torch). Parent side: `judge` decides from the names and work
the worker reported; the parent classifies each name itself. The record is taken in the
candidate's process, so it is a check of what the code did, not of what a hostile process says:
`record_call` refuses a call that leaves PyTorch's mode stack other than it found it, and the
static checks refuse the private APIs that switch modes off (see docs/checks.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from kernelwright.check_names import Check

# Namespaces of PyTorch's own ops; any other namespace is the candidate's (or a library's).
TORCH_NAMESPACES = frozenset(
    {"aten", "prims", "prim", "quantized", "_quantized", "rngprims", "higher_order", "_c10d"}
)
# What a kernel's wrapper does around its kernel: allocate, fill, copy, convert, describe.
FREE_OPS = frozenset(
    {
        *("empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"),
        *("zeros", "zeros_like", "ones", "ones_like", "full", "full_like", "scalar_tensor"),
        *("new_zeros", "new_ones", "new_full", "arange", "fill", "fill_", "zero_"),
        *("resize_", "resize_as_", "set_", "record_stream", "_efficientzerotensor"),
        *("copy", "copy_", "clone", "_to_copy", "_copy_from", "_copy_from_and_resize"),
        *("lift_fresh", "lift_fresh_copy", "detach_", "_pin_memory", "contiguous"),
        *("_local_scalar_dense", "is_contiguous", "is_same_size", "is_nonzero", "equal"),
        *("sym_size", "sym_stride", "sym_numel", "sym_storage_offset", "size", "stride"),
        *("dim", "numel", "_has_compatible_shallow_copy_type", "_nested_tensor_size"),
    }
)
# At or above this share of the reference's work, PyTorch did the candidate's main work.
MAIN_SHARE = 0.5
WORK_CAP = 1e15  # the protocol's bound on a number; no real call comes near it


@dataclass(frozen=True)
class OpCount:
    """One op as the record saw it during one call: how often and how much work in all."""

    name: str  # as PyTorch spells the overload: "aten.mm.default", "mylib.fused.default"
    calls: int
    work: float


@dataclass(frozen=True)
class Judgement:
    check: str  # "torch_compute" (reject) or "torch_compute_partial" (warn)
    severity: str
    message: str


class Tampered(Exception):
    """The call left PyTorch's dispatch-mode stack other than it found it."""


# -- what an op is ----------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def op_kind(name: str) -> str:
    """`own`, `free` or `compute` for an op named as `OpCount.name`."""
    namespace, _, rest = name.partition(".")
    if namespace not in TORCH_NAMESPACES:
        return "own"
    base = rest.split(".", 1)[0]
    if base in FREE_OPS:
        return "free"
    overload = _overload(namespace, rest)
    if overload is not None and _free_by_tags(overload):
        return "free"
    return "compute"


def _overload(namespace: str, rest: str) -> Any:
    import torch

    base, _, overload = rest.partition(".")
    try:
        packet = getattr(getattr(torch.ops, namespace), base)
        return getattr(packet, overload or "default")
    except (AttributeError, RuntimeError):
        return None


def _free_by_tags(overload: Any) -> bool:
    import torch

    if getattr(overload, "is_view", False):
        return True
    tags = set(getattr(overload, "tags", ()))
    # random draws (a problem's dropout, `torch.randn` in forward) and view_copy variants
    return bool(tags & {torch.Tag.nondeterministic_seeded, torch.Tag.view_copy})


# -- the parent's decision --------------------------------------------------------------------


def torch_work(ops: Iterable[OpCount]) -> float:
    return sum(op.work for op in ops if op_kind(op.name) == "compute")


def judge(ops: Iterable[OpCount], reference_work: float) -> Judgement | None:
    """What the record of a candidate's call says, against the reference's work on the same
    case: PyTorch compute at or above `MAIN_SHARE` of it is the main work (`torch_compute`,
    rejected); any less is PyTorch beside the kernel (`torch_compute_partial`, a warning)."""
    compute = sorted((op for op in ops if op_kind(op.name) == "compute"), key=lambda op: -op.work)
    if not compute:
        return None
    done = sum(op.work for op in compute)
    shown = ", ".join(_describe(op, reference_work) for op in compute[:6])
    more = f" and {len(compute) - 6} more" if len(compute) > 6 else ""
    if reference_work > 0 and done >= MAIN_SHARE * reference_work:
        share = done / reference_work
        message = (
            f"PyTorch did the main work: its ops ran {share:.0%} of the reference's work "
            f"({shown}{more}); the kernel must do it"
        )
        return Judgement(Check.TORCH_COMPUTE, "reject", message)
    message = f"PyTorch computes beside the kernel: {shown}{more}"
    return Judgement(Check.TORCH_COMPUTE_PARTIAL, "warn", message)


def _describe(op: OpCount, reference_work: float) -> str:
    calls = f" x{op.calls}" if op.calls > 1 else ""
    if reference_work > 0:
        return f"{op.name}{calls} {op.work / reference_work:.0%}"
    return f"{op.name}{calls}"


# -- the worker's record ----------------------------------------------------------------------


def record_call(call: Callable[[], Any]) -> tuple[Any, list[OpCount]]:
    """`call()`'s result and the ops it dispatched. Raises `Tampered` where the call left the
    mode stack changed (a mode popped or pushed inside it)."""
    import torch

    recorder = make_recorder()()
    depth = torch._C._len_torch_dispatch_stack()
    recorder.__enter__()
    try:
        result = call()
    finally:
        inside = torch._C._len_torch_dispatch_stack()
        on_top = inside > 0 and torch._C._get_dispatch_stack_at(inside - 1) is recorder
        if on_top:
            recorder.__exit__(None, None, None)
    if inside != depth + 1 or not on_top:
        raise Tampered(
            f"PyTorch's dispatch-mode stack changed during the call ({depth + 1} modes with "
            f"the harness's record on top before, {inside} after)"
        )
    return result, recorder.counts()


_RECORDER: type | None = None


def make_recorder() -> type:
    """The TorchDispatchMode subclass, made on first use so that importing this module (the
    parent does) needs no torch."""
    global _RECORDER
    if _RECORDER is not None:
        return _RECORDER
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class _Recorder(TorchDispatchMode):
        @classmethod
        def _should_skip_dynamo(cls) -> bool:
            # PyTorch wraps a mode's handler to keep torch.compile out of it, which imports
            # torch._dynamo on the first op: seconds in every reference worker, and nothing
            # here is compiled.
            return False

        def __init__(self) -> None:
            super().__init__()
            self._calls: dict[str, int] = {}
            self._work: dict[str, float] = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            kwargs = kwargs or {}
            name = str(func)
            if func.namespace not in TORCH_NAMESPACES:
                # The candidate's own op: run its kernel with this record back on, so that
                # what it calls through `at::` is recorded too (PyTorch takes a mode off its
                # stack while the mode handles an op).
                out = _own_kernel(self, func, args, kwargs)
                work = 0.0
            else:
                out = func(*args, **kwargs)
                work = _work(func, args, kwargs, out)
            self._calls[name] = self._calls.get(name, 0) + 1
            self._work[name] = min(WORK_CAP, self._work.get(name, 0.0) + work)
            return out

        def counts(self) -> list[OpCount]:
            return [OpCount(name, calls, self._work[name]) for name, calls in self._calls.items()]

    _RECORDER = _Recorder
    del torch
    return _RECORDER


def _own_kernel(mode: Any, func: Any, args: tuple, kwargs: dict) -> Any:
    """An own op's backend kernel, called below the Python key with `mode` pushed again."""
    import torch
    from torch.utils._pytree import tree_leaves

    tensors = [x for x in tree_leaves((args, kwargs)) if isinstance(x, torch.Tensor)]
    on_cuda = any(t.is_cuda for t in tensors)
    key = torch._C.DispatchKey.CUDA if on_cuda else torch._C.DispatchKey.CPU
    with mode:
        return func.redispatch(torch._C.DispatchKeySet(key), *args, **kwargs)


def _work(func: Any, args: tuple, kwargs: dict, out: Any) -> float:
    """FLOPs where PyTorch's flop counter knows the op, else the largest tensor it touches."""
    import torch
    from torch.utils._pytree import tree_leaves
    from torch.utils.flop_counter import flop_registry

    if op_kind(str(func)) != "compute":
        return 0.0
    elements = max(
        (x.numel() for x in tree_leaves((args, kwargs, out)) if isinstance(x, torch.Tensor)),
        default=0,
    )
    formula = flop_registry.get(func._overloadpacket)
    if formula is not None:
        try:
            return float(max(elements, formula(*args, **kwargs, out_val=out)))
        except Exception:  # a formula that does not fit these arguments: elements it is
            pass
    return float(elements)
