"""Who does the work in the code ModelNew runs: PyTorch (`torch_compute`, or the
`torch_compute_partial` warning beside a call of the candidate's own kernel) or numpy on the
host (`host_compute`), rather than the candidate's kernel.

Allocation, views and reading sizes and parameters are fine; arithmetic counts on tensors only
(inputs, parameters, buffers, layers' weights and what merely renames them), never on sizes
(scalars.py proves which names are sizes).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass

from kernelwright.compiler.findings import REJECT, WARN, Finding
from kernelwright.verifier.check_names import Check
from kernelwright.verifier.scalars import Reached
from kernelwright.verifier.static import operands
from kernelwright.verifier.static.extensions import calls_extension, extensions, through_extension
from kernelwright.verifier.static.index import ModuleIndex, dotted
from kernelwright.verifier.static.ops import op_space, own_space
from kernelwright.verifier.static.reach import model_new_class, with_tensor_params
from kernelwright.verifier.static.registry import COMPUTE, Report, rule
from kernelwright.verifier.static.tables import (
    ARITHMETIC_BUILTINS,
    ARITHMETIC_DUNDERS,
    COMPUTE_NAMESPACES,
    LAYER_SETTINGS,
    SIZE_ATTRIBUTES,
    TORCH_COMPUTE,
)

TORCH_ROOTS = ("torch", "F", "nn")
_LOW_LEVEL = ("torch.ops.aten", "torch.ops.prims", "torch._C", "torch._ops")


def _reached(index: ModuleIndex) -> list[Reached]:
    if "reached" not in index.memo:
        cls = model_new_class(index)
        found = (
            with_tensor_params(index, cls, index.literals) if isinstance(cls, ast.ClassDef) else []
        )
        index.memo["reached"] = found
    return index.memo["reached"]  # type: ignore[return-value]


@rule(
    (Check.TORCH_COMPUTE, Check.TORCH_COMPUTE_PARTIAL),
    REJECT,
    "PyTorch computes in the code ModelNew runs (a warning beside a call of its own kernel)",
    COMPUTE,
)
def torch_compute(index: ModuleIndex, report: Report) -> None:
    model_new = model_new_class(index)
    if isinstance(model_new, str):
        message = f"{model_new}, which these checks cannot follow; define `class ModelNew`"
        report.add(Check.TORCH_COMPUTE, message, index.tree)
        return
    if model_new is None:
        return
    reached = _reached(index)
    names = extensions(index).names
    compute = _torch_compute_findings(index, model_new, reached, names)
    if compute and calls_extension(index, [r.function for r in reached], names):
        # A kernel does part of the work and PyTorch the rest: allowed, labelled for the judge.
        compute = [
            Finding(
                Check.TORCH_COMPUTE_PARTIAL,
                WARN,
                f"part of the work is PyTorch: {f.message}",
                f.line,
            )
            for f in compute
        ]
    report.extend(compute)


@dataclass
class _Model:
    """ModelNew's layers (`self.conv = nn.Conv2d(...)`) and tensors (parameters, buffers)."""

    layers: set[str]
    tensors: set[str]
    settings: frozenset[str]  # layer attributes that are numbers (`self.conv.groups`)

    @classmethod
    def of(cls, index: ModuleIndex, model: ast.ClassDef) -> _Model:
        is_layer = operands.layer_test(index)
        layers: set[str] = set()
        tensors: set[str] = set()
        for node in index.within(model):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                called = dotted(node.value.func)
                if is_layer(called):
                    layers |= {dotted(t) for t in node.targets}
                if called.split(".")[-1] == "Parameter":
                    tensors |= {dotted(t) for t in node.targets}
            if isinstance(node, ast.Call) and dotted(node.func).endswith("register_buffer"):
                if node.args and isinstance(node.args[0], ast.Constant):
                    tensors.add(f"self.{node.args[0].value}")
        # `self.conv.groups = self.w` makes that setting a tensor
        return cls(layers, tensors, LAYER_SETTINGS - index.stored_attributes)

    def operand_test(self, operand_names: set[str]) -> Callable[[str], bool]:
        def is_tensor(name: str) -> bool:
            # inputs, parameters, and the weights of nn layers (`self.linear.weight`), not
            # their settings (`self.conv.groups`); `operand_names` grows with aliases
            return name in operand_names or any(
                name.startswith(f"{layer}.")
                and name[len(layer) + 1 :].split(".")[0] not in self.settings
                for layer in self.layers
            )

        return is_tensor


