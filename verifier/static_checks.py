"""Static anti-cheat checks on a candidate's source, before anything of it runs.

Two layers: the Python module's AST (what `ModelNew` and module-level code do, here) and patterns
over the C++/CUDA text embedded in it (native_checks.py). Each rule has a name, a severity and a
reason:

- `reject`: the construct games the evaluation or replaces the kernel with PyTorch; the candidate
  ends `rejected` with the rule's name;
- `warn`: suspicious or worth knowing (reduced precision, library compute inside the extension);
  stored with the result and shown to the judge, never a rejection.

A legitimate kernel must pass: allocation, views and reading parameters in `forward` are fine, and
calling cuBLAS/cuDNN/ATen from inside the extension is allowed and labelled `library_compute`.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Callable, Iterable

from kernelwright import pyast
from kernelwright.compiler.findings import REJECT, WARN, Finding
from kernelwright.compiler.native_checks import kernel_names, native_findings, strip_comments
from kernelwright.verifier.scalars import (
    SIZE_FIELDS,
    SIZE_METHODS,
    Prover,
    Reached,
    module_names,
)

# Positions of forward's and of the constructor's inputs that the problem fills with literals,
# and how many arguments each gets (None: unknown).
Literals = tuple[tuple[int, ...], tuple[int, ...], tuple[int | None, int | None]]

# PyTorch calls that compute (as opposed to allocate or reshape). Used in ModelNew's methods,
# they mean the work is done by PyTorch, not by the candidate's kernel.
TORCH_COMPUTE = {
    "matmul",
    "mm",
    "bmm",
    "addmm",
    "addbmm",
    "baddbmm",
    "einsum",
    "linear",
    "bilinear",
    "dot",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "softmax",
    "log_softmax",
    "layer_norm",
    "batch_norm",
    "group_norm",
    "instance_norm",
    "rms_norm",
    "scaled_dot_product_attention",
    "relu",
    "gelu",
    "silu",
    "sigmoid",
    "tanh",
    "leaky_relu",
    "elu",
    "selu",
    "softplus",
    "hardtanh",
    "mish",
    "dropout",
    "sum",
    "mean",
    "prod",
    "cumsum",
    "cumprod",
    "max",
    "min",
    "amax",
    "amin",
    "argmax",
    "argmin",
    "norm",
    "var",
    "std",
    "exp",
    "log",
    "sqrt",
    "rsqrt",
    "pow",
    "abs",
    "clamp",
    "where",
    "maximum",
    "minimum",
    "add",
    "sub",
    "mul",
    "div",
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "adaptive_avg_pool2d",
    "interpolate",
    "cross_entropy",
    "nll_loss",
    "mse_loss",
    "topk",
    "sort",
    "logsumexp",
    "erf",
    "tensordot",
    "outer",
    "cdist",
    "addcmul",
    "addcdiv",
    "addmv",
    "addr",
    "mv",
    "lerp",
    "clip",
    "square",
    "reciprocal",
    "neg",
    "sign",
    "log1p",
    "log2",
    "log10",
    "expm1",
    "exp2",
    "sin",
    "cos",
    "true_divide",
    "floor_divide",
    "remainder",
    "fmod",
    "multiply",
    "divide",
    "subtract",
    "hardswish",
    "hardsigmoid",
    "logsigmoid",
    "softsign",
    "glu",
    "prelu",
    "celu",
    "threshold",
    "normalize",
    "cosine_similarity",
    "pairwise_distance",
    "embedding",
    "gather",
    "scatter_add",
    "index_select",
    "masked_fill",
    "cummax",
    "cummin",
    "logcumsumexp",
    "median",
    "nansum",
    "nanmean",
    "kron",
    "matrix_power",
}
# Functions of the `operator` module that do arithmetic (on tensors, PyTorch's).
OPERATOR_ARITHMETIC = {
    "add",
    "sub",
    "mul",
    "truediv",
    "floordiv",
    "mod",
    "pow",
    "matmul",
    "neg",
    "abs",
    "iadd",
    "isub",
    "imul",
    "itruediv",
    "imatmul",
    "ipow",
}
# nn layers whose __call__ computes; building them in __init__ is fine (parameters), calling them
# in forward is not.
TORCH_LAYER_SUFFIXES = (
    "Linear",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "LayerNorm",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "GroupNorm",
    "InstanceNorm2d",
    "RMSNorm",
    "MultiheadAttention",
    "Softmax",
    "ReLU",
    "GELU",
    "Sequential",
    "LSTM",
    "GRU",
    "Embedding",
    "MaxPool2d",
    "AvgPool2d",
    "Dropout",
    "Tanh",
    "Sigmoid",
)
# nn classes that hold or reshape rather than compute
NN_NOT_COMPUTE = {
    "Module",
    "ModuleList",
    "ModuleDict",
    "Parameter",
    "ParameterList",
    "ParameterDict",
    "Buffer",
    "Identity",
    "Flatten",
    "Unflatten",
}
FORBIDDEN_IMPORTS = {
    "inspect": ("frame_snooping", "inspects the caller's frames"),
    "gc": ("frame_snooping", "walks the garbage collector's objects"),
    "ctypes": ("frame_snooping", "reaches raw memory through ctypes"),
    "threading": ("threads", "starts threads that can finish work after timing"),
    "_thread": ("threads", "starts threads"),
    "concurrent": ("threads", "starts worker threads or processes"),
    "multiprocessing": ("threads", "starts processes"),
    "asyncio": ("threads", "runs background tasks"),
    "subprocess": ("threads", "starts processes"),
    "socket": ("network", "opens network connections"),
    "urllib": ("network", "opens network connections"),
    "http": ("network", "opens network connections"),
    "requests": ("network", "opens network connections"),
    "pickle": ("file_replay", "persists objects across calls"),
    "shelve": ("file_replay", "persists objects across calls"),
    "marshal": ("file_replay", "persists objects across calls"),
    "mmap": ("file_replay", "maps files into memory"),
    **{
        module: ("file_replay", "reads files")
        for module in ("fileinput", "linecache", "sqlite3", "dbm", "zipfile", "tarfile")
    },
    **{module: ("file_replay", "reads tensors from files") for module in ("h5py", "safetensors")},
    "kernelwright": ("harness_access", "imports the evaluation harness"),
    # the names the harness loads the problem and the candidate under, and the worker itself
    "kw_problem": ("harness_access", "imports the reference the harness times"),
    "kw_candidate": ("harness_access", "imports itself as the harness loaded it"),
    "__main__": ("harness_access", "imports the worker running the harness"),
    "traceback": ("frame_snooping", "walks the call stack"),
    "signal": ("frame_snooping", "runs handlers (with the interrupted frame) during timed calls"),
    "builtins": ("patching", "rebinds builtins"),
    "importlib": ("patching", "loads modules dynamically"),
}
OS_PROCESS_FUNCTIONS = {
    "system",
    "popen",
    "fork",
    "forkpty",
    "posix_spawn",
    "posix_spawnp",
    *(f"exec{s}" for s in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")),
    *(f"spawn{s}" for s in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")),
}
# Modules whose attributes a candidate must never rebind (timers, synchronisation, comparison).
PROTECTED_ROOTS = {"torch", "time", "builtins", "sys", "os", "numpy", "np", "math", "kernelwright"}
FORBIDDEN_CALLS = {
    "setattr": ("patching", "rebinds attributes dynamically"),
    "eval": ("patching", "evaluates code built at run time"),
    "exec": ("patching", "executes code built at run time"),
    "compile": ("patching", "compiles code at run time"),
    "__import__": ("patching", "imports modules dynamically"),
    "globals": ("frame_snooping", "reads the module's globals dynamically"),
    "exit": ("process_exit", "ends the process before the checks run"),
    "quit": ("process_exit", "ends the process before the checks run"),
    "vars": ("frame_snooping", "reads objects' namespaces dynamically"),
}
FORBIDDEN_ATTRIBUTES = {
    "_getframe": ("frame_snooping", "inspects the call stack"),
    "_current_frames": ("frame_snooping", "inspects every thread's call stack"),
    "settrace": ("frame_snooping", "traces the harness's frames"),
    "setprofile": ("frame_snooping", "traces the harness's frames"),
    "monitoring": ("frame_snooping", "traces the harness's code"),
    "_exit": ("process_exit", "ends the process before the checks run"),
    "exit": ("process_exit", "ends the process before the checks run"),
    "abort": ("process_exit", "ends the process before the checks run"),
    "f_back": ("frame_snooping", "walks the call stack"),
    "f_locals": ("frame_snooping", "reads the caller's variables"),
    "f_globals": ("frame_snooping", "reads the caller's globals"),
    "tb_frame": ("frame_snooping", "reaches a frame through a traceback"),
    "gi_frame": ("frame_snooping", "reaches a generator's frame"),
    "cr_frame": ("frame_snooping", "reaches a coroutine's frame"),
    "f_code": ("frame_snooping", "reads a frame's code"),
    # What differs between a checked call and a timed one: the seed the inputs were drawn
    # with, a tensor's version counter (inputs are refilled in place), the call stack.
    **{
        name: ("phase_probe", "can tell checked calls from timed ones")
        for name in (
            "initial_seed",
            "get_rng_state",
            "_version",
            "extract_stack",
            "walk_stack",
            "format_stack",
            "print_stack",
            "currentframe",
        )
    },
    # Modes and global hooks run on every torch call or module, the reference's included.
    **{
        name: ("patching", "intercepts the reference's torch calls too")
        for name in (
            "TorchFunctionMode",
            "TorchDispatchMode",
            "BaseTorchFunctionMode",
            "register_module_forward_pre_hook",
            "register_module_forward_hook",
            "register_module_full_backward_hook",
            "register_module_full_backward_pre_hook",
            "register_module_backward_hook",
            "set_num_threads",
            "set_num_interop_threads",
        )
    },
    "_make_subclass": ("tensor_subclass", "builds a tensor subclass"),
    "__torch_function__": ("tensor_subclass", "overrides tensor operations"),
    "__torch_dispatch__": ("tensor_subclass", "overrides tensor operations"),
    "save": ("file_replay", "writes tensors to files"),
    "load": ("file_replay", "reads tensors from files"),
    "system": ("threads", "runs shell commands"),
    "fork": ("threads", "forks the process"),
    "popen": ("threads", "runs shell commands"),
}

# Calls that read files or list folders whatever they are called on (`Path.read_bytes`,
# `np.fromfile`, `torch.from_file`), and those of the os module.
FILE_READ_CALLS = {
    "read_bytes",
    "read_text",
    "iterdir",
    "fromfile",
    "from_file",
    "memmap",
    "loadtxt",
    "genfromtxt",
    "load_file",
    "safe_open",
}
OS_FILE_CALLS = {"read", "pread", "preadv", "readv", "fdopen", "listdir", "scandir", "walk"}


def candidate_kernels(source: str) -> list[str]:
    """The `__global__` kernel names a candidate file's embedded CUDA source defines."""
    return kernel_names(native_source(pyast.parse(source)))


