"""Rules on attributes, names and calls that reach what a kernel never needs: the environment,
files, the harness (`sys.modules`), frames, attributes looked up by computed names, process
exits, and the hooks and registrations that would run in the reference too.

The rules are registered in the order the single-pass checker tested them, so that findings on
one node keep their order (registry.py)."""

from __future__ import annotations

import ast
import re

from kernelwright.compiler.findings import REJECT, WARN
from kernelwright.verifier.check_names import Check
from kernelwright.verifier.static.index import ModuleIndex, dotted, literal_str
from kernelwright.verifier.static.ops import own_op_namespace
from kernelwright.verifier.static.registry import Report, rule
from kernelwright.verifier.static.tables import (
    ATTRIBUTE_GETTERS,
    FILE_READ_CALLS,
    FORBIDDEN_ATTRIBUTES,
    FORBIDDEN_CALLS,
    OS_FILE_CALLS,
    RAW_ATTRIBUTE_ACCESS,
    SECRET,
    STREAM_ATTRIBUTES,
    TORCH_COMPUTE,
)

_SUPPRESS = "contextlib.suppress can fall back when the kernel fails"
_QUIET_PROBES = (Check.PHASE_PROBE, Check.PATCHING, Check.FRAME_SNOOPING, Check.DISPATCH_BYPASS)


@rule(Check.TRY_FALLBACK, REJECT, _SUPPRESS)
def suppress_attribute(index: ModuleIndex, report: Report) -> None:
    for node in index.of(ast.Attribute):
        if node.attr == "suppress":
            report.add(Check.TRY_FALLBACK, _SUPPRESS, node)


@rule(Check.ENV_ACCESS, REJECT, "reads secrets or the whole environment")
def environment_reads(index: ModuleIndex, report: Report) -> None:
    for node in index.of(ast.Attribute):
        if node.attr in ("environ", "getenv"):
            problem = _env_read(node, index.parents)
            if problem:
                report.add(Check.ENV_ACCESS, problem, node)


@rule(Check.STREAMS, WARN, "uses another CUDA stream, off the timed one")
def stream_attributes(index: ModuleIndex, report: Report) -> None:
    for node in index.of(ast.Attribute):
        if node.attr in STREAM_ATTRIBUTES:
            message = f"`{dotted(node)}` uses another CUDA stream; work off the timed stream is "
            report.add(Check.STREAMS, message + "caught by the host-time cross-check", node, WARN)


@rule(Check.TORCH_COMPUTE, REJECT, "compiles PyTorch code or looks PyTorch up dynamically")
def compiled_or_looked_up_pytorch(index: ModuleIndex, report: Report) -> None:
    for node in index.of(ast.Call):
        name = dotted(node.func)
        if name in ("torch.compile", "torch.jit.script", "torch.jit.trace"):
            message = f"`{name}()` compiles PyTorch code instead of a kernel"
            report.add(Check.TORCH_COMPUTE, message, node)
        if name == "getattr" and len(node.args) >= 2:
            owner, attr = dotted(node.args[0]).split(".")[0], node.args[1]
            own_ops = own_op_namespace(node.args[0], index.declared_namespaces)
            if owner in ("torch", "F", "nn") and not own_ops:
                if not literal_str(attr) or attr.value in TORCH_COMPUTE:  # type: ignore[attr-defined]
                    report.add(Check.TORCH_COMPUTE, "looks up a PyTorch function dynamically", node)


@rule(Check.FILE_REPLAY, REJECT, "reads files (where the expected outputs are)")
def file_reads(index: ModuleIndex, report: Report) -> None:
    for node in index.of(ast.Call):
        name = dotted(node.func)
        file_use = _file_access(node, name, index.os_names)
        if file_use:
            report.add(Check.FILE_REPLAY, f"`{name}()` {file_use}", node)


@rule(Check.PATCHING, REJECT, "registers a kernel for PyTorch's own operators")
def torch_op_registrations(index: ModuleIndex, report: Report) -> None:
    for node in index.of(ast.Call):
        name = dotted(node.func)
        if _registers_torch_ops(node, name):  # the reference would run that kernel
            message = f"`{name}()` registers a kernel for PyTorch's own operators"
            report.add(Check.PATCHING, message, node)


@rule(Check.FRAME_SNOOPING, REJECT, "reads or sets attributes whose name is computed")
def computed_attribute_names(index: ModuleIndex, report: Report) -> None:
    for node in index.of(ast.Call):
        computed = _computed_attribute(node, dotted(node.func))
        if computed:
            report.add(Check.FRAME_SNOOPING, computed, node)


