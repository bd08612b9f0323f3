"""Rules on what the module imports (the harness, threads, files, the network, frames)."""

from __future__ import annotations

import ast

from kernelwright.compiler.findings import REJECT
from kernelwright.verifier.check_names import Check
from kernelwright.verifier.static.index import ModuleIndex
from kernelwright.verifier.static.registry import MODULE, Report, rule
from kernelwright.verifier.static.tables import FORBIDDEN_IMPORTS, OS_PROCESS_FUNCTIONS

_SUPPRESS = "contextlib.suppress can fall back when the kernel fails"


def _forbidden(module: str, node: ast.AST, report: Report) -> None:
    root = module.split(".")[0]
    if root in FORBIDDEN_IMPORTS:
        check, why = FORBIDDEN_IMPORTS[root]
        report.add(check, f"imports `{module}`, which {why}", node)


@rule(
    (Check.FRAME_SNOOPING, Check.THREADS, Check.NETWORK, Check.FILE_REPLAY,
     Check.HARNESS_ACCESS, Check.PATCHING),
    REJECT,
    "imports a module that reaches frames, threads, files, the network or the harness",
)  # fmt: skip
def forbidden_imports(index: ModuleIndex, report: Report) -> None:
    for node in index.of(ast.Import):
        for alias in node.names:
            _forbidden(alias.name, node, report)
    for node in index.of(ast.ImportFrom):
        if node.module:
            _forbidden(node.module, node, report)


def _from_imports(index: ModuleIndex, module: tuple[str, ...]) -> list[tuple[ast.AST, set[str]]]:
    return [
        (node, {a.name for a in node.names})
        for node in index.of(ast.ImportFrom)
        if node.module and node.module in module
    ]


@rule(Check.THREADS, REJECT, "imports process-starting functions from os")
def os_process_imports(index: ModuleIndex, report: Report) -> None:
    for node, imported in _from_imports(index, ("os", "posix")):
        if any(n in OS_PROCESS_FUNCTIONS for n in imported):
            report.add(Check.THREADS, "imports process-starting functions from os", node)


@rule(Check.TRY_FALLBACK, REJECT, _SUPPRESS)
def suppress_import(index: ModuleIndex, report: Report) -> None:
    for node, imported in _from_imports(index, ("contextlib",)):
        if "suppress" in imported:
            report.add(Check.TRY_FALLBACK, _SUPPRESS, node)


@rule(Check.HARNESS_ACCESS, REJECT, "imports `sys.modules`/`sys.argv` (the harness)")
def sys_imports(index: ModuleIndex, report: Report) -> None:
    for node, imported in _from_imports(index, ("sys",)):
        if imported & {"modules", "argv"}:
            report.add(Check.HARNESS_ACCESS, "imports `sys.modules`/`sys.argv` (the harness)", node)


@rule(Check.ENV_ACCESS, REJECT, "imports the process environment from os")
def environ_imports(index: ModuleIndex, report: Report) -> None:
    for node, imported in _from_imports(index, ("os",)):
        if imported & {"environ", "getenv", "environb"}:
            report.add(Check.ENV_ACCESS, "imports the process environment from os", node)


@rule(
    Check.TORCH_COMPUTE,
    REJECT,
    "names torch's op namespaces by another name, which hides the ops it calls",
    MODULE,
)
def renamed_op_namespaces(index: ModuleIndex, report: Report) -> None:
    for node in index.of(ast.Import, ast.ImportFrom):  # `from torch import ops`
        if isinstance(node, ast.ImportFrom) and node.module in ("torch", "torch._ops"):
            for alias in node.names:
                if alias.name in ("ops", "_ops"):
                    message = (
                        f"names `torch.{alias.name}` by another name, which hides the ops it calls"
                    )
                    report.add(Check.TORCH_COMPUTE, message, node)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in ("torch.ops", "torch._ops") and alias.asname:
                    message = f"names `{alias.name}` as `{alias.asname}`"
                    report.add(Check.TORCH_COMPUTE, message, node)