def check_candidate(
    source: str,
    target: str = "cuda",
    scalar_inputs: Iterable[int] = (),
    scalar_init_inputs: Iterable[int] = (),
    passed: tuple[int | None, int | None] = (None, None),
) -> list[Finding]:
    """All findings for a candidate file's source (AST plus embedded native code).
    `scalar_inputs`: positions of the problem's inputs that are literals, not tensors
    (`Problem.scalar_inputs`): arithmetic on them in forward is not PyTorch compute;
    `scalar_init_inputs` the same for the constructor (sizes kept as `self.n = n`); `passed`:
    how many arguments forward and the constructor get (`Problem.input_counts`), so that a
    literal default the harness never overrides is a size too."""
    tree = _without_main_block(pyast.parse(source))
    literals = (tuple(scalar_inputs), tuple(scalar_init_inputs), passed)
    findings = _python_findings(tree, literals)
    native = native_source(tree)
    findings += native_findings(native)
    if target == "cuda" and not kernel_names(native):
        message = "defines no __global__ kernel: the work is done by PyTorch or a library"
        findings.append(Finding("no_custom_kernel", REJECT, message))
    unique: dict[tuple[str, str], Finding] = {}
    for finding in findings:
        unique.setdefault((finding.check, finding.message), finding)
    return list(unique.values())


def _without_main_block(tree: ast.Module) -> ast.Module:
    """The module without its `if __name__ == "__main__":` self-test, which never runs when the
    harness imports the candidate; kept where the module could rename itself to make it run."""

    benign = {  # setattr(self, ...) sets an attribute of the model, nothing else
        id(n.func)
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and _dotted(n.func) == "setattr"
        and n.args
        and isinstance(n.args[0], ast.Name)
        and n.args[0].id == "self"
    }

    def mentions_name(n: ast.AST) -> bool:
        if isinstance(n, ast.Name):
            risky = ("__name__", "globals", "vars", "exec", "eval", "setattr")
            return n.id in risky and id(n) not in benign
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

    def is_main(node: ast.stmt) -> bool:
        test = node.test if isinstance(node, ast.If) else None
        return (
            isinstance(test, ast.Compare)
            and isinstance(test.left, ast.Name)
            and test.left.id == "__name__"
            and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Eq)
            and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "__main__"
            and not node.orelse
        )

    guards = [n for n in tree.body if is_main(n)]
    guard_names = {id(n.test.left) for n in guards}  # type: ignore[attr-defined]
    # Any other mention of __name__ (an assignment, `from __main__ import __name__`, a match
    # capture, a string) or of globals/vars/exec/eval/setattr could make the block run.
    if not guards or any(mentions_name(n) and id(n) not in guard_names for n in ast.walk(tree)):
        return tree
    body = [n for n in tree.body if not is_main(n)]
    return ast.Module(body=body, type_ignores=[])


def native_source(tree: ast.Module) -> str:
    """The C++/CUDA text of a candidate: its string constants, comments removed. Prose (docstrings
    and other bare string statements) is left out where no code can read it back."""
    prose = set() if _docstrings_reachable(tree) else _prose_strings(tree)
    strings = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose
    ]
    return strip_comments("\n".join(strings))


