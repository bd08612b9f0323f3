"""Static anti-cheat checks on a candidate's source, before anything of it runs.

The checks live in the `kernelwright.verifier.static` package (a registry of rules over one
index of the module); this module keeps the names the rest of kernelwright imports.
"""

from __future__ import annotations

from kernelwright.compiler.findings import REJECT, WARN, Finding
from kernelwright.verifier.static import (
    RULES,
    candidate_kernels,
    check_candidate,
    declared_namespaces,
    native_namespaces,
    native_source,
)
from kernelwright.verifier.static.tables import TORCH_COMPUTE

__all__ = [
    "REJECT",
    "RULES",
    "TORCH_COMPUTE",
    "WARN",
    "Finding",
    "candidate_kernels",
    "check_candidate",
    "declared_namespaces",
    "native_namespaces",
    "native_source",
]
