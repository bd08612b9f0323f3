"""kernelwright: turn slow PyTorch modules into fast, verified CUDA kernels.

This package (the repository's `core/` folder) holds the CLI, problem loading and the evaluation
orchestrator. It must stay cheap to import: the stage packages (`kernelwright.compiler`,
`kernelwright.verifier`, `kernelwright.profiler`) import its record and helper modules inside
worker processes.
"""

from __future__ import annotations

__version__ = "0.1.0"