def _prose_strings(tree: ast.Module) -> set[int]:
    """ids of the string constants that are whole statements: docstrings and bare strings."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }


# Ways code can get at a docstring's text (and so pass it to the compiler): `__doc__` by name or
# computed attribute names, namespaces, introspection and source readers.
_DOC_REACH = {
    "__doc__",
    "getdoc",
    "pydoc",
    "inspect",
    "help",
    "__dict__",
    "vars",
    "globals",
    "__getattribute__",
    "attrgetter",
    "getattr_static",
    "get_docstring",
    "getsource",
    "__file__",
    "__loader__",
    "__spec__",
    "__code__",
    "co_consts",
    "linecache",
}


def _docstrings_reachable(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in _DOC_REACH:
            return True
        if isinstance(node, ast.Attribute) and node.attr in _DOC_REACH:
            return True
        if isinstance(node, ast.alias) and (node.name.split(".")[-1] in _DOC_REACH):
            return True
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if any(word in node.value for word in ("__doc__", "getdoc", "co_consts")):
                return True
        if isinstance(node, ast.Call) and _dotted(node.func) == "getattr" and len(node.args) > 1:
            name = node.args[1]
            if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
                return True  # a computed name may spell `__doc__`
    return False


_ATTRIBUTE_GETTERS = {"getattr", "setattr", "delattr", "attrgetter", "methodcaller"}
_RAW_ATTRIBUTE_ACCESS = {"__getattribute__", "__setattr__", "__delattr__", "__getattr__"}


def _computed_attribute(node: ast.Call, name: str) -> str:
    """Why a call reads or sets an attribute whose name is computed ('' when it does not).

    A computed name gets past every rule on literal names (`"_get" + "frame"`, `"f_" + "back"`):
    frames, the harness's variables, and from there the kept outputs and the result pipe. Only
    the module's own attributes (`getattr(self, f"conv{i}")`) may be looked up that way."""
    short = name.rpartition(".")[2]
    if short in ("attrgetter", "methodcaller"):
        if any(not _literal_str(a) for a in node.args):
            return f"`{name}()` with a computed name reads attributes nobody can read here"
        return ""
    if short not in ("getattr", "setattr", "delattr", "hasattr") or len(node.args) < 2:
        return ""
    if name != short or _literal_str(node.args[1]):
        return ""
    owner = _dotted(node.args[0])
    if owner == "self" or owner.split(".")[0] in ("torch", "F", "nn"):
        return ""  # the module's own attributes; torch's are `torch_compute`'s to judge
    return f"`{name}()` with a computed name reads attributes nobody can read here"


def _registers_torch_ops(node: ast.Call, name: str) -> bool:
    """`torch.library.Library("aten", "IMPL")`, `torch.library.impl("aten::mul.Tensor", ...)`:
    a library call naming one of PyTorch's own namespaces, or one it cannot read."""
    short = name.rpartition(".")[2]
    args = [a.value if _literal_str(a) else None for a in node.args[:2]]
    if len(args) == 2 and args[1] in ("IMPL", "FRAGMENT", "DEF") and args[0] != "":
        if args[0] is None or re.fullmatch(r"aten|prims?|_", args[0]):  # `L("aten", "IMPL")`
            return True
    if not (name.startswith(("torch.library.", "library.")) or short == "Library"):
        return False
    if not node.args:
        return False
    first = node.args[0]
    if not _literal_str(first):
        return short in ("Library", "impl", "register_kernel", "register_fake")
    return bool(re.match(r"(?:aten|prims?|_)(?:::|$)", first.value))


def _none(value: ast.AST | None) -> bool:
    return isinstance(value, ast.Constant) and value.value is None


def _own_op_namespace(node: ast.AST, declared: set[str]) -> bool:
    """`torch.ops.<ns>` for a namespace the candidate declares itself (not aten, prims, ...)."""
    parts = _dotted(node).split(".")
    return len(parts) == 3 and parts[:2] == ["torch", "ops"] and _own_space(parts[2], declared)


def _own_space(space: str, declared: set[str]) -> bool:
    return space in declared and space not in _TORCH_OP_SPACES


def _op_space(name: str) -> str | None:
    """`torch.ops.<ns>.<op>...` -> ns; None for any other name."""
    parts = name.split(".")
    return parts[2] if len(parts) > 3 and parts[:2] == ["torch", "ops"] else None


def declared_namespaces(tree: ast.Module, native: set[str]) -> set[str]:
    """Op namespaces the candidate declares: `TORCH_LIBRARY(ns, m)` in its native code, and in
    Python `torch.library.custom_op("ns::f")`, `Library("ns", "DEF")`, `define("ns::f(...)")`
    (whose Python bodies `_registered_functions` adds to the code checked). Any other
    `torch.ops.<ns>` is PyTorch's own (mkldnn, quantized_decomposed, ...)."""
    found = set(native)  # `native`: native_namespaces(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and _literal_str(node.args[0]):
            short = _dotted(node.func).rpartition(".")[2]
            if short in ("custom_op", "triton_op", "define"):
                found.add(node.args[0].value.partition("::")[0])  # type: ignore[union-attr]
            elif short == "Library":
                found.add(node.args[0].value)  # type: ignore[union-attr]
    return found


def native_namespaces(tree: ast.Module) -> set[str]:
    """Op namespaces the candidate's native code defines (`TORCH_LIBRARY(ns, m)`)."""
    return set(re.findall(r"\bTORCH_LIBRARY\s*\(\s*(\w+)", native_source(tree)))


# Decorators and calls that make a Python function the body of a registered op
_OP_REGISTRARS = {"custom_op", "triton_op", "impl", "register_kernel", "register_fake",
                  "register_autograd", "register_torch_dispatch", "register_vmap"}  # fmt: skip