@rule(_QUIET_PROBES, REJECT, "names a forbidden attribute through getattr/setattr/hasattr")
def forbidden_attributes_by_name(index: ModuleIndex, report: Report) -> None:
    for node in index.of(ast.Call):
        name = dotted(node.func)
        if name in ("getattr", "setattr", "hasattr") and len(node.args) >= 2:
            attr = node.args[1]
            if isinstance(attr, ast.Constant) and attr.value in FORBIDDEN_ATTRIBUTES:
                check, why = FORBIDDEN_ATTRIBUTES[attr.value]
                if check in _QUIET_PROBES:
                    report.add(check, f"`{name}(..., {attr.value!r})` {why}", node)


@rule(
    (Check.PATCHING, Check.FRAME_SNOOPING, Check.PROCESS_EXIT),
    REJECT,
    "calls exec/eval/compile/setattr/globals/vars/exit",
)
def forbidden_calls(index: ModuleIndex, report: Report) -> None:
    for node in index.of(ast.Call):
        name = dotted(node.func)
        on_self = name == "setattr" and node.args and dotted(node.args[0]) == "self"
        if name in FORBIDDEN_CALLS and not on_self:  # setattr(self, ...) builds parameters
            check, why = FORBIDDEN_CALLS[name]
            report.add(check, f"`{name}()` {why}", node)


@rule(Check.HARNESS_ACCESS, REJECT, "reaches `sys.modules` or `sys.argv` (the harness)")
def harness_reach(index: ModuleIndex, report: Report) -> None:
    # the reference's module and the worker's own functions; the result pipe's number
    for node in index.of(ast.Attribute):
        owner = node.value
        named = isinstance(owner, ast.Name) and owner.id in (index.sys_names | {"sys"})
        if named and node.attr in ("modules", "argv"):
            message = f"`{dotted(node)}` reaches into the evaluation harness"
            report.add(Check.HARNESS_ACCESS, message, node)


@rule(Check.FRAME_SNOOPING, REJECT, "passes getattr-like functions around")
def attribute_getters_passed(index: ModuleIndex, report: Report) -> None:
    # `reduce(getattr, names, obj)`, `g = getattr`: names nobody can read here
    for node in index.of(ast.Name):
        parent = index.parents.get(node)
        called = isinstance(parent, ast.Call) and parent.func is node
        if node.id in ATTRIBUTE_GETTERS and not called:
            message = f"`{node.id}` passed around reads attributes by name"
            report.add(Check.FRAME_SNOOPING, message, node)


@rule(Check.FRAME_SNOOPING, REJECT, "uses __getattribute__/__setattr__ and the like")
def raw_attribute_access(index: ModuleIndex, report: Report) -> None:
    for node in index.of(ast.Attribute):
        if node.attr in RAW_ATTRIBUTE_ACCESS:
            message = f"`{dotted(node)}` reads or sets attributes by name"
            report.add(Check.FRAME_SNOOPING, message, node)


@rule(Check.PATCHING, REJECT, "reaches builtins or a protected module's namespace")
def namespaces_by_name(index: ModuleIndex, report: Report) -> None:
    for node in index.of(ast.Name):
        if node.id == "__builtins__":
            message = "`__builtins__` reaches builtins (exec, eval) by computed names"
            report.add(Check.PATCHING, message, node)
    for node in index.of(ast.Attribute):  # torch.__dict__["sum"] = slow
        if node.attr == "__dict__" and dotted(node.value).split(".")[0] in index.protected:
            message = f"`{dotted(node)}` reaches module attributes by computed names"
            report.add(Check.PATCHING, message, node)


@rule(
    tuple(dict.fromkeys(check for check, _ in FORBIDDEN_ATTRIBUTES.values())),
    REJECT,
    "uses frames, tracing, the seed, hooks on every torch call, exits or tensor files",
)
def forbidden_attributes(index: ModuleIndex, report: Report) -> None:
    for alias in index.of(ast.alias):
        if alias.name in FORBIDDEN_ATTRIBUTES:
            check, why = FORBIDDEN_ATTRIBUTES[alias.name]
            if check in _QUIET_PROBES:
                report.add(check, f"imports `{alias.name}`, which {why}", alias)
    for node in index.of(ast.Attribute):
        if node.attr not in FORBIDDEN_ATTRIBUTES:
            continue
        check, why = FORBIDDEN_ATTRIBUTES[node.attr]
        if node.attr in ("save", "load") and dotted(node.value) not in ("torch", "np", "numpy"):
            continue
        if node.attr == "system" and dotted(node.value) not in index.os_names:
            continue  # `platform.system()` names the OS
        report.add(check, f"`{dotted(node)}` {why}", node)


