"""Static anti-cheat checks on a candidate's source, before anything of it runs.

Two layers: the Python module's AST (what `ModelNew` and module-level code do) and patterns over
the C++/CUDA text embedded in it (compiler/native_checks.py). Each rule (registry.py) is a small
function with its check names (check_names.py), a severity and a reason, over one index of the
module (index.py) built once:

- `reject`: the construct games the evaluation or replaces the kernel with PyTorch; the candidate
  ends `rejected` with the check's name;
- `warn`: suspicious or worth knowing (reduced precision, library compute inside the extension,
  PyTorch beside the kernel); stored with the result and shown to the judge, never a rejection.

A legitimate kernel must pass: allocation, views and reading parameters in `forward` are fine, and
calling cuBLAS/cuDNN/ATen from inside the extension is allowed and labelled `library_compute`.
The rules live in rules_imports.py, rules_access.py, rules_code.py, compute.py and
rules_native.py; importing this package registers them all.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

from kernelwright import pyast
from kernelwright.compiler.findings import Finding
from kernelwright.compiler.native_checks import kernel_names
from kernelwright.verifier.static import (  # noqa: F401  (registers the rules, in this order)  # noqa: F401,I001
    compute,
    rules_access,
    rules_code,
    rules_imports,
    rules_native,
)
from kernelwright.verifier.static.index import ModuleIndex
from kernelwright.verifier.static.main_block import without_main_block
from kernelwright.verifier.static.registry import RULES, run_rules


def check_candidate(
    source: str,
    target: str = "cuda",
    scalar_inputs: Iterable[int] = (),
    scalar_init_inputs: Iterable[int] = (),
    passed: tuple[int | None, int | None] = (None, None),
) -> list[Finding]:
    """All findings for a candidate file's source (AST plus embedded native code).
    `scalar_inputs`: positions of the problem's inputs that are literals, not tensors
    (`Problem.scalar_inputs`): arithmetic on them in forward is not PyTorch compute;
    `scalar_init_inputs` the same for the constructor (sizes kept as `self.n = n`); `passed`:
    how many arguments forward and the constructor get (`Problem.input_counts`), so that a
    literal default the harness never overrides is a size too."""
    literals = (tuple(scalar_inputs), tuple(scalar_init_inputs), passed)
    whole = ModuleIndex.build(pyast.parse(source))
    tree = without_main_block(whole)
    index = whole if tree is whole.tree else ModuleIndex.build(tree)
    index.target, index.literals = target, literals
    unique: dict[tuple[str, str], Finding] = {}
    for finding in run_rules(index):
        unique.setdefault((finding.check, finding.message), finding)
    return list(unique.values())


def candidate_kernels(source: str) -> list[str]:
    """The `__global__` kernel names a candidate file's embedded CUDA source defines."""
    return kernel_names(native_source(pyast.parse(source)))


def native_source(tree: ast.Module) -> str:
    """The C++/CUDA text of a candidate: its string constants, comments removed. Prose
    (docstrings and other bare string statements) is left out where no code can read it."""
    return ModuleIndex.build(tree).native_text


def native_namespaces(tree: ast.Module) -> set[str]:
    """Op namespaces the candidate's native code defines (`TORCH_LIBRARY(ns, m)`)."""
    return ModuleIndex.build(tree).native_namespaces


def declared_namespaces(tree: ast.Module) -> set[str]:
    """Op namespaces the candidate declares, in its native code or in Python."""
    return ModuleIndex.build(tree).declared_namespaces


__all__ = ["RULES", "check_candidate", "candidate_kernels", "native_source"]