def _registered_functions(tree: ast.Module) -> list[ast.FunctionDef]:
    """Module functions that run as a registered op's body: decorated by a registrar
    (`@torch.library.custom_op(...)`, `@f.register_kernel("cpu")`) or handed to one
    (`lib.impl("f", fn, "CPU")`); `torch.ops.ns.f(x)` runs them."""
    functions = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}

    def registrar(node: ast.AST) -> bool:
        call = node.func if isinstance(node, ast.Call) else node
        return _dotted(call).rpartition(".")[2] in _OP_REGISTRARS

    found = [f for f in functions.values() if any(registrar(d) for d in f.decorator_list)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and registrar(node):
            handed = [*node.args, *(k.value for k in node.keywords)]
            names = [a.id for a in handed if isinstance(a, ast.Name)]
            found += [functions[name] for name in names if name in functions]
    return found


_TORCH_OP_SPACES = {"aten", "prims", "prim", "quantized", "_C", "higher_order", "_quantized"}


def _literal_str(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _protected_aliases(tree: ast.Module, protected: set[str]) -> set[str]:
    """Names bound to a protected module or one of its objects: `T = torch.Tensor`, `from torch
    import Tensor as T`, `(T := torch)`; rebinding `T.__mul__` then patches torch itself."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in protected:
                found |= {a.asname or a.name for a in node.names}
            continue
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.NamedExpr) and node.value is not None:
            if _dotted(node.value).split(".")[0] in protected:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                found |= {t.id for t in targets if isinstance(t, ast.Name)}
    return found


_dotted = pyast.dotted


def _python_findings(
    tree: ast.Module, literals: Literals = ((), (), (None, None))
) -> list[Finding]:
    found: list[Finding] = []

    def add(check: str, message: str, node: ast.AST, severity: str = REJECT) -> None:
        found.append(Finding(check, severity, message, getattr(node, "lineno", None)))

    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    sys_names = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name == "sys"
    }
    # `import torch as T` makes T as protected as torch, and `import os as platform` an os
    aliases = {
        alias.asname: alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.asname
    }
    protected = PROTECTED_ROOTS | {a for a, m in aliases.items() if m in PROTECTED_ROOTS}
    protected |= _protected_aliases(tree, protected)
    os_names = {"os", "posix"} | {a for a, m in aliases.items() if m in ("os", "posix")}
    native = native_namespaces(tree)  # reads the native source once for every rule below
    declared = declared_namespaces(tree, native)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "suppress":
            add("try_fallback", "contextlib.suppress can fall back when the kernel fails", node)
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
            problem = _env_read(node, parents)
            if problem:
                add("env_access", problem, node)
        if isinstance(node, ast.Attribute) and node.attr in STREAM_ATTRIBUTES:
            message = f"`{_dotted(node)}` uses another CUDA stream; work off the timed stream is "
            add("streams", message + "caught by the host-time cross-check", node, WARN)
        if isinstance(node, ast.Import):
            for alias in node.names:
                _import_rule(alias.name, node, add)
        elif isinstance(node, ast.ImportFrom) and node.module:
            _import_rule(node.module, node, add)
            imported = {a.name for a in node.names}
            if node.module in ("os", "posix") and any(n in OS_PROCESS_FUNCTIONS for n in imported):
                add("threads", "imports process-starting functions from os", node)
            if node.module == "contextlib" and "suppress" in imported:
                add("try_fallback", "contextlib.suppress can fall back when the kernel fails", node)
            if node.module == "sys" and imported & {"modules", "argv"}:
                add("harness_access", "imports `sys.modules`/`sys.argv` (the harness)", node)
            if node.module == "os" and imported & {"environ", "getenv", "environb"}:
                add("env_access", "imports the process environment from os", node)
        elif isinstance(node, ast.Try | ast.TryStar) and not _harmless_try(node):
            add("try_fallback", "try/except can fall back to PyTorch when the kernel fails", node)
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
            for target in targets:
                root = _dotted(target).split(".")[0]
                if isinstance(target, ast.Attribute) and root in protected:
                    add("patching", f"rebinds `{_dotted(target)}`", node)
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in ("torch.compile", "torch.jit.script", "torch.jit.trace"):
                add("torch_compute", f"`{name}()` compiles PyTorch code instead of a kernel", node)
            if name == "getattr" and len(node.args) >= 2:
                owner, attr = _dotted(node.args[0]).split(".")[0], node.args[1]
                literal = isinstance(attr, ast.Constant) and isinstance(attr.value, str)
                own_ops = _own_op_namespace(node.args[0], declared)
                if owner in ("torch", "F", "nn") and not own_ops:
                    if not literal or attr.value in TORCH_COMPUTE:
                        add("torch_compute", "looks up a PyTorch function dynamically", node)
            file_use = _file_access(node, name, os_names)
            if file_use:
                add("file_replay", f"`{name}()` {file_use}", node)
            if _registers_torch_ops(node, name):  # the reference would run that kernel
                add("patching", f"`{name}()` registers a kernel for PyTorch's own operators", node)
            computed = _computed_attribute(node, name)
            if computed:
                add("frame_snooping", computed, node)
            if name in ("getattr", "setattr", "hasattr") and len(node.args) >= 2:
                attr = node.args[1]
                if isinstance(attr, ast.Constant) and attr.value in FORBIDDEN_ATTRIBUTES:
                    check, why = FORBIDDEN_ATTRIBUTES[attr.value]
                    if check in ("phase_probe", "patching", "frame_snooping"):
                        add(check, f"`{name}(..., {attr.value!r})` {why}", node)
            on_self = name == "setattr" and node.args and _dotted(node.args[0]) == "self"
            if name in FORBIDDEN_CALLS and not on_self:  # setattr(self, ...) builds parameters
                check, why = FORBIDDEN_CALLS[name]
                add(check, f"`{name}()` {why}", node)
        elif isinstance(node, ast.Attribute) and _sys_reach(node, sys_names):
            # the reference's module and the worker's own functions; the result pipe's number
            add("harness_access", f"`{_dotted(node)}` reaches into the evaluation harness", node)
        elif (
            isinstance(node, ast.Name)
            and node.id in _ATTRIBUTE_GETTERS
            and not (isinstance(parents.get(node), ast.Call) and parents[node].func is node)
        ):  # `reduce(getattr, names, obj)`, `g = getattr`: names nobody can read here
            add("frame_snooping", f"`{node.id}` passed around reads attributes by name", node)
        elif isinstance(node, ast.Attribute) and node.attr in _RAW_ATTRIBUTE_ACCESS:
            add("frame_snooping", f"`{_dotted(node)}` reads or sets attributes by name", node)
        elif isinstance(node, ast.Name) and node.id == "__builtins__":
            add("patching", "`__builtins__` reaches builtins (exec, eval) by computed names", node)
        elif isinstance(node, ast.Attribute) and node.attr == "__dict__":
            if _dotted(node.value).split(".")[0] in protected:  # torch.__dict__["sum"] = slow
                add(
                    "patching",
                    f"`{_dotted(node)}` reaches module attributes by computed names",
                    node,
                )
        elif isinstance(node, ast.alias) and node.name in FORBIDDEN_ATTRIBUTES:
            check, why = FORBIDDEN_ATTRIBUTES[node.name]
            if check in ("phase_probe", "patching", "frame_snooping"):
                add(check, f"imports `{node.name}`, which {why}", node)
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
            check, why = FORBIDDEN_ATTRIBUTES[node.attr]
            if node.attr in ("save", "load") and _dotted(node.value) not in (
                "torch",
                "np",
                "numpy",
            ):
                continue
            if node.attr == "system" and _dotted(node.value) not in os_names:
                continue  # `platform.system()` names the OS
            add(check, f"`{_dotted(node)}` {why}", node)
        elif isinstance(node, ast.ClassDef):
            for base in node.bases:
                base_name = _dotted(base)
                if base_name.split(".")[-1] == "Tensor":
                    add("tensor_subclass", f"class {node.name} subclasses torch.Tensor", node)
                if node.name == "ModelNew" and base_name.split(".")[-1] == "Model":
                    add("inherits_reference", "ModelNew inherits the reference Model", node)
    for node in ast.walk(tree):  # the op namespaces by another name: `from torch import ops`
        if isinstance(node, ast.ImportFrom) and node.module in ("torch", "torch._ops"):
            for alias in node.names:
                if alias.name in ("ops", "_ops"):
                    message = (
                        f"names `torch.{alias.name}` by another name, which hides the ops it calls"
                    )
                    add("torch_compute", message, node)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in ("torch.ops", "torch._ops") and alias.asname:
                    add("torch_compute", f"names `{alias.name}` as `{alias.asname}`", node)
    model_new = _model_new_class(tree)
    if isinstance(model_new, str):
        message = f"{model_new}, which these checks cannot follow; define `class ModelNew`"
        add("torch_compute", message, tree)
    elif model_new is not None:
        extensions = _extension_names(tree, native)
        reached = _with_tensor_params(tree, model_new, literals)
        compute = _torch_compute_findings(
            model_new,
            reached,
            extensions,
            _operator_names(tree),
            _torch_function_names(tree),
            _layer_test(tree),
            _other_modules(tree),
            tree,
            declared,
        )
        if compute and _calls_extension(reached, extensions, native):
            # A kernel does part of the work and PyTorch the rest: allowed, labelled for the judge.
            compute = [
                Finding(
                    "torch_compute_partial",
                    WARN,
                    f"part of the work is PyTorch: {f.message}",
                    f.line,
                )
                for f in compute
            ]
        found += compute
        found += _host_compute_findings(reached, _numpy_names(tree))
    return found


def _harmless_try(node: ast.Try | ast.TryStar) -> bool:
    """A try that cannot fall back to PyTorch: every handler re-raises (a clearer build error)
    and its `finally` (cleanup) cannot swallow the error, or `try: import x` whose handlers only
    pass or set a constant (an optional dependency; importing something else instead would be a
    fallback)."""

    def harmless(statement: ast.stmt) -> bool:
        if isinstance(statement, ast.Pass):
            return True
        return (
            isinstance(statement, ast.Assign)
            and isinstance(statement.value, ast.Constant)
            and all(isinstance(t, ast.Name) for t in statement.targets)
        )

    def reraises(handler: ast.ExceptHandler) -> bool:
        """Only `raise`, after at most printing or logging: the error propagates."""
        *before, last = handler.body
        printed = all(
            isinstance(s, ast.Expr)
            and isinstance(s.value, ast.Call)
            and (
                _dotted(s.value.func) == "print"
                or _dotted(s.value.func).split(".")[0] in ("log", "logger", "logging", "LOG")
            )
            for s in before
        )
        return isinstance(last, ast.Raise) and printed

    def cleanup_only(body: list[ast.stmt]) -> bool:
        """A `finally` that cannot swallow the error: no return, break or continue in it."""
        escapes = (ast.Return, ast.Break, ast.Continue)
        return not any(isinstance(n, escapes) for s in body for n in ast.walk(s))

    if all(reraises(h) for h in node.handlers) and cleanup_only(node.finalbody):
        return True  # (a try has handlers or a finally, or it would not parse)
    return (
        all(isinstance(s, ast.Import | ast.ImportFrom) for s in node.body)
        and not node.orelse
        and not node.finalbody
        and all(harmless(s) for handler in node.handlers for s in handler.body)
    )


# What describes a tensor's size rather than its values.
SIZE_ATTRIBUTES = {"shape", "size", "dim", "ndim", "numel", "stride", "dtype", "device"}
SIZE_ATTRIBUTES |= {"nelement", "element_size", "itemsize", "layout", "is_cuda", "get_device"}


def _numpy_names(tree: ast.Module) -> set[str]:
    """How the module names numpy (`np`, `numpy`) and the functions it imported from it."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.asname or a.name for a in node.names if a.name.split(".")[0] == "numpy"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "numpy":
            names |= {a.asname or a.name for a in node.names}
    return names


def _host_compute_findings(reached: list[Reached], numpy_names: set[str]) -> list[Finding]:
    """Tensors handed to numpy in the code ModelNew runs: the work is done on the host by numpy,
    not by the candidate's kernel (on a GPU the output-device and host-time checks catch it too,
    on the CPU nothing else would)."""
    findings = []
    for method, tensors, _ in reached:
        # numpy on sizes (`np.prod(x.shape)`) is fine; numpy on an input tensor is not
        sizes = {
            id(n.value)
            for n in ast.walk(method)
            if isinstance(n, ast.Attribute) and n.attr in SIZE_ATTRIBUTES
        }

        def holds_tensor(
            arg: ast.AST, tensors: set[str] = tensors, sizes: set[int] = sizes
        ) -> bool:
            return any(
                isinstance(n, ast.Name) and n.id in tensors and id(n) not in sizes
                for n in ast.walk(arg)
            )

        for node in ast.walk(method):
            if isinstance(node, ast.Attribute) and node.attr in ("numpy", "__array__"):
                message = f"hands a tensor to numpy (`{_dotted(node)}`) in {method.name}"
            elif isinstance(node, ast.Call) and _dotted(node.func).split(".")[0] in numpy_names:
                name = _dotted(node.func)
                if not any(
                    holds_tensor(a) for a in [*node.args, *(k.value for k in node.keywords)]
                ):
                    continue  # `np.float32(slope)`, `np.prod(x.shape)`: not computing on a tensor
                message = f"computes with numpy (`{name}()`) in {method.name}"
            else:
                continue
            findings.append(Finding("host_compute", REJECT, message, node.lineno))
    return findings


SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)
STREAM_ATTRIBUTES = {"Stream", "wait_stream", "record_stream", "set_stream", "ExternalStream"}


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
        literal = isinstance(mode, ast.Constant) and isinstance(mode.value, str)
        if literal and set(mode.value) <= set("wxabt") and set(mode.value) & set("wxa"):
            return None
        return "opens a file to read"
    if last in FILE_READ_CALLS:
        return "reads files"
    if head in os_names and last in OS_FILE_CALLS:
        return "reads files or lists folders"
    return None


def _sys_reach(node: ast.Attribute, sys_names: set[str]) -> bool:
    """`sys.modules` (the reference's module, the worker's own functions) or `sys.argv` (the
    result pipe's number), under whatever name `sys` was imported as."""
    owner = node.value
    named = isinstance(owner, ast.Name) and owner.id in (sys_names | {"sys"})
    return named and node.attr in ("modules", "argv")


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


def _import_rule(module: str, node: ast.AST, add) -> None:
    root = module.split(".")[0]
    if root in FORBIDDEN_IMPORTS:
        check, why = FORBIDDEN_IMPORTS[root]
        add(check, f"imports `{module}`, which {why}", node)


def _held_by_model_new(tree: ast.Module, names: set[str], counts: dict[str, int]) -> set[str]:
    """`class ModelNew: _ops = load_inline(...)`, called as `self._ops.fn(x)`: `self._ops` for
    an extension bound once, in ModelNew's own body, where nothing could put anything else
    there: no attribute of that name stored anywhere (`ModelNew._ops = torch`, `setattr`), no
    decorator, metaclass or foreign base on ModelNew, and no `__dict__`, `vars`, three-argument
    `type` or dunder method (`__getattribute__`, `__init_subclass__`) in the module."""
    cls = _model_new_class(tree)
    if not isinstance(cls, ast.ClassDef) or cls.decorator_list or cls.keywords:
        return set()
    own = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    if any(_dotted(b) not in own | {"nn.Module", "torch.nn.Module", "Module"} for b in cls.bases):
        return set()
    stored = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store | ast.Del):
            stored.add(node.attr)
        if isinstance(node, ast.Attribute) and _dunder(node.attr) not in ("", *_PLAIN_DUNDERS):
            return set()
        if isinstance(node, ast.FunctionDef) and _dunder(node.name) not in ("", "__init__"):
            return set()
        if isinstance(node, ast.Name) and node.id == "vars":
            return set()
        if isinstance(node, ast.Call):
            short = _dotted(node.func).rpartition(".")[2]
            if short == "type" and len(node.args) == 3:
                return set()
            if short in ("setattr", "delattr", "__setattr__", "__delattr__"):
                named = len(node.args) > 1 and _literal_str(node.args[1])
                stored.add(node.args[1].value if named else "*")  # type: ignore[union-attr]
    held = set()
    for statement in cls.body:
        if isinstance(statement, ast.Assign | ast.AnnAssign):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for t in targets:
                if isinstance(t, ast.Name) and t.id in names and counts.get(t.id) == 1:
                    held.add(t.id)
    return set() if "*" in stored else {f"self.{n}" for n in held - stored}


