"""The problems shipped with kernelwright and their handwritten candidates.

`problems/NN_name.py` are KernelBench-format problems; `cuda/NN_name.py` and `cpu/NN_name.py` are
correct handwritten candidates for them (every problem has a CUDA one, some a C++ CPU one).
Conventions: docs/suite-conventions.md.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def builtin_dir() -> Path:
    return _HERE / "problems"


def candidates_for(problem: Path) -> dict[str, Path]:
    """Target -> handwritten candidate file for a shipped problem."""
    found = {}
    for target in ("cuda", "cpu"):
        path = _HERE / target / problem.name
        if path.exists():
            found[target] = path
    return found
