"""A float64 run of the reference, for outputs in float16 or bfloat16.

Eager PyTorch rounds every intermediate of a low-precision model to 8 or 11 bits
(`torch.exp(x) - 6.0` in bfloat16 rounds `exp(x)` before subtracting). A fused kernel that
computes in float32 and rounds once is *closer* to the exact result, yet can sit outside the
tolerance around the reference's doubly rounded one. So where the reference's output holds a
low-precision tensor, the reference worker also runs a float64 copy of the model on float64
copies of the floating inputs and rounds its outputs to the reference's dtypes: a candidate
within tolerance of either is correct. Explicit casts inside the model (`x.half()`) still
round, so a problem whose point is low precision keeps it.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

LOW_PRECISION = (torch.float16, torch.bfloat16)


def needed(output: Any) -> bool:
    """Whether the output holds a float16/bfloat16 tensor."""
    if isinstance(output, torch.Tensor):
        return output.dtype in LOW_PRECISION
    if isinstance(output, (list, tuple)):
        return any(needed(item) for item in output)
    if isinstance(output, dict):
        return any(needed(item) for item in output.values())
    return False


def run(model: torch.nn.Module, inputs: list[Any], like: Any) -> Any | None:
    """The model's outputs computed in float64 and rounded to `like`'s dtypes; None where the
    model cannot run in float64 (an op without a double kernel, memory) or gives another
    structure."""
    try:
        wide_model = copy.deepcopy(model).double()
        with torch.no_grad():
            output = wide_model(*[_widen(x) for x in inputs])
        return _round_like(output, like)
    except Exception:  # the float64 run is a second opinion: when it fails, there is none
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return None


def _widen(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.double() if value.dtype.is_floating_point else value
    if isinstance(value, (list, tuple)):
        return type(value)(_widen(v) for v in value) if type(value) in (list, tuple) else value
    return value


def _round_like(value: Any, like: Any) -> Any:
    if isinstance(like, torch.Tensor):
        if not isinstance(value, torch.Tensor) or value.shape != like.shape:
            raise ValueError("the float64 run gave another structure")
        return value.to(like.dtype)
    if isinstance(like, (list, tuple)):
        if not isinstance(value, (list, tuple)) or len(value) != len(like):
            raise ValueError("the float64 run gave another structure")
        rounded = [_round_like(v, w) for v, w in zip(value, like, strict=True)]
        return rounded if isinstance(like, list) else tuple(rounded)
    if isinstance(like, dict):
        if not isinstance(value, dict) or set(value) != set(like):
            raise ValueError("the float64 run gave another structure")
        return {k: _round_like(value[k], like[k]) for k in like}
    return like  # a Python number or None: the reference's own
