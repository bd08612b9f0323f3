"""Kept only for benchmarks/throughput.py, which imports `make_models` from here: the command
line moved to the `kernelwright.cli` package (this is `kernelwright.cli.optimize`'s). Delete this
module once that script imports from there."""

from __future__ import annotations

from kernelwright.cli.optimize import make_models

__all__ = ["make_models"]