# Dunder attributes that only read what a module or class is called
_PLAIN_DUNDERS = ("__init__", "__name__", "__file__", "__doc__", "__version__", "__qualname__")


def _dunder(name: str) -> str:
    return name if name.startswith("__") and name.endswith("__") else ""


def _extension_names(tree: ast.Module, native: set[str]) -> set[str]:
    """Names bound to built extensions and to their functions: `_ext = load_inline(...)` (also
    annotated, or through `load_inline as build`), the result of a module function that returns
    one (`_get_ext()`), and aliases (`self._ops = _ext`, `self.relu = _ext.relu`). A name bound
    to anything else anywhere, or whose attributes are assigned, is not trusted: calls through
    these names are not counted as PyTorch compute."""
    own = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    builders: set[str] = set()
    # the module by its full name, `import torch.utils.cpp_extension as ce`, `from torch.utils
    # import cpp_extension`
    modules = {"torch.utils.cpp_extension"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "torch.utils.cpp_extension":
            builders |= {
                a.asname or a.name for a in node.names if a.name in ("load_inline", "load")
            }
        elif isinstance(node, ast.ImportFrom) and node.module == "torch.utils":
            modules |= {a.asname or a.name for a in node.names if a.name == "cpp_extension"}
        elif isinstance(node, ast.Import):
            modules |= {
                a.asname for a in node.names if a.name == "torch.utils.cpp_extension" and a.asname
            }
    rebound = {  # a name bound to anything but the import is not the module
        t.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign | ast.NamedExpr)
        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(t, ast.Name)
    }
    builders |= {f"{m}.{fn}" for m in modules - rebound - own for fn in ("load_inline", "load")}
    builders -= own  # a module's own `def load()` is not torch's
    # bound by its import only: not a lambda, a nested def or a parameter of that name too
    counts, imported = module_names(tree)
    builders = {
        b for b in builders if counts.get(b.split(".")[0]) == 1 or b.split(".")[0] in imported
    }

    def builds(value: ast.AST | None) -> bool:
        if value is not None and _own_op_namespace(value, native):
            return True  # `_ops = torch.ops.my_ext`: the candidate's registered ops
        if not isinstance(value, ast.Call):
            return False
        return _dotted(value.func) in builders

    def bindings() -> list[tuple[list[ast.AST], ast.AST | None]]:
        found: list[tuple[list[ast.AST], ast.AST | None]] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                found.append((node.targets, node.value))
            elif isinstance(node, ast.AnnAssign | ast.AugAssign):
                found.append(([node.target], node.value))
            elif isinstance(node, ast.For | ast.AsyncFor | ast.With | ast.AsyncWith):
                targets = (
                    [node.target]
                    if isinstance(node, ast.For | ast.AsyncFor)
                    else [i.optional_vars for i in node.items if i.optional_vars]
                )
                found.append((targets, None))
            elif isinstance(node, ast.NamedExpr):
                found.append(([node.target], node.value))
        return found

    binds = bindings()
    built = {_dotted(t) for targets, value in binds if builds(value) for t in targets}
    # `_EXT = None` then `_EXT = load_inline(...)` (a lazy getter's global) is fine; any other
    # value bound to the name is not
    built -= {_dotted(t) for targets, value in binds if not builds(value) and not _none(value)
              for t in targets}  # fmt: skip
    for node in tree.body:  # a function whose every return is a built extension
        if isinstance(node, ast.FunctionDef) and node.name not in builders:
            returns = [n.value for n in ast.walk(node) if isinstance(n, ast.Return)]
            if returns and all(
                v is not None and (builds(v) or _dotted(v) in built) for v in returns
            ):
                builders.add(node.name)
    names = {_dotted(t) for targets, value in binds if builds(value) for t in targets}
    for _ in range(len(binds) + 2):  # settles within that many rounds; a bound for safety
        source_ok = {
            id(value)
            for _, value in binds
            if value is not None
            and (
                builds(value)
                or _dotted(value) in names
                or _dotted(value).rpartition(".")[0] in names
                or (isinstance(value, ast.Attribute) and builds(value.value))  # `load(...).fn`
            )
        }
        grown = names | {
            _dotted(t)
            for targets, value in binds
            if value is not None and id(value) in source_ok
            for t in targets
        }
        untrusted = {
            _dotted(t)
            for targets, value in binds
            if value is None or (id(value) not in source_ok and not _none(value))
            for t in targets
        }
        # `_ext.relu = torch.relu`: an extension whose attributes are assigned is not trusted
        untrusted |= {
            _dotted(t).rpartition(".")[0]
            for targets, _ in binds
            for t in targets
            if isinstance(t, ast.Attribute) and _dotted(t).rpartition(".")[0] in grown
        }
        trusted = grown - untrusted
        if trusted == names:
            break
        names = trusted
    # A name bound any other way too (an import, `match`, `except ... as`, a def, a parameter,
    # unpacking: `_EXT, y = torch, 1`) may hold anything; `global _EXT` binds nothing itself.
    direct = Counter(t.id for targets, _ in binds for t in targets if isinstance(t, ast.Name))
    globals_ = Counter(
        name
        for node in ast.walk(tree)
        if isinstance(node, ast.Global | ast.Nonlocal)
        for name in node.names
    )
    names = {n for n in names if "." in n or counts.get(n, 0) == direct[n] + globals_[n]}
    names |= _held_by_model_new(tree, names, counts)
    # `_get_ext().fn(x)`: a call through the module's own getter of the extension
    getters = {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and node.name in builders
        and counts.get(node.name) == 1  # no second def, loop or import of the name
        and _plain_getter(node, names, builds)
    }
    return names | {f"{g}()" for g in getters}


