"""`ast.parse` that is safe to call from several threads at once.

CPython 3.11's AST constructor keeps its recursion counter in interpreter state, not per thread:
two threads parsing at once can fail with "SystemError: AST constructor recursion depth mismatch"
(seen in CI here, in the optimize loop, whose slots parse candidates concurrently).
Every parse in kernelwright goes through this one lock; parsing is fast, so it costs nothing.
"""

from __future__ import annotations

import ast
import threading

_LOCK = threading.Lock()


def parse(source: str, filename: str = "<unknown>") -> ast.Module:
    with _LOCK:
        return ast.parse(source, filename=filename)


def dotted(node: ast.AST) -> str:
    """`a.b.c` for a chain of attributes on a name; "" where the chain starts elsewhere."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def module_statements(body: list[ast.stmt]) -> list[ast.stmt]:
    """The statements that run at module level, those inside top-level `if`/`try`/`with`/`for`
    blocks included (`if torch.cuda.is_available(): rows = ...`)."""
    found: list[ast.stmt] = []
    for node in body:
        found.append(node)
        if isinstance(node, (ast.If, ast.For, ast.While, ast.With, ast.Try, ast.TryStar)):
            inner = [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", [])]
            for handler in getattr(node, "handlers", []):
                inner += handler.body
            found += module_statements(inner)
    return found


def scope_nodes(nodes: list[ast.AST]) -> list[ast.AST]:
    """Every node of one scope's code: a def, class or lambda inside is named, not entered."""
    found: list[ast.AST] = []
    pending = list(nodes)
    while pending:
        node = pending.pop()
        found.append(node)
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            pending.extend(ast.iter_child_nodes(node))
    return found
