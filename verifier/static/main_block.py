"""The module without its `if __name__ == "__main__":` self-test, which never runs when the
harness imports the candidate; kept where the module could rename itself to make it run."""

from __future__ import annotations

import ast

from kernelwright.verifier.static.index import ModuleIndex, dotted

# Names that could make the block run: read `__name__` dynamically or rebind it.
_RISKY = ("__name__", "globals", "vars", "exec", "eval", "setattr")


def without_main_block(index: ModuleIndex) -> ast.Module:
    tree = index.tree
    guards = [n for n in tree.body if _is_main(n)]
    if not guards:
        return tree
    benign = {  # setattr(self, ...) sets an attribute of the model, nothing else
        id(n.func)
        for n in index.of(ast.Call)
        if dotted(n.func) == "setattr"
        and n.args
        and isinstance(n.args[0], ast.Name)
        and n.args[0].id == "self"
    }
    guard_names = {id(n.test.left) for n in guards}  # type: ignore[attr-defined]
    # Any other mention of __name__ (an assignment, `from __main__ import __name__`, a match
    # capture, a string) or of globals/vars/exec/eval/setattr could make the block run.
    if any(_mentions_name(n, benign) and id(n) not in guard_names for n in index.nodes):
        return tree
    body = [n for n in tree.body if not _is_main(n)]
    return ast.Module(body=body, type_ignores=[])


def _is_main(node: ast.stmt) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Eq)
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
        and not node.orelse  # type: ignore[attr-defined]
    )


def _mentions_name(n: ast.AST, benign: set[int]) -> bool:
    if isinstance(n, ast.Name):
        return n.id in _RISKY and id(n) not in benign
    if isinstance(n, ast.Global | ast.Nonlocal):
        return "__name__" in n.names
    if isinstance(n, ast.alias):
        return "__name__" in (n.name, n.asname)
    if isinstance(n, ast.arg):
        return n.arg == "__name__"
    if isinstance(n, ast.MatchAs | ast.MatchStar | ast.ExceptHandler):
        return n.name == "__name__"
    if isinstance(n, ast.MatchMapping):
        return n.rest == "__name__"
    if isinstance(n, ast.Attribute):
        store = isinstance(n.ctx, ast.Store | ast.Del)
        return n.attr in ("__dict__", "__globals__") or (n.attr == "__name__" and store)
    return isinstance(n, ast.Constant) and isinstance(n.value, str) and "__name__" in n.value