def _torch_compute_findings(
    index: ModuleIndex, model: ast.ClassDef, reached: list[Reached], names: set[str]
) -> list[Finding]:
    """PyTorch compute in the code ModelNew runs, not in __init__ (where layers may be built)."""
    findings = _passed_functions(index)
    facts = _Model.of(index, model)
    for method, args, scalars in reached:
        # not tensors: sizes, other modules (`import math as m`), lists, sets and dicts
        plain = {"math", "np", "numpy", *scalars, *index.other_modules}
        plain |= operands.containers(index, method)
        # Arithmetic counts on tensors only: inputs and parameters, not sizes.
        operand_names = args | facts.tensors
        is_tensor = facts.operand_test(operand_names)
        operands.add_aliases(index, method, is_tensor, operand_names)
        for node in index.within(method):
            found = _arithmetic(node, is_tensor)
            if found is None and isinstance(node, ast.Call):
                found = _call(index, node, method, is_tensor, plain, facts.layers, names)
            if found is not None:
                findings.append(Finding(Check.TORCH_COMPUTE, REJECT, found, node.lineno))  # type: ignore[attr-defined]
    return findings


def _passed_functions(index: ModuleIndex) -> list[Finding]:
    """PyTorch's functions handed on to be called, anywhere in the file (they may be called
    from anywhere): `reduce(torch.mul, ...)`, `W = torch.mul`, `op = torch.ops.aten.mm`."""
    declared = index.declared_namespaces
    callees = {id(n.func) for n in index.of(ast.Call)}
    inner = {id(n.value) for n in index.of(ast.Attribute)}
    findings = []
    for node in index.of(ast.Attribute):
        message = ""
        parts = dotted(node).split(".")
        if id(node) not in callees | inner and parts[:2] == ["torch", "ops"]:
            if not (len(parts) > 2 and own_space(parts[2], declared)):
                message = f"passes PyTorch's own ops `{dotted(node)}` to be called"
        if not message and id(node) not in callees:
            passed = dotted(node)
            space = op_space(passed)
            own_op = space is not None and own_space(space, declared)
            head, _, last = passed.rpartition(".")
            computes = last in TORCH_COMPUTE or last in ARITHMETIC_DUNDERS
            if passed.split(".")[0] in TORCH_ROOTS and not own_op:
                if computes or head in COMPUTE_NAMESPACES:
                    message = f"passes the PyTorch function `{passed}` to be called"
        if message:
            findings.append(Finding(Check.TORCH_COMPUTE, REJECT, message, node.lineno))
    return findings


