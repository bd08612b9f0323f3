"""Names of registered ops: `torch.ops.<namespace>.<op>`, the candidate's own or PyTorch's."""

from __future__ import annotations

import ast

from kernelwright import pyast
from kernelwright.verifier.static.tables import TORCH_OP_SPACES


def own_space(space: str, declared: set[str]) -> bool:
    return space in declared and space not in TORCH_OP_SPACES


def op_space(name: str) -> str | None:
    """`torch.ops.<ns>.<op>...` -> ns; None for any other name."""
    parts = name.split(".")
    return parts[2] if len(parts) > 3 and parts[:2] == ["torch", "ops"] else None


def own_op_namespace(node: ast.AST, declared: set[str]) -> bool:
    """`torch.ops.<ns>` for a namespace the candidate declares itself (not aten, prims, ...)."""
    parts = pyast.dotted(node).split(".")
    return len(parts) == 3 and parts[:2] == ["torch", "ops"] and own_space(parts[2], declared)


def dunder(name: str) -> str:
    return name if name.startswith("__") and name.endswith("__") else ""