def _env_read(node: ast.Attribute, parents: dict[ast.AST, ast.AST]) -> str | None:
    """Why an `os.environ`/`os.getenv` use is a problem, or None where it only sets a variable
    or reads one by a literal, harmless name (e.g. TORCH_CUDA_ARCH_LIST)."""

    def named(arg: ast.AST | None) -> str | None:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return None if not SECRET.search(arg.value) else f"reads the secret `{arg.value}`"
        return "reads environment variables by computed names"

    parent = parents.get(node)
    if isinstance(parent, ast.Compare) and parent.comparators == [node]:
        if isinstance(parent.ops[0], ast.In | ast.NotIn):
            return named(parent.left)  # `"MAX_JOBS" in os.environ`
    if node.attr == "getenv":
        if isinstance(parent, ast.Call) and parent.func is node:
            return named(parent.args[0] if parent.args else None)
        return "passes os.getenv around"
    if isinstance(parent, ast.Subscript) and parent.value is node:
        if isinstance(parent.ctx, ast.Store | ast.Del):
            return None
        return named(parent.slice)
    if isinstance(parent, ast.Attribute) and parent.value is node:
        call = parents.get(parent)
        if parent.attr in ("setdefault", "update", "__setitem__", "pop"):
            return None
        if parent.attr == "get" and isinstance(call, ast.Call):
            return named(call.args[0] if call.args else None)
    return "reads the whole process environment"


def _file_access(call: ast.Call, name: str, os_names: set[str]) -> str | None:
    """How a call reaches files, if it does. Opening a file only to write (a source file to
    build) is fine: the expected outputs can only be read."""
    head, _, last = name.rpartition(".")
    if last == "open" or (last == "fdopen" and head in os_names):
        if head in os_names:  # os.open(path, flags): the flags may read
            return "opens a file"
        # open(path, mode), io.open and codecs.open too; `path.open(mode)`
        plain = isinstance(call.func, ast.Name) or head in ("io", "_io", "codecs")
        position = 1 if plain else 0
        mode = call.args[position] if len(call.args) > position else None
        mode = next((k.value for k in call.keywords if k.arg == "mode"), mode)
        if literal_str(mode) and set(mode.value) <= set("wxabt") and set(mode.value) & set("wxa"):  # type: ignore[union-attr]
            return None
        return "opens a file to read"
    if last in FILE_READ_CALLS:
        return "reads files"
    if head in os_names and last in OS_FILE_CALLS:
        return "reads files or lists folders"
    return None


def _computed_attribute(node: ast.Call, name: str) -> str:
    """Why a call reads or sets an attribute whose name is computed ('' when it does not).

    A computed name gets past every rule on literal names (`"_get" + "frame"`, `"f_" + "back"`):
    frames, the harness's variables, and from there the kept outputs and the result pipe. Only
    the module's own attributes (`getattr(self, f"conv{i}")`) may be looked up that way."""
    short = name.rpartition(".")[2]
    if short in ("attrgetter", "methodcaller"):
        if any(not literal_str(a) for a in node.args):
            return f"`{name}()` with a computed name reads attributes nobody can read here"
        return ""
    if short not in ("getattr", "setattr", "delattr", "hasattr") or len(node.args) < 2:
        return ""
    if name != short or literal_str(node.args[1]):
        return ""
    owner = dotted(node.args[0])
    if owner == "self" or owner.split(".")[0] in ("torch", "F", "nn"):
        return ""  # the module's own attributes; torch's are `torch_compute`'s to judge
    return f"`{name}()` with a computed name reads attributes nobody can read here"


def _registers_torch_ops(node: ast.Call, name: str) -> bool:
    """`torch.library.Library("aten", "IMPL")`, `torch.library.impl("aten::mul.Tensor", ...)`:
    a library call naming one of PyTorch's own namespaces, or one it cannot read."""
    short = name.rpartition(".")[2]
    args = [a.value if literal_str(a) else None for a in node.args[:2]]  # type: ignore[attr-defined]
    if len(args) == 2 and args[1] in ("IMPL", "FRAGMENT", "DEF") and args[0] != "":
        if args[0] is None or re.fullmatch(r"aten|prims?|_", args[0]):  # `L("aten", "IMPL")`
            return True
    if not (name.startswith(("torch.library.", "library.")) or short == "Library"):
        return False
    if not node.args:
        return False
    first = node.args[0]
    if not literal_str(first):
        return short in ("Library", "impl", "register_kernel", "register_fake")
    return bool(re.match(r"(?:aten|prims?|_)(?:::|$)", first.value))  # type: ignore[attr-defined]
