"""One finding of the static checks: which rule, how severe, why, and where."""

from __future__ import annotations

from dataclasses import dataclass

REJECT = "reject"  # games the evaluation or replaces the kernel with PyTorch: the candidate fails
WARN = "warn"  # worth knowing (lower precision, library calls): stored and shown to the judge


@dataclass(frozen=True)
class Finding:
    check: str
    severity: str
    message: str
    line: int | None = None