def _arithmetic(node: ast.AST, is_tensor: Callable[[str], bool]) -> str | None:
    """`x @ w`, `x * self.w`, `-x`, `y += self.b`: PyTorch's operators on tensors."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
        return "uses `@` (PyTorch matmul)"
    if isinstance(node, ast.BinOp):
        sides = [node.left, node.right]
    elif isinstance(node, ast.AugAssign):  # `y += self.b`
        sides = [node.target, node.value]
    elif isinstance(node, ast.UnaryOp):
        sides = [node.operand]
    else:
        return None
    for side in sides:
        if is_tensor(dotted(side)) or operands.view_of_operand(side, is_tensor):
            return f"computes with PyTorch arithmetic on `{ast.unparse(side)[:40]}`"
    return None


def _call(
    index: ModuleIndex,
    node: ast.Call,
    method: ast.FunctionDef,
    is_tensor: Callable[[str], bool],
    plain: set[str],
    layers: set[str],
    names: set[str],
) -> str | None:
    """Why a call is PyTorch doing the work, or None."""
    name = dotted(node.func)
    head, _, last = name.rpartition(".")
    root = head.split(".")[0]
    if isinstance(node.func, ast.Attribute) and name == node.func.attr:
        # a method of an unnamed value: `_get().mul(x, w)`, `(x + 0).sum()`
        if last in TORCH_COMPUTE and not through_extension(node, names):
            return f"computes with a PyTorch tensor method: `.{last}()`"
    if re.fullmatch(r"__[a-z]+__", last):  # `x.__mul__(w)`, `torch.Tensor.__mul__(x, w)`
        if is_tensor(head) or (root in TORCH_ROOTS and last in ARITHMETIC_DUNDERS):
            return f"computes with PyTorch arithmetic: `{name}()`"
    if name in index.torch_function_names:
        return f"computes with PyTorch: `{name}()`, imported from torch by name"
    if name in index.operator_names or name in ARITHMETIC_BUILTINS or head == "math":
        # `operator.mul(x, w)`, `sum([x, w])`, `math.prod((x, w))`: tensor arithmetic
        given = [*node.args, *(k.value for k in node.keywords)]
        given += [e for a in given if isinstance(a, ast.Tuple | ast.List) for e in a.elts]
        hit = next((dotted(a) for a in given if is_tensor(dotted(a))), None)
        return f"computes with `{name}()` (PyTorch arithmetic) on `{hit}`" if hit else None
    if through_extension(node, names):
        return None  # the candidate's own compiled functions
    space = op_space(name)
    if space is not None:  # its own registered ops (a Python body among the code checked)
        own = own_space(space, index.declared_namespaces)
        return None if own else f"computes with PyTorch's own op `{name}()`"
    if head.startswith(_LOW_LEVEL):
        return f"computes with ATen directly: `{name}()`"
    last = last.rstrip("_") if last.endswith("_") and not last.startswith("_") else last
    if root in TORCH_ROOTS:
        computes = last in TORCH_COMPUTE or head in COMPUTE_NAMESPACES
        return f"computes with PyTorch: `{name}()`" if computes else None
    if name in layers or head in layers:  # `self.act(x)`, `self.act.forward(x)`
        return f"calls the PyTorch layer `{name}` in {method.name}"
    if head and {head, root}.isdisjoint(plain) and last in TORCH_COMPUTE:
        return f"computes with a PyTorch tensor method: `{name}()`"
    return None


@rule(Check.HOST_COMPUTE, REJECT, "hands tensors to numpy in the code ModelNew runs", COMPUTE)
def host_compute(index: ModuleIndex, report: Report) -> None:
    """Tensors handed to numpy in the code ModelNew runs: the work is done on the host by
    numpy, not by the candidate's kernel (on a GPU the output-device and host-time checks
    catch it too, on the CPU nothing else would)."""
    if not isinstance(model_new_class(index), ast.ClassDef):
        return
    for method, tensors, _ in _reached(index):
        inside = index.within(method)
        # numpy on sizes (`np.prod(x.shape)`) is fine; numpy on an input tensor is not
        sizes = {
            id(n.value)
            for n in inside
            if isinstance(n, ast.Attribute) and n.attr in SIZE_ATTRIBUTES
        }

        def holds_tensor(
            arg: ast.AST, tensors: set[str] = tensors, sizes: set[int] = sizes
        ) -> bool:
            return any(
                isinstance(n, ast.Name) and n.id in tensors and id(n) not in sizes
                for n in index.within(arg)
            )

        for node in inside:
            if isinstance(node, ast.Attribute) and node.attr in ("numpy", "__array__"):
                message = f"hands a tensor to numpy (`{dotted(node)}`) in {method.name}"
            elif (
                isinstance(node, ast.Call) and dotted(node.func).split(".")[0] in index.numpy_names
            ):
                given = [*node.args, *(k.value for k in node.keywords)]
                if not any(holds_tensor(a) for a in given):
                    continue  # `np.float32(slope)`, `np.prod(x.shape)`: not computing on a tensor
                message = f"computes with numpy (`{dotted(node.func)}()`) in {method.name}"
            else:
                continue
            report.add(Check.HOST_COMPUTE, message, node)
