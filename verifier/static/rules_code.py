"""Rules on statements and classes: fallbacks (try/except), rebinding protected modules'
attributes, tensor subclasses, inheriting the reference."""

from __future__ import annotations

import ast

from kernelwright.compiler.findings import REJECT, WARN
from kernelwright.verifier.check_names import Check
from kernelwright.verifier.static.extensions import extension_builders
from kernelwright.verifier.static.index import ModuleIndex, dotted
from kernelwright.verifier.static.registry import Report, rule

_FALLBACK = "try/except can fall back to PyTorch when the kernel fails"
_GUARDED_BUILD = (
    "try/except around the extension's build: a failed build leaves nothing to run, so this "
    "is no fallback (the run-time op record sees what did run)"
)


@rule(Check.TRY_FALLBACK, REJECT, _FALLBACK)
def try_fallback(index: ModuleIndex, report: Report) -> None:
    """A try whose handlers can run other code than the kernel (PyTorch) when it fails.
    One that only guards the extension's build is a warning: if the build fails, the handler
    leaves a constant behind and the kernel's call fails, and whatever forward then calls is
    judged by the compute rules and the run-time op record."""
    builders = extension_builders(index)
    for node in index.of(ast.Try, ast.TryStar):
        if _harmless_try(index, node):
            continue
        if _guards_build(index, node, builders):
            report.add(Check.TRY_FALLBACK, _GUARDED_BUILD, node, WARN)
        else:
            report.add(Check.TRY_FALLBACK, _FALLBACK, node)


@rule(Check.PATCHING, REJECT, "rebinds an attribute of torch, time, sys, os, numpy or math")
def rebinds_protected(index: ModuleIndex, report: Report) -> None:
    kinds = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)
    for node in index.of(*kinds):
        targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
        for target in targets:
            root = dotted(target).split(".")[0]
            if isinstance(target, ast.Attribute) and root in index.protected:
                report.add(Check.PATCHING, f"rebinds `{dotted(target)}`", node)


@rule(
    (Check.TENSOR_SUBCLASS, Check.INHERITS_REFERENCE),
    REJECT,
    "subclasses torch.Tensor, or ModelNew inherits the reference Model",
)
def class_bases(index: ModuleIndex, report: Report) -> None:
    for node in index.of(ast.ClassDef):
        for base in node.bases:
            base_name = dotted(base)
            if base_name.split(".")[-1] == "Tensor":
                message = f"class {node.name} subclasses torch.Tensor"
                report.add(Check.TENSOR_SUBCLASS, message, node)
            if node.name == "ModelNew" and base_name.split(".")[-1] == "Model":
                report.add(Check.INHERITS_REFERENCE, "ModelNew inherits the reference Model", node)


def _constant_assignment(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Assign)
        and isinstance(statement.value, ast.Constant)
        and all(isinstance(t, ast.Name) for t in statement.targets)
    )


def _prints(statement: ast.stmt) -> bool:
    """`print(...)`, `logger.warning(...)`, `warnings.warn(...)`: says, computes nothing."""
    if not (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)):
        return False
    name = dotted(statement.value.func)
    return name in ("print", "warnings.warn") or name.split(".")[0] in (
        "log",
        "logger",
        "logging",
        "LOG",
    )


def _harmless_try(index: ModuleIndex, node: ast.Try | ast.TryStar) -> bool:
    """A try that cannot fall back to PyTorch: every handler re-raises (a clearer build error)
    and its `finally` (cleanup) cannot swallow the error, or `try: import x` whose handlers only
    pass or set a constant (an optional dependency; importing something else instead would be a
    fallback)."""

    def reraises(handler: ast.ExceptHandler) -> bool:
        """Only `raise`, after at most printing or logging: the error propagates."""
        *before, last = handler.body
        printed = all(
            _prints(s) and dotted(s.value.func) != "warnings.warn"  # type: ignore[attr-defined]
            for s in before
        )
        return isinstance(last, ast.Raise) and printed

    if all(reraises(h) for h in node.handlers) and _cleanup_only(index, node.finalbody):
        return True  # (a try has handlers or a finally, or it would not parse)
    return (
        all(isinstance(s, ast.Import | ast.ImportFrom) for s in node.body)
        and not node.orelse
        and not node.finalbody
        and all(
            isinstance(s, ast.Pass) or _constant_assignment(s)
            for handler in node.handlers
            for s in handler.body
        )
    )


def _cleanup_only(index: ModuleIndex, body: list[ast.stmt]) -> bool:
    """A `finally` that cannot swallow the error: no return, break or continue in it."""
    escapes = (ast.Return, ast.Break, ast.Continue)
    return not any(isinstance(n, escapes) for s in body for n in index.within(s))


def _guards_build(index: ModuleIndex, node: ast.Try | ast.TryStar, builders: set[str]) -> bool:
    """`try: ext = load_inline(...) except Exception: ext = None`: the body only builds the
    extension (and imports), the handlers only pass, print, set constants or raise, and
    nothing runs after a failure that could stand in for the kernel."""

    def builds(statement: ast.stmt) -> bool:
        if isinstance(statement, ast.Import | ast.ImportFrom):
            return True
        if isinstance(statement, ast.Assign | ast.AnnAssign) and statement.value is not None:
            value = statement.value
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            plain = all(isinstance(t, ast.Name | ast.Attribute) for t in targets)
            return plain and isinstance(value, ast.Call) and dotted(value.func) in builders
        return False

    def quiet(statement: ast.stmt) -> bool:
        return (
            isinstance(statement, ast.Pass | ast.Raise)
            or _constant_assignment(statement)
            or _prints(statement)
        )

    return (
        bool(node.body)
        and all(builds(s) for s in node.body)
        and any(not isinstance(s, ast.Import | ast.ImportFrom) for s in node.body)
        and not node.orelse
        and _cleanup_only(index, node.finalbody)
        and all(quiet(s) for handler in node.handlers for s in handler.body)
    )
