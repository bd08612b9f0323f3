"""Per-dtype tolerances for comparing candidate outputs with the reference.

A candidate element c passes against reference element r when |c - r| <= atol + rtol * |r|
(torch.allclose's rule). The defaults follow common practice for kernels that keep fp32
accumulation: fp32 1e-4, fp16/bf16 1e-2 (KernelBench uses 1e-2 across the board, which lets fp32
kernels that drop to reduced precision pass; we do not). Integer and bool outputs must be exact.
Flags override atol and rtol for every floating dtype at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DEFAULTS: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-7, 1e-7),
    torch.float32: (1e-4, 1e-4),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (1e-2, 1e-2),
    torch.complex64: (1e-4, 1e-4),
    torch.complex128: (1e-7, 1e-7),
}
# float8 and other narrow floats: as loose as bf16 would be for them
OTHER_FLOAT = (1e-1, 1e-1)


@dataclass(frozen=True)
class Tolerance:
    atol: float | None = None  # None: the dtype's default
    rtol: float | None = None

    def for_dtype(self, dtype: torch.dtype) -> tuple[float, float]:
        if not (dtype.is_floating_point or dtype.is_complex):
            return (0.0, 0.0)
        atol, rtol = DEFAULTS.get(dtype, OTHER_FLOAT)
        return (atol if self.atol is None else self.atol, rtol if self.rtol is None else self.rtol)

    def describe(self) -> dict[str, object]:
        table = {str(d).removeprefix("torch."): self.for_dtype(d) for d in DEFAULTS}
        return {"rule": "|cand - ref| <= atol + rtol * |ref|", "atol_rtol_by_dtype": table}
