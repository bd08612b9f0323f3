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
