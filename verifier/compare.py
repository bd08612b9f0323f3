"""Compare a candidate's outputs with the reference's, element by element, in float64 on the CPU.

The structure must match exactly: a tensor against a tensor, a sequence against a sequence of the
same length (a list may stand for a tuple: C++ `std::vector<Tensor>` returns arrive as lists),
and so on, with identical shapes and dtypes. NaN must sit where the
reference has NaN, infinities must match exactly. Every output is compared, and the reason for a
mismatch names the output, how many elements are off and the worst one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from kernelwright.verifier.tolerances import Tolerance


@dataclass(frozen=True)
class Comparison:
    ok: bool
    reason: str
    max_abs_error: float | None
    max_rel_error: float | None


def compare(reference: Any, candidate: Any, tolerance: Tolerance) -> Comparison:
    errors: list[tuple[float, float]] = []
    problem = _walk(reference, candidate, "output", tolerance, errors)
    abs_err = max((e[0] for e in errors), default=None)
    rel_err = max((e[1] for e in errors), default=None)
    return Comparison(problem is None, problem or "", abs_err, rel_err)


def _kind(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return "tensor"
    return type(value).__name__


def _walk(ref: Any, cand: Any, where: str, tol: Tolerance, errors: list) -> str | None:
    if isinstance(ref, torch.Tensor):
        if type(cand) is not torch.Tensor:
            return f"{where}: expected a tensor, got {_kind(cand)}"
        return _tensor(ref, cand, where, tol, errors)
    if isinstance(ref, (tuple, list)):
        if type(cand) not in (tuple, list):
            return f"{where}: expected a {type(ref).__name__}, got {_kind(cand)}"
        if len(cand) != len(ref):
            return f"{where}: expected {len(ref)} outputs, got {len(cand)}"
        for i, (r, c) in enumerate(zip(ref, cand, strict=True)):
            problem = _walk(r, c, f"{where}[{i}]", tol, errors)
            if problem:
                return problem
        return None
    if isinstance(ref, dict):
        if type(cand) is not dict or set(cand) != set(ref):
            return f"{where}: expected a dict with keys {sorted(map(str, ref))}"
        for key in ref:
            problem = _walk(ref[key], cand[key], f"{where}[{key!r}]", tol, errors)
            if problem:
                return problem
        return None
    if isinstance(ref, (bool, int, float)) or ref is None:
        if type(cand) is not type(ref):
            return f"{where}: expected {type(ref).__name__}, got {_kind(cand)}"
        if isinstance(ref, float) and math.isfinite(ref):
            # A Python float is most often `.item()` of a float32 result (torch's default
            # dtype): held to fp64's tolerance, a more accurate kernel would fail.
            atol, rtol = tol.for_dtype(torch.get_default_dtype())
            diff = abs(cand - ref) if math.isfinite(cand) else math.inf
            errors.append((diff, diff / abs(ref) if abs(ref) > atol else 0.0))
            if not diff <= atol + rtol * abs(ref):
                return f"{where}: expected {ref!r}, got {cand!r} (atol {atol:g}, rtol {rtol:g})"
        elif ref != cand and not (isinstance(ref, float) and math.isnan(cand)):
            return f"{where}: expected {ref!r}, got {cand!r}"
        return None
    return f"{where}: reference output of type {type(ref).__name__} is not supported"


def _tensor(
    ref: torch.Tensor, cand: torch.Tensor, where: str, tol: Tolerance, errors: list
) -> str | None:
    if cand.shape != ref.shape:
        return f"{where}: shape {tuple(cand.shape)} but the reference has {tuple(ref.shape)}"
    if cand.dtype != ref.dtype:
        return f"{where}: dtype {cand.dtype} but the reference has {ref.dtype}"
    if ref.numel() == 0:
        return None
    if not (ref.dtype.is_floating_point or ref.dtype.is_complex):
        mismatched = cand != ref
        count = int(mismatched.sum())
        errors.append((float(count > 0), float(count > 0)))
        if count:
            return f"{where}: {count} of {ref.numel()} elements differ (exact match required)"
        return None
    atol, rtol = tol.for_dtype(ref.dtype)
    wide = torch.complex128 if ref.dtype.is_complex else torch.float64
    flat_ref, flat_cand = ref.reshape(-1), cand.reshape(-1)
    total = _Tally()
    # In chunks: a full-size float64 copy of each side (and of the differences) took 8x an
    # output's float32 size at once; a 0.9 GiB output peaked at 16 GiB.
    for start in range(0, flat_ref.numel(), CHUNK):
        r = flat_ref[start : start + CHUNK].to(wide)
        c = flat_cand[start : start + CHUNK].to(wide)
        total.add(r, c, atol, rtol, start)
    if total.nan_mismatch:
        return f"{where}: {total.nan_mismatch} elements are NaN in one output and not in the other"
    if total.inf_mismatch:
        return f"{where}: infinities differ from the reference"
    errors.append((total.max_abs, total.max_rel))
    if total.bad:
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(total.worst), ref.shape))
        return (
            f"{where}: {total.bad} of {ref.numel()} elements out of tolerance "
            f"(atol {atol:g}, rtol {rtol:g}); worst at {index}: got {total.got:.6g}, "
            f"expected {total.want:.6g}"
        )
    return None


CHUNK = 1 << 22  # elements compared at once: 32 MiB per float64 array


class _Tally:
    """What the chunks of one tensor's comparison add up to."""

    def __init__(self) -> None:
        self.nan_mismatch = 0
        self.inf_mismatch = False
        self.max_abs = 0.0
        self.max_rel = 0.0
        self.bad = 0
        self.worst_diff = -1.0
        self.worst = 0
        self.got: complex | float = 0.0
        self.want: complex | float = 0.0

    def add(self, r: torch.Tensor, c: torch.Tensor, atol: float, rtol: float, start: int) -> None:
        r_nan, c_nan = torch.isnan(r), torch.isnan(c)
        self.nan_mismatch += int((r_nan != c_nan).sum())
        finite = torch.isfinite(r) & ~r_nan
        odd = ~finite & ~r_nan
        self.inf_mismatch = self.inf_mismatch or bool((r[odd] != c[odd]).any())
        diff = torch.where(finite, (c - r).abs(), torch.zeros((), dtype=torch.float64))
        scale = r.abs()
        self.max_abs = max(self.max_abs, float(diff.max()))
        rel = torch.where(scale > atol, diff / scale.clamp_min(1e-300), torch.zeros_like(diff))
        self.max_rel = max(self.max_rel, float(rel.max()))
        bad = diff > atol + rtol * scale
        count = int(bad.sum())
        if count:
            self.bad += count
            off = torch.where(bad, diff, torch.zeros_like(diff))
            local = int(torch.argmax(off))
            if float(off[local]) > self.worst_diff:
                self.worst_diff = float(off[local])
                self.worst = start + local
                self.got, self.want = c[local].item(), r[local].item()