def _plain_getter(function: ast.FunctionDef, names: set[str], builds) -> bool:
    """A getter of the extension that nothing can bend: no parameters, no decorators, and every
    return is a build or a module name trusted as the extension that it does not bind itself
    (a lazy global it declares `global` may be bound)."""
    a = function.args
    if function.decorator_list or a.args or a.posonlyargs or a.kwonlyargs or a.vararg or a.kwarg:
        return False
    declared = {
        n for node in ast.walk(function) if isinstance(node, ast.Global) for n in node.names
    }
    bound = {
        n.id
        for n in ast.walk(function)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store | ast.Del)
    }
    bound |= {
        (alias.asname or alias.name).split(".")[0]
        for node in ast.walk(function)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    returns = [n.value for n in ast.walk(function) if isinstance(n, ast.Return)]
    for value in returns:
        if value is None:
            return False
        if builds(value):
            continue
        name = _dotted(value)
        if name not in names or (name in bound and name not in declared):
            return False
    return bool(returns)


def _through_extension(call: ast.Call, extensions: set[str]) -> bool:
    """Whether a call goes to the candidate's compiled code: `_ext.fn(...)`, `fn(...)` bound
    to it, or `_get_ext().fn(...)` through its getter."""
    name = _dotted(call.func)
    if name in extensions or name.rpartition(".")[0] in extensions:
        return True
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Call):
        getter = func.value
        return not getter.args and f"{_dotted(getter.func)}()" in extensions
    return False


def _model_new_class(tree: ast.Module) -> ast.ClassDef | None | str:
    """The class the module exposes as ModelNew: its last top-level binding, `class ModelNew`
    or another of its classes bound to the name (`ModelNew = Fast`); a string saying what it
    is bound to where that is something else (the checks would look at the wrong class)."""
    classes: dict[str, ast.ClassDef] = {}
    bound: dict[str, ast.AST] = {}
    for node in pyast.module_statements(tree.body):
        if isinstance(node, ast.ClassDef):
            classes[node.name] = bound[node.name] = node
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            bound[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in ast.walk(target):
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


def _with_tensor_params(tree: ast.Module, cls: ast.ClassDef, literals: Literals) -> list[Reached]:
    """The code ModelNew runs, each function with the parameters that may hold tensors
    (scalars.py: all but those proven to be sizes or the problem's literal inputs)."""
    reached = _reachable_code(tree, cls)
    prover = Prover(tree)
    tensor = prover.tensor_params(cls, reached, *literals)
    return [
        Reached(function, tensor[id(function)], prover.proven_names(function, tensor))
        for function in reached
    ]


def _reachable_code(tree: ast.Module, cls: ast.ClassDef) -> list[ast.FunctionDef]:
    """ModelNew's methods other than __init__, and the module's own functions and classes
    that ModelNew reaches by name, so that a helper doing the work with PyTorch is found too
    (not the backward of an autograd.Function; a helper's __init__ where the code that runs
    per call makes one)."""
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    reached: list[ast.FunctionDef] = []
    seen: set[str] = {cls.name}
    # and the Python bodies of ops it registers, which `torch.ops.ns.f(x)` runs
    pending: list[ast.AST] = [cls, *_registered_functions(tree)]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.ClassDef):
            for base in node.bases:  # `super()._m(t)`, an inherited forward
                own = classes.get(_dotted(base))
                if own is not None and own.name not in seen:
                    seen.add(own.name)
                    pending.append(own)
            autograd = any(_dotted(b).split(".")[-1] == "Function" for b in node.bases)
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
        for inner in ast.walk(node):
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
            for call in ast.walk(function):
                made = isinstance(call, ast.Call) and classes.get(_dotted(call.func))
                if made and made is not cls:
                    for method in made.body:
                        if isinstance(method, ast.FunctionDef) and method.name == "__init__":
                            if all(method is not r for r in reached):
                                reached.append(method)
                                grown = True
    return reached


