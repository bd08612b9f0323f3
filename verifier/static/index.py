"""One index of a candidate module, built once and read by every static rule.

The rules used to walk the tree themselves, each re-deriving what the module imports and binds
(how it names `sys`, `os`, numpy, `operator`, torch's functions, `cpp_extension`): about 48
passes over the tree and the same binding analysis written five or six times. Here the tree is
walked once (`ast.walk`, breadth first: the order findings are reported in), nodes are filed by
type, and what the module imports and binds is derived from those lists on first use.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple, TypeVar

from kernelwright import pyast
from kernelwright.compiler.native_checks import strip_comments
from kernelwright.verifier.scalars import module_names
from kernelwright.verifier.static.tables import (
    DOC_REACH,
    OPERATOR_ARITHMETIC,
    PLAIN_MODULES,
    PROTECTED_ROOTS,
    TORCH_COMPUTE,
)

dotted = pyast.dotted
N = TypeVar("N", bound=ast.AST)
# Positions of forward's and of the constructor's inputs that the problem fills with literals,
# and how many arguments each gets (None: unknown).
Literals = tuple[tuple[int, ...], tuple[int, ...], tuple[int | None, int | None]]


class Imported(NamedTuple):
    """One name an import statement binds."""

    bound: str  # as the module names it: `np`, `relu`; `torch.nn` for `import torch.nn`
    module: str  # `numpy`, `torch.nn.functional`: the module named by the statement
    name: str | None  # for `from m import name [as bound]`; None for `import m`
    asname: str | None
    node: ast.Import | ast.ImportFrom


class Binding(NamedTuple):
    """Targets bound together, and their value (None for a loop or `with` target)."""

    targets: list[ast.AST]
    value: ast.AST | None


def literal_str(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def is_none(value: ast.AST | None) -> bool:
    return isinstance(value, ast.Constant) and value.value is None


@dataclass(eq=False)
class ModuleIndex:
    tree: ast.Module
    nodes: list[ast.AST]  # every node, in `ast.walk` order
    order: dict[int, int]  # id(node) -> its position in `nodes`
    parents: dict[ast.AST, ast.AST]
    _by_type: dict[type, list[ast.AST]]
    # what the check knows beside the module: the target, and the problem's literal inputs
    target: str = "cuda"
    literals: Literals = ((), (), (None, None))
    _within: dict[int, list[ast.AST]] = field(default_factory=dict)
    # analyses other modules derive from the index once (extensions, ModelNew's reach)
    memo: dict[str, object] = field(default_factory=dict)

    @classmethod
    def build(
        cls, tree: ast.Module, target: str = "cuda", literals: Literals = ((), (), (None, None))
    ) -> ModuleIndex:
        nodes = list(ast.walk(tree))  # the one walk of the whole module
        by_type: dict[type, list[ast.AST]] = {}
        parents: dict[ast.AST, ast.AST] = {}
        for node in nodes:
            by_type.setdefault(type(node), []).append(node)
            for child in ast.iter_child_nodes(node):
                parents[child] = node
        order = {id(n): i for i, n in enumerate(nodes)}
        index = cls(tree, nodes, order, parents, by_type, target, literals)
        index._within[id(tree)] = nodes
        return index

    def of(self, *types: type[N]) -> list[N]:
        """The nodes of these types (exactly, as ast classes are final), in walk order."""
        if len(types) == 1:
            return list(self._by_type.get(types[0], []))  # type: ignore[arg-type]
        found = [n for t in types for n in self._by_type.get(t, [])]
        return sorted(found, key=lambda n: self.order[id(n)])  # type: ignore[return-value]

    def within(self, scope: ast.AST) -> list[ast.AST]:
        """Every node of `scope` (itself included), in walk order; kept for the next rule where
        `scope` is part of the tree (an id of a node made on the fly may be reused later)."""
        if id(scope) in self._within:
            return self._within[id(scope)]
        found = list(ast.walk(scope))
        if id(scope) in self.order:
            self._within[id(scope)] = found
        return found

    # -- what the module imports ---------------------------------------------------------

    @cached_property
    def imports(self) -> list[Imported]:
        found = []
        for node in self.of(ast.Import, ast.ImportFrom):
            for alias in node.names:
                if isinstance(node, ast.Import):
                    bound = alias.asname or alias.name
                    found.append(Imported(bound, alias.name, None, alias.asname, node))
                else:
                    bound = alias.asname or alias.name
                    module = node.module or ""
                    found.append(Imported(bound, module, alias.name, alias.asname, node))
        return found

    def _plain_imports(self) -> Iterable[Imported]:
        return (i for i in self.imports if i.name is None)

    def _from_imports(self) -> Iterable[Imported]:
        return (i for i in self.imports if i.name is not None)

    @cached_property
    def aliases(self) -> dict[str, str]:
        """`import torch as T`: T -> torch (the root of the module imported)."""
        return {i.asname: i.module.split(".")[0] for i in self._plain_imports() if i.asname}

    @cached_property
    def sys_names(self) -> set[str]:
        return {i.bound for i in self._plain_imports() if i.module == "sys"}

    @cached_property
    def os_names(self) -> set[str]:
        """How the module names `os` (`import os as platform` is an os too)."""
        return {"os", "posix"} | {a for a, m in self.aliases.items() if m in ("os", "posix")}

    @cached_property
    def protected(self) -> set[str]:
        """Names of the protected modules and of their objects: `import torch as T`,
        `T = torch.Tensor`, `from torch import Tensor as T`, `(T := torch)`; rebinding
        `T.__mul__` then patches torch itself."""
        protected = PROTECTED_ROOTS | {a for a, m in self.aliases.items() if m in PROTECTED_ROOTS}
        found: set[str] = set()
        for i in self._from_imports():
            if i.module and i.module.split(".")[0] in protected:
                found.add(i.bound)
        for node in self.of(ast.Assign, ast.AnnAssign, ast.NamedExpr):
            if node.value is not None and dotted(node.value).split(".")[0] in protected:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                found |= {t.id for t in targets if isinstance(t, ast.Name)}
        return protected | found

    @cached_property
    def numpy_names(self) -> set[str]:
        """How the module names numpy (`np`, `numpy`) and the functions it imported from it."""
        names = {i.bound for i in self._plain_imports() if i.module.split(".")[0] == "numpy"}
        return names | {i.bound for i in self._from_imports() if i.module.split(".")[0] == "numpy"}

    @cached_property
    def operator_names(self) -> set[str]:
        """How the module can call the `operator` module's arithmetic: `add` after `from operator
        import add`, `operator.mul` or `op.mul` after `import operator as op`."""
        names: set[str] = set()
        for i in self.imports:
            if i.name is not None and i.module == "operator" and i.name in OPERATOR_ARITHMETIC:
                names.add(i.bound)
            elif i.name is None and i.module == "operator":
                names |= {f"{i.bound}.{fn}" for fn in OPERATOR_ARITHMETIC}
        return names

    @cached_property
    def torch_function_names(self) -> set[str]:
        """Compute functions imported from torch by name (`from torch.nn.functional import relu
        as kernel`, `from torch.special import expit`): a call through them is PyTorch."""
        found = set()
        for i in self._from_imports():
            if i.module.split(".")[0] != "torch":
                continue
            namespace = i.module in ("torch.special", "torch.linalg", "torch.fft")
            if namespace or (i.name or "").rstrip("_") in TORCH_COMPUTE:
                found.add(i.bound)
        return found

    @cached_property
    def nn_names(self) -> set[str]:
        names = {"nn", "torch.nn"}
        names |= {i.asname for i in self._plain_imports() if i.module == "torch.nn" and i.asname}
        return names | {
            i.bound for i in self._from_imports() if i.module == "torch" and i.name == "nn"
        }

    @cached_property
    def other_modules(self) -> set[str]:
        """Names bound only by importing a plain standard module (`import math as m`, `re`),
        and never given an attribute (`s.t = x` would put a tensor in the module)."""
        changed = {dotted(n).split(".")[0] for n in self.stored_attribute_nodes}
        return {
            name
            for name, module in self.module_names[1].items()
            if module.split(".")[0] in PLAIN_MODULES and name not in changed
        }

    @cached_property
    def module_names(self) -> tuple[dict[str, int], dict[str, str]]:
        """(how many times each name is bound anywhere, names bound only by importing a module)"""
        return module_names(self.tree)

    # -- what the module binds -----------------------------------------------------------

    @cached_property
    def binds(self) -> list[Binding]:
        """Every binding with a target: assignments (plain, annotated, augmented, `:=`), and
        `for`/`with` targets (value None)."""
        found: list[Binding] = []
        kinds = (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.NamedExpr, ast.For, ast.AsyncFor)
        for node in self.of(*kinds, ast.With, ast.AsyncWith):
            if isinstance(node, ast.Assign):
                found.append(Binding(node.targets, node.value))
            elif isinstance(node, ast.AnnAssign | ast.AugAssign | ast.NamedExpr):
                found.append(Binding([node.target], node.value))
            elif isinstance(node, ast.For | ast.AsyncFor):
                found.append(Binding([node.target], None))
            else:
                found.append(
                    Binding([i.optional_vars for i in node.items if i.optional_vars], None)
                )
        return found

    @cached_property
    def stored_attribute_nodes(self) -> list[ast.Attribute]:
        return [n for n in self.of(ast.Attribute) if isinstance(n.ctx, ast.Store | ast.Del)]

    @cached_property
    def stored_attributes(self) -> set[str]:
        """Attribute names stored or deleted anywhere (`self.conv.groups = w`, `del x.y`)."""
        return {n.attr for n in self.stored_attribute_nodes}

    @cached_property
    def top_functions(self) -> dict[str, ast.FunctionDef]:
        return {n.name: n for n in self.tree.body if isinstance(n, ast.FunctionDef)}

    @cached_property
    def top_classes(self) -> dict[str, ast.ClassDef]:
        return {n.name: n for n in self.tree.body if isinstance(n, ast.ClassDef)}

    # -- the embedded native code --------------------------------------------------------

    @cached_property
    def native_text(self) -> str:
        """The C++/CUDA text: the module's string constants, comments removed. Prose
        (docstrings and other bare string statements) is left out where no code can read it."""
        prose = set() if self.docstrings_reachable else self.prose_strings()
        strings = [
            n.value
            for n in self.of(ast.Constant)
            if isinstance(n.value, str) and id(n) not in prose
        ]
        return strip_comments("\n".join(strings))

    def prose_strings(self) -> set[int]:
        """ids of the string constants that are whole statements: docstrings and bare strings."""
        return {id(n.value) for n in self.of(ast.Expr) if literal_str(n.value)}

    @cached_property
    def docstrings_reachable(self) -> bool:
        """Whether code can get at a docstring's text: `__doc__` by name or by a computed
        attribute name, namespaces, introspection or source readers."""
        for node in self.nodes:
            if isinstance(node, ast.Name) and node.id in DOC_REACH:
                return True
            if isinstance(node, ast.Attribute) and node.attr in DOC_REACH:
                return True
            if isinstance(node, ast.alias) and (node.name.split(".")[-1] in DOC_REACH):
                return True
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if any(word in node.value for word in ("__doc__", "getdoc", "co_consts")):
                    return True
            if isinstance(node, ast.Call) and dotted(node.func) == "getattr" and len(node.args) > 1:
                if not literal_str(node.args[1]):
                    return True  # a computed name may spell `__doc__`
        return False

    @cached_property
    def native_namespaces(self) -> set[str]:
        """Op namespaces the native code defines (`TORCH_LIBRARY(ns, m)`)."""
        return set(re.findall(r"\bTORCH_LIBRARY\s*\(\s*(\w+)", self.native_text))

    @cached_property
    def declared_namespaces(self) -> set[str]:
        """Op namespaces the candidate declares: `TORCH_LIBRARY(ns, m)` in its native code, and
        in Python `torch.library.custom_op("ns::f")`, `Library("ns", "DEF")`, `define("ns::f")`.
        Any other `torch.ops.<ns>` is PyTorch's own (mkldnn, quantized_decomposed, ...)."""
        found = set(self.native_namespaces)
        for node in self.of(ast.Call):
            if node.args and literal_str(node.args[0]):
                short = dotted(node.func).rpartition(".")[2]
                value: str = node.args[0].value  # type: ignore[attr-defined]
                if short in ("custom_op", "triton_op", "define"):
                    found.add(value.partition("::")[0])
                elif short == "Library":
                    found.add(value)
        return found
