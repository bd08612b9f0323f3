"""What holds a tensor in a method of the code ModelNew runs: its tensor operands, what merely
renames or views them, which calls make nn layers, and which names are only containers."""

from __future__ import annotations

import ast
from collections.abc import Callable

from kernelwright.verifier.scalars import SIZE_FIELDS, SIZE_METHODS
from kernelwright.verifier.static.index import ModuleIndex, dotted
from kernelwright.verifier.static.tables import (
    NN_NOT_COMPUTE,
    SIZE_ATTRIBUTES,
    TORCH_LAYER_SUFFIXES,
)

# A tensor's methods that give no tensor: sizes, flags (`is_contiguous`), host values.
NOT_VIEWS = SIZE_ATTRIBUTES | SIZE_FIELDS | SIZE_METHODS | {"numpy", "storage_offset", "nbytes"}
# Calls that set attributes by name: after one, no attribute is surely a container.
_SETS_BY_NAME = (
    "setattr",
    "register_buffer",
    "register_parameter",
    "add_module",
    "register_module",
)


def layer_test(index: ModuleIndex) -> Callable[[str], bool]:
    """Whether a called class is an nn layer that computes: any `nn.X` but the containers, a
    known layer by name, or the module's own class only where it extends one (its own code is
    checked where ModelNew reaches it)."""
    nn_names, own = index.nn_names, index.top_classes

    def is_layer(called: str, depth: int = 0) -> bool:
        head, _, last = called.rpartition(".")
        if not head and last in own:
            bases = own[last].bases
            return depth < 8 and any(is_layer(dotted(b), depth + 1) for b in bases)
        if head in nn_names:
            return last[:1].isupper() and last not in NN_NOT_COMPUTE
        return last.endswith(TORCH_LAYER_SUFFIXES)

    return is_layer


def view_of_operand(value: ast.AST, is_operand: Callable[[str], bool]) -> bool:
    """`x.reshape(4)`, `x[:]`, `x.T`, `x.contiguous().view(-1)`: a tensor made from a tensor
    by its own methods or indexing (not its sizes: `x.shape[0]`, `x.numel()`)."""
    node = value
    while True:
        if isinstance(node, ast.Subscript):
            node = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in NOT_VIEWS or node.func.attr.startswith("is_"):
                return False  # a size, a flag, the values on the host
            node = node.func.value
        elif isinstance(node, ast.Attribute):
            if node.attr in SIZE_ATTRIBUTES:
                return False
            if is_operand(dotted(node)):
                return True
            node = node.value
        elif isinstance(node, ast.List | ast.Tuple | ast.Set | ast.Dict):  # `[x][0]`, `{0: x}[0]`
            items = node.values if isinstance(node, ast.Dict) else node.elts
            items = [i.value if isinstance(i, ast.Starred) else i for i in items]
            return any(view_of_operand(item, is_operand) for item in items)
        else:
            return isinstance(node, ast.Name) and is_operand(node.id)


def add_aliases(
    index: ModuleIndex,
    function: ast.FunctionDef,
    is_operand: Callable[[str], bool],
    operands: set[str],
) -> None:
    """Names that merely rename a tensor (`inp = x`, `a, b = x, self.w`) are tensors too."""
    assigns = [n for n in index.within(function) if isinstance(n, ast.Assign)]
    changed = True
    while changed:
        changed = False
        for node in assigns:
            pairs: list[tuple[ast.AST, ast.AST]] = []
            for target in node.targets:
                value = node.value
                unpacks = isinstance(target, ast.Tuple | ast.List)
                if unpacks and isinstance(value, ast.Tuple | ast.List):
                    pairs += list(zip(target.elts, value.elts, strict=False))
                else:
                    pairs.append((target, value))
            for target, value in pairs:
                if isinstance(target, ast.Name) and target.id not in operands:
                    if is_operand(dotted(value)) or view_of_operand(value, is_operand):
                        operands.add(target.id)
                        changed = True


def containers(index: ModuleIndex, function: ast.FunctionDef) -> set[str]:
    """Names bound only to list, set or dict displays: locals of `function` (`opts = [...]`)
    and attributes stored anywhere in the module (`self._seen = set()`)."""
    if any(dotted(n.func).split(".")[-1] in _SETS_BY_NAME for n in index.of(ast.Call)):
        return set()  # attributes set by name: none is known
    values: dict[str, list[ast.AST]] = {}
    for scope, kinds in ((function, (ast.Name,)), (index.tree, (ast.Attribute,))):
        nodes = index.within(scope)
        plain: set[int] = set()  # targets of `name = value`, read with their value
        for node in nodes:
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, kinds):
                        values.setdefault(dotted(target), []).append(node.value)
                        plain.add(id(target))
        for node in nodes:
            stored = isinstance(node, kinds) and isinstance(node.ctx, ast.Store | ast.Del)  # type: ignore[attr-defined]
            if stored and id(node) not in plain:  # a loop variable, `with as`, unpacking
                values.setdefault(dotted(node), []).append(node)
    for node in index.nodes:  # bound some other way anywhere: not surely a container
        other: list[str] = []
        if isinstance(node, ast.Global | ast.Nonlocal):
            other = list(node.names)
        elif isinstance(node, ast.MatchAs | ast.MatchStar | ast.ExceptHandler) and node.name:
            other = [node.name]
        elif isinstance(node, ast.MatchMapping) and node.rest:
            other = [node.rest]
        for name in other:
            values.setdefault(name, []).append(node)

    def display(value: ast.AST) -> bool:
        shown = (ast.List, ast.Set, ast.Dict, ast.ListComp, ast.SetComp, ast.DictComp)
        if isinstance(value, ast.Call) and not value.args and not value.keywords:
            return dotted(value.func) in ("list", "set", "dict")
        return isinstance(value, shown)

    return {name for name, bound in values.items() if bound and all(display(v) for v in bound)}