def _calls_extension(reached: list[Reached], extensions: set[str], native: set[str]) -> bool:
    """Whether the code ModelNew runs calls one of the candidate's compiled functions."""
    for scope, _, _ in reached:
        for node in ast.walk(scope):
            if isinstance(node, ast.Call):
                if _through_extension(node, extensions):
                    return True
                if _op_space(_dotted(node.func)) in native:  # its own native op, registered by name
                    return True
    return False


def _other_modules(tree: ast.Module) -> set[str]:
    """Names bound only by importing a plain standard module (`import math as m`, `re`)."""
    modules = module_names(tree)[1]
    changed = {  # `s.t = x` puts a tensor in the module: `s.t.mul(w)` would compute
        _dotted(node).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store | ast.Del)
    }
    return {
        name
        for name, module in modules.items()
        if module.split(".")[0] in PLAIN_MODULES and name not in changed
    }


# Standard modules whose functions never compute with a tensor's values (scipy, say, would).
PLAIN_MODULES = {
    "math",
    "cmath",
    "re",
    "string",
    "functools",
    "itertools",
    "collections",
    "dataclasses",
    "typing",
    "os",
    "sys",
    "time",
    "warnings",
    "logging",
    "textwrap",
    "hashlib",
    "pathlib",
}


def _torch_function_names(tree: ast.Module) -> set[str]:
    """Compute functions imported from torch by name (`from torch.nn.functional import relu as
    kernel`): a call through them is PyTorch doing the work."""
    return {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "torch"
        for alias in node.names
        if alias.name.rstrip("_") in TORCH_COMPUTE
    }


