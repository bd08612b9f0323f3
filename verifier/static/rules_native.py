"""The embedded C++/CUDA text's rules (compiler/native_checks.py, a table of patterns) and
whether a `cuda` candidate defines a kernel at all."""

from __future__ import annotations

import ast
import dataclasses
import re

from kernelwright.compiler.findings import REJECT, Finding
from kernelwright.compiler.native_checks import NATIVE_RULES, kernel_names, native_findings
from kernelwright.verifier.check_names import Check
from kernelwright.verifier.static.index import ModuleIndex
from kernelwright.verifier.static.registry import NATIVE, Report, rule

_NO_KERNEL = "defines no __global__ kernel: the work is done by PyTorch or a library"


@rule(
    tuple(Check(name) for name, *_ in NATIVE_RULES),
    REJECT,
    "patterns over the native text: files, threads, hooks, caches, Python (warnings: "
    "streams, library calls, precision)",
    NATIVE,
)
def native_text(index: ModuleIndex, report: Report) -> None:
    report.extend([_located(index, f) for f in native_findings(index.native_text)])


def _located(index: ModuleIndex, finding: Finding) -> Finding:
    """The finding with the line of the Python file where its matched text sits (the string
    constant holding it, plus the lines before it in the string); as it was where none does."""
    quoted = re.findall(r"\(`([^`]+)`\)", finding.message)
    if not quoted:
        return finding
    snippet = quoted[-1]
    prose = set() if index.docstrings_reachable else index.prose_strings()
    for node in index.of(ast.Constant):
        if isinstance(node.value, str) and snippet in node.value and id(node) not in prose:
            line = node.lineno + node.value[: node.value.index(snippet)].count("\n")
            return dataclasses.replace(finding, line=line)
    return finding


@rule(Check.NO_CUSTOM_KERNEL, REJECT, _NO_KERNEL, NATIVE)
def no_custom_kernel(index: ModuleIndex, report: Report) -> None:
    if index.target == "cuda" and not kernel_names(index.native_text):
        report.add(Check.NO_CUSTOM_KERNEL, _NO_KERNEL, None)
