"""What the harness runs of a candidate: the class bound to `ModelNew`, and the code it reaches
per call (its methods, the module's helpers it names, the Python bodies of ops it registers)."""

from __future__ import annotations

import ast

from kernelwright import pyast
from kernelwright.verifier.scalars import Prover, Reached
from kernelwright.verifier.static.index import Literals, ModuleIndex, dotted
from kernelwright.verifier.static.tables import OP_REGISTRARS


def model_new_class(index: ModuleIndex) -> ast.ClassDef | None | str:
    """The class the module exposes as ModelNew: its last top-level binding, `class ModelNew`
    or another of its classes bound to the name (`ModelNew = Fast`); a string saying what it
    is bound to where that is something else (the checks would look at the wrong class)."""
    if "model_new" not in index.memo:
        index.memo["model_new"] = _model_new_class(index)
    return index.memo["model_new"]  # type: ignore[return-value]


def _model_new_class(index: ModuleIndex) -> ast.ClassDef | None | str:
    classes: dict[str, ast.ClassDef] = {}
    bound: dict[str, ast.AST] = {}
    for node in pyast.module_statements(index.tree.body):
        if isinstance(node, ast.ClassDef):
            classes[node.name] = bound[node.name] = node
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            bound[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in index.within(target):
                    if isinstance(name, ast.Name):
                        bound[name.id] = node.value if target is name else target
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                bound[alias.asname or alias.name] = node
    name = "ModelNew"
    for _ in range(len(bound) + 1):  # follow aliases, never in circles
        value = bound.get(name)
        if value is None:
            return None
        if isinstance(value, ast.ClassDef):
            return value
        if not isinstance(value, ast.Name):
            return f"`ModelNew` is bound to `{ast.unparse(value)[:60]}`"
        name = value.id
    return None


def registered_functions(index: ModuleIndex) -> list[ast.FunctionDef]:
    """Module functions that run as a registered op's body: decorated by a registrar
    (`@torch.library.custom_op(...)`, `@f.register_kernel("cpu")`) or handed to one
    (`lib.impl("f", fn, "CPU")`); `torch.ops.ns.f(x)` runs them."""
    functions = {n.name: n for n in index.of(ast.FunctionDef)}

    def registrar(node: ast.AST) -> bool:
        call = node.func if isinstance(node, ast.Call) else node
        return dotted(call).rpartition(".")[2] in OP_REGISTRARS

    found = [f for f in functions.values() if any(registrar(d) for d in f.decorator_list)]
    for node in index.of(ast.Call):
        if registrar(node):
            handed = [*node.args, *(k.value for k in node.keywords)]
            names = [a.id for a in handed if isinstance(a, ast.Name)]
            found += [functions[name] for name in names if name in functions]
    return found


def reachable_code(index: ModuleIndex, cls: ast.ClassDef) -> list[ast.FunctionDef]:
    """ModelNew's methods other than __init__, and the module's own functions and classes
    that ModelNew reaches by name, so that a helper doing the work with PyTorch is found too
    (not the backward of an autograd.Function; a helper's __init__ where the code that runs
    per call makes one)."""
    functions, classes = index.top_functions, index.top_classes
    reached: list[ast.FunctionDef] = []
    seen: set[str] = {cls.name}
    # and the Python bodies of ops it registers, which `torch.ops.ns.f(x)` runs
    pending: list[ast.AST] = [cls, *registered_functions(index)]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.ClassDef):
            for base in node.bases:  # `super()._m(t)`, an inherited forward
                own = classes.get(dotted(base))
                if own is not None and own.name not in seen:
                    seen.add(own.name)
                    pending.append(own)
            autograd = any(dotted(b).split(".")[-1] == "Function" for b in node.bases)
            for method in node.body:
                if isinstance(method, ast.FunctionDef):
                    if autograd and method.name in ("backward", "jvp", "vjp"):
                        continue  # gradients: never run by a forward-only evaluation
                    if method.name != "__init__":
                        reached.append(method)
                    pending.append(ast.Module(body=method.body, type_ignores=[]))
            continue
        if isinstance(node, ast.FunctionDef):
            reached.append(node)
        for inner in index.within(node):
            if isinstance(inner, ast.Name) and inner.id not in seen:
                target = functions.get(inner.id) or classes.get(inner.id)
                if target is not None:
                    seen.add(inner.id)
                    pending.append(target)
    # A class made while forward runs (`Helper(x, w)`) runs its __init__ then, not at build time.
    grown = True
    while grown:
        grown = False
        for function in list(reached):
            for call in index.within(function):
                made = isinstance(call, ast.Call) and classes.get(dotted(call.func))
                if made and made is not cls:
                    for method in made.body:
                        if isinstance(method, ast.FunctionDef) and method.name == "__init__":
                            if all(method is not r for r in reached):
                                reached.append(method)
                                grown = True
    return reached


def with_tensor_params(index: ModuleIndex, cls: ast.ClassDef, literals: Literals) -> list[Reached]:
    """The code ModelNew runs, each function with the parameters that may hold tensors
    (scalars.py: all but those proven to be sizes or the problem's literal inputs)."""
    reached = reachable_code(index, cls)
    prover = Prover(index.tree)
    tensor = prover.tensor_params(cls, reached, *literals)
    return [
        Reached(function, tensor[id(function)], prover.proven_names(function, tensor))
        for function in reached
    ]