def _operator_names(tree: ast.Module) -> set[str]:
    """How the module can call the `operator` module's arithmetic: `add` after `from operator
    import add`, `operator.mul` or `op.mul` after `import operator as op`."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "operator":
            names |= {a.asname or a.name for a in node.names if a.name in OPERATOR_ARITHMETIC}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "operator":
                    module = alias.asname or alias.name
                    names |= {f"{module}.{fn}" for fn in OPERATOR_ARITHMETIC}
    return names


def _add_aliases(
    function: ast.FunctionDef, is_operand: Callable[[str], bool], operands: set[str]
) -> None:
    """Names that merely rename a tensor (`inp = x`, `a, b = x, self.w`) are tensors too."""
    changed = True
    while changed:
        changed = False
        for node in ast.walk(function):
            if not isinstance(node, ast.Assign):
                continue
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
                    if is_operand(_dotted(value)) or _view_of_operand(value, is_operand):
                        operands.add(target.id)
                        changed = True


# A tensor's methods that give no tensor: sizes, flags (`is_contiguous`), host values.
NOT_VIEWS = SIZE_ATTRIBUTES | SIZE_FIELDS | SIZE_METHODS | {"numpy", "storage_offset", "nbytes"}


def _view_of_operand(value: ast.AST, is_operand: Callable[[str], bool]) -> bool:
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
            if is_operand(_dotted(node)):
                return True
            node = node.value
        elif isinstance(node, ast.List | ast.Tuple | ast.Set | ast.Dict):  # `[x][0]`, `{0: x}[0]`
            items = node.values if isinstance(node, ast.Dict) else node.elts
            items = [i.value if isinstance(i, ast.Starred) else i for i in items]
            return any(_view_of_operand(item, is_operand) for item in items)
        else:
            return isinstance(node, ast.Name) and is_operand(node.id)


def _layer_test(tree: ast.Module) -> Callable[[str], bool]:
    """Whether a called class is an nn layer that computes: any `nn.X` but the containers, a
    known layer by name, or the module's own class only where it extends one (its own code is
    checked where ModelNew reaches it)."""
    nn_names = {"nn", "torch.nn"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            nn_names |= {a.asname for a in node.names if a.name == "torch.nn" and a.asname}
        elif isinstance(node, ast.ImportFrom) and node.module == "torch":
            nn_names |= {a.asname or a.name for a in node.names if a.name == "nn"}
    own = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}

    def is_layer(called: str, depth: int = 0) -> bool:
        head, _, last = called.rpartition(".")
        if not head and last in own:
            bases = own[last].bases
            return depth < 8 and any(is_layer(_dotted(b), depth + 1) for b in bases)
        if head in nn_names:
            return last[:1].isupper() and last not in NN_NOT_COMPUTE
        return last.endswith(TORCH_LAYER_SUFFIXES)

    return is_layer


# Settings of torch's layers: numbers, not tensors (`self.conv.groups`).
LAYER_SETTINGS = {
    "in_features",
    "out_features",
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "groups",
    "output_padding",
    "padding_mode",
    "eps",
    "momentum",
    "num_features",
    "normalized_shape",
    "elementwise_affine",
    "affine",
    "track_running_stats",
    "embed_dim",
    "num_heads",
    "head_dim",
    "num_embeddings",
    "embedding_dim",
    "negative_slope",
    "inplace",
    "p",
    "dim",
    "approximate",
    "ceil_mode",
    "count_include_pad",
    "return_indices",
    "batch_first",
    "num_groups",  # GroupNorm
    "num_channels",
    "scale_factor",  # Upsample
    "size",
    "mode",
    "align_corners",
    "upscale_factor",  # PixelShuffle
    "downscale_factor",
    "input_size",  # RNN, LSTM, GRU
    "hidden_size",
    "num_layers",
    "bidirectional",
    "proj_size",
    "nonlinearity",
    "beta",  # Softplus
    "threshold",
    "lambd",  # Hardshrink, Softshrink
    "min_val",  # Hardtanh
    "max_val",
    "alpha",  # ELU, CELU
    "output_size",  # adaptive pooling
    "start_dim",  # Flatten
    "end_dim",
}


def _containers(function: ast.FunctionDef, tree: ast.Module) -> set[str]:
    """Names bound only to list, set or dict displays: locals of `function` (`opts = [...]`)
    and attributes stored anywhere in the module (`self._seen = set()`)."""
    values: dict[str, list[ast.AST]] = {}
    for scope, kinds in ((function, (ast.Name,)), (tree, (ast.Attribute,))):
        plain: set[int] = set()  # targets of `name = value`, read with their value
        for node in ast.walk(scope):
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, kinds):
                        values.setdefault(_dotted(target), []).append(node.value)
                        plain.add(id(target))
        for node in ast.walk(scope):
            stored = isinstance(node, kinds) and isinstance(node.ctx, ast.Store | ast.Del)
            if stored and id(node) not in plain:  # a loop variable, `with as`, unpacking
                values.setdefault(_dotted(node), []).append(node)
    for node in ast.walk(tree):  # bound some other way anywhere: not surely a container
        other: list[str] = []
        if isinstance(node, ast.Global | ast.Nonlocal):
            other = list(node.names)
        elif isinstance(node, ast.MatchAs | ast.MatchStar | ast.ExceptHandler) and node.name:
            other = [node.name]
        elif isinstance(node, ast.MatchMapping) and node.rest:
            other = [node.rest]
        elif isinstance(node, ast.Call) and _dotted(node.func).split(".")[-1] in (
            "setattr",
            "register_buffer",
            "register_parameter",
            "add_module",
            "register_module",
        ):
            return set()  # attributes set by name: none is known
        for name in other:
            values.setdefault(name, []).append(node)

    def display(value: ast.AST) -> bool:
        shown = (ast.List, ast.Set, ast.Dict, ast.ListComp, ast.SetComp, ast.DictComp)
        if isinstance(value, ast.Call) and not value.args and not value.keywords:
            return _dotted(value.func) in ("list", "set", "dict")
        return isinstance(value, shown)

    return {name for name, bound in values.items() if bound and all(display(v) for v in bound)}


# Builtins that do arithmetic through a tensor's own operators when handed tensors.
ARITHMETIC_BUILTINS = {"sum", "max", "min", "abs", "pow", "round", "divmod", "reduce"}


def _torch_compute_findings(
    cls: ast.ClassDef,
    reached: list[Reached],
    extensions: set[str],
    operator_names: set[str] | None = None,
    torch_names: set[str] | None = None,
    is_layer: Callable[[str], bool] | None = None,
    not_tensors: set[str] | None = None,
    tree: ast.Module | None = None,
    declared: set[str] = frozenset(),  # type: ignore[assignment]
) -> list[Finding]:
    """PyTorch compute in the code ModelNew runs, not in __init__ (where layers may be built).
    `not_tensors`: names that hold other things (modules other than torch, containers)."""
    is_layer = is_layer or (lambda called: called.endswith(TORCH_LAYER_SUFFIXES))
    layers: set[str] = set()
    tensors: set[str] = set()  # parameters and buffers: arithmetic on them is PyTorch compute
    for node in ast.walk(cls):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            dotted = _dotted(node.value.func)
            called = dotted.split(".")[-1]
            if is_layer(dotted):
                layers |= {_dotted(t) for t in node.targets}
            if called == "Parameter":
                tensors |= {_dotted(t) for t in node.targets}
        if isinstance(node, ast.Call) and _dotted(node.func).endswith("register_buffer"):
            if node.args and isinstance(node.args[0], ast.Constant):
                tensors.add(f"self.{node.args[0].value}")
    findings = []

    def add(message: str, node: ast.AST) -> None:
        findings.append(Finding("torch_compute", REJECT, message, getattr(node, "lineno", None)))

    stored = {  # `self.conv.groups = self.w` makes that setting a tensor
        node.attr
        for node in ast.walk(tree or cls)
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store | ast.Del)
    }
    settings = LAYER_SETTINGS - stored
    whole = tree or cls
    callees = {id(n.func) for n in ast.walk(whole) if isinstance(n, ast.Call)}
    inner = {id(n.value) for n in ast.walk(whole) if isinstance(n, ast.Attribute)}
    for node in ast.walk(whole):  # anywhere in the file: it may be called from anywhere
        if isinstance(node, ast.Attribute) and id(node) not in callees | inner:
            parts = _dotted(node).split(".")
            if parts[:2] == ["torch", "ops"] and not (
                len(parts) > 2 and _own_space(parts[2], declared)
            ):  # `op = torch.ops.mkldnn._linear_pointwise`, `o = torch.ops`: PyTorch's ops
                add(f"passes PyTorch's own ops `{_dotted(node)}` to be called", node)
                continue
        if isinstance(node, ast.Attribute) and id(node) not in callees:
            passed_name = _dotted(node)
            root, last_part = passed_name.split(".")[0], passed_name.rpartition(".")[2]
            space = _op_space(passed_name)
            own_op = space is not None and _own_space(space, declared)
            if root in ("torch", "F", "nn") and last_part in TORCH_COMPUTE and not own_op:
                # `reduce(torch.mul, ...)`, `partial(torch.Tensor.mul, x)`, `W = torch.mul`
                add(f"passes the PyTorch function `{passed_name}` to be called", node)
    for method, args, scalars in reached:
        # not tensors: sizes, other modules (`import math as m`), lists, sets and dicts
        plain = {"math", "np", "numpy", *scalars, *(not_tensors or set())}
        plain |= _containers(method, tree or ast.Module(body=[], type_ignores=[]))
        # Arithmetic counts on tensors only: inputs and parameters, not sizes.
        operands = args | tensors

        def _is_tensor_operand(name: str, operands: set[str] = operands) -> bool:
            # inputs, parameters, and the weights of nn layers (`self.linear.weight`), not their
            # settings (`self.conv.groups`)
            return name in operands or any(
                name.startswith(f"{layer}.")
                and name[len(layer) + 1 :].split(".")[0] not in settings
                for layer in layers
            )

        _add_aliases(method, _is_tensor_operand, operands)

        for node in ast.walk(method):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
                add("uses `@` (PyTorch matmul)", node)
            elif isinstance(node, ast.BinOp | ast.UnaryOp | ast.AugAssign):
                if isinstance(node, ast.BinOp):
                    sides = [node.left, node.right]
                elif isinstance(node, ast.AugAssign):  # `y += self.b`
                    sides = [node.target, node.value]
                else:
                    sides = [node.operand]
                hit = next(
                    (
                        ast.unparse(s)[:40]
                        for s in sides
                        if _is_tensor_operand(_dotted(s)) or _view_of_operand(s, _is_tensor_operand)
                    ),
                    None,
                )
                if hit:
                    add(f"computes with PyTorch arithmetic on `{hit}`", node)
            if not isinstance(node, ast.Call):
                continue
            name = _dotted(node.func)
            head, _, last = name.rpartition(".")
            if isinstance(node.func, ast.Attribute) and name == node.func.attr:
                # a method of an unnamed value: `_get().mul(x, w)`, `(x + 0).sum()`
                if last in TORCH_COMPUTE and not _through_extension(node, extensions):
                    add(f"computes with a PyTorch tensor method: `.{last}()`", node)
                    continue
            if re.fullmatch(r"__[a-z]+__", last) and _is_tensor_operand(head):
                add(f"computes with PyTorch arithmetic: `{name}()`", node)  # x.__mul__(w)
                continue
            if name in (torch_names or set()):
                add(f"computes with PyTorch: `{name}()`, imported from torch by name", node)
                continue
            if (
                name in (operator_names or set()) or name in ARITHMETIC_BUILTINS or (head == "math")
            ):  # `operator.mul(x, w)`, `sum([x, w])`, `math.prod((x, w))`: tensor arithmetic
                given = [*node.args, *(k.value for k in node.keywords)]
                given += [e for a in given if isinstance(a, ast.Tuple | ast.List) for e in a.elts]
                hit = next((_dotted(a) for a in given if _is_tensor_operand(_dotted(a))), None)
                if hit:
                    add(f"computes with `{name}()` (PyTorch arithmetic) on `{hit}`", node)
                continue
            aten = head.startswith(("torch.ops.aten", "torch.ops.prims", "torch._C", "torch._ops"))
            if _through_extension(node, extensions):
                continue  # the candidate's own compiled functions
            space = _op_space(name)
            if space is not None and _own_space(space, declared):
                continue  # its own registered ops (a Python body among the code checked)
            if space is not None:
                add(f"computes with PyTorch's own op `{name}()`", node)
                continue
            if aten:
                add(f"computes with ATen directly: `{name}()`", node)
                continue
            last = last.rstrip("_") if last.endswith("_") and not last.startswith("_") else last
            if head.split(".")[0] in ("torch", "F", "nn"):
                if last in TORCH_COMPUTE:
                    add(f"computes with PyTorch: `{name}()`", node)
            elif name in layers or head in layers:  # `self.act(x)`, `self.act.forward(x)`
                add(f"calls the PyTorch layer `{name}` in {method.name}", node)
            elif head and {head, head.split(".")[0]}.isdisjoint(plain) and last in TORCH_COMPUTE:
                add(f"computes with a PyTorch tensor method: `{name}()`", node)
    return findings
