"""Problems and candidates in KernelBench's format, checked without running them.

A problem is a Python file with `class Model(nn.Module)`, `get_inputs()` and `get_init_inputs()`.
It may declare `EXTRA_SHAPES`: a list of dicts, each overriding module-level globals (the sizes
that `get_inputs`/`get_init_inputs` read) to give another shape to verify against.

A candidate is a Python file with `class ModelNew` whose `__init__` and `forward` take the same
positional arguments as the problem's `Model` (the harness passes them positionally; names may
differ).

This module only parses files (AST); it never executes them, so the orchestrator runs no user or
candidate code. Executing them (and failures such as `get_inputs()` raising) happens in workers.
Every failure here raises `BadInput` with one line that names the file and the fix.
"""

from __future__ import annotations

import ast
import hashlib
import io
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernelwright import pyast
from kernelwright.errors import BadInput


@dataclass(frozen=True)
class Problem:
    name: str
    path: Path
    source: str
    content_hash: str
    level: int | None
    extra_shapes: list[dict[str, Any]] | None  # None: not a literal; the worker reads it
    # positions of get_inputs() that are literals (`-1`, a module constant): never tensors
    scalar_inputs: tuple[int, ...] = ()
    scalar_init_inputs: tuple[int, ...] = ()  # the same for get_init_inputs()
    # how many items get_inputs()/get_init_inputs() return, where the file spells it out
    input_counts: tuple[int | None, int | None] = (None, None)


@dataclass(frozen=True)
class Candidate:
    path: Path
    source: str
    source_hash: str


def content_hash(source: str) -> str:
    """sha256 of the token stream without comments, blank lines or layout whitespace.

    Two files that differ only in comments, spacing or indentation width hash the same; any change
    to code, names, numbers or strings (docstrings included) changes the hash.
    """
    parts: list[str] = []
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    try:
        for tok in tokens:
            if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER):
                continue
            if tok.type == tokenize.NEWLINE:
                parts.append("\n")
            elif tok.type == tokenize.INDENT:
                parts.append("<indent>")
            elif tok.type == tokenize.DEDENT:
                parts.append("<dedent>")
            else:
                parts.append(tok.string)
    except (tokenize.TokenError, SyntaxError) as exc:
        raise BadInput(f"cannot tokenize: {exc}") from exc
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _read(path: Path, what: str) -> str:
    if not path.exists():
        raise BadInput(f"{what} file not found: {path}")
    if not path.is_file():
        raise BadInput(f"{what} path is not a file: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read {what} file {path}: {exc}") from exc


def _parse(source: str, path: Path, what: str) -> ast.Module:
    try:
        return pyast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise BadInput(
            f"{what} {path} has a syntax error at line {exc.lineno}: {exc.msg}; fix the file"
        ) from exc


def _top_level(tree: ast.Module) -> dict[str, ast.AST]:
    """Names bound at module level (defs, classes, assignments, imports) to their last binding."""
    names: dict[str, ast.AST] = {}
    for node in pyast.module_statements(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        names[name.id] = node
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names[(alias.asname or alias.name).split(".")[0]] = node
    return names


def _method(cls: ast.ClassDef, method: str) -> ast.FunctionDef | None:
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == method:
            return node
    return None


def _method_params(node: ast.FunctionDef) -> list[str]:
    """Parameter names after `self`, as the signature spells them."""
    args = node.args
    names = [a.arg for a in args.posonlyargs + args.args][1:]
    if args.vararg:
        names.append("*" + args.vararg.arg)
    names += [a.arg for a in args.kwonlyargs]
    if args.kwarg:
        names.append("**" + args.kwarg.arg)
    return names


def _positional_counts(node: ast.FunctionDef) -> tuple[int, float]:
    """How many positional arguments after `self` a call may pass: (fewest, most); a required
    keyword-only parameter makes every positional call fail."""
    args = node.args
    positional = len(args.posonlyargs + args.args) - 1
    fewest = positional - len(args.defaults)
    if any(default is None for default in args.kw_defaults):
        return (fewest, -1)
    return (fewest, float("inf") if args.vararg else positional)


def _accepts_calls_of(
    candidate: ast.FunctionDef, reference: ast.FunctionDef, passed: int | None
) -> bool:
    """The harness passes `get_init_inputs()` and `get_inputs()` positionally, so a candidate's
    method fits when it takes as many positional arguments as those lists hold (`passed`, where
    the file spells them out), else every count the reference's takes; the names may differ."""
    got_fewest, got_most = _positional_counts(candidate)
    if passed is not None:
        return got_fewest <= passed <= got_most
    want_fewest, want_most = _positional_counts(reference)
    return got_fewest <= want_fewest and got_most >= want_most


def _returned_count(function: ast.AST | None) -> int | None:
    """How many items `get_inputs()`/`get_init_inputs()` returns, where every return is a list
    or tuple written out (no `*rest`); None where that cannot be read off the file."""
    if not isinstance(function, ast.FunctionDef):
        return None
    counts = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Return):
            value = node.value
            if isinstance(value, ast.Name):  # `init = [...]; return init`
                value = _only_binding(function, value.id)
            if not isinstance(value, ast.List | ast.Tuple):
                return None
            if any(isinstance(item, ast.Starred) for item in value.elts):
                return None
            counts.add(len(value.elts))
    return counts.pop() if len(counts) == 1 else None


def _only_binding(function: ast.FunctionDef, name: str) -> ast.AST | None:
    """The value of a name a function binds once (`init = [...]`) and never changes in place
    (no `init.append(...)`, `init += ...`, `init[0] = ...`); None otherwise."""
    assigned: list[ast.AST] = []
    targets: set[int] = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == name:
                    assigned.append(node.value)
                    targets.add(id(target))
    for node in ast.walk(function):
        stored = isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del)
        if stored and node.id == name and id(node) not in targets:
            return None  # bound again by a loop, `with`, unpacking, `+=`
        if isinstance(node, ast.Attribute | ast.Subscript) and _dotted_root(node) == name:
            if isinstance(node, ast.Attribute) or isinstance(node.ctx, ast.Store | ast.Del):
                return None  # `init.append(x)`, `init[0] = x`
    return assigned[0] if len(assigned) == 1 else None


def _dotted_root(node: ast.AST) -> str:
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    return node.id if isinstance(node, ast.Name) else ""


def level_of(path: Path) -> int | None:
    """The N of a `levelN/` folder a problem file sits in (KernelBench layout), else None."""
    match = re.fullmatch(r"level(\d+)", path.parent.name)
    return int(match.group(1)) if match else None


def load_problem(path: Path | str) -> Problem:
    """Read and statically check a problem file."""
    path = Path(path).expanduser().resolve()
    source = _read(path, "problem")
    tree = _parse(source, path, "problem")
    names = _top_level(tree)
    if not isinstance(names.get("Model"), ast.ClassDef):
        raise BadInput(f"problem {path} defines no class Model; a problem needs Model(nn.Module)")
    for func in ("get_inputs", "get_init_inputs"):
        if func not in names:
            raise BadInput(f"problem {path} defines no {func}(); add it (KernelBench format)")
    extra = _extra_shapes(names, path)
    return Problem(
        name=path.stem,
        path=path,
        source=source,
        content_hash=content_hash(source),
        level=level_of(path),
        extra_shapes=extra,
        scalar_inputs=_scalar_inputs(tree, names, extra is None, "get_inputs"),
        scalar_init_inputs=_scalar_inputs(tree, names, extra is None, "get_init_inputs"),
        input_counts=(
            _returned_count(names.get("get_inputs")),
            _returned_count(names.get("get_init_inputs")),
        ),
    )


# Builtins that turn numbers into numbers (a problem's `int(input_size * 2)`).
NUMBER_BUILTINS = {"int", "float", "round", "abs", "min", "max"}


def _displayed(function: ast.FunctionDef, value: ast.AST | None) -> ast.List | ast.Tuple | None:
    """The list or tuple display `value` is: itself, or the one display a returned name was
    bound to (`inputs = [x, -1]; return inputs`) where the function uses the name nowhere else
    (handed to a helper, its items could change)."""
    if isinstance(value, ast.Name):
        uses = [n for n in ast.walk(function) if isinstance(n, ast.Name) and n.id == value.id]
        value = _only_binding(function, value.id) if len(uses) == 2 else None
    return value if isinstance(value, ast.List | ast.Tuple) else None


def _scalar_inputs(
    tree: ast.Module, names: dict[str, ast.AST], overridable: bool, maker: str
) -> tuple[int, ...]:
    """Positions of the list `maker()` (get_inputs, get_init_inputs) returns that hold
    literals: `-1`, `(0, 1)`, or a name bound only to literals (in it or at module level).
    Anything else may be a tensor. `overridable`: EXTRA_SHAPES is computed, so module names
    may be rebound to anything."""
    function = names.get(maker)
    if not isinstance(function, ast.FunctionDef):
        return ()
    returns = [n for n in ast.walk(function) if isinstance(n, ast.Return)]
    returned = _displayed(function, returns[0].value) if len(returns) == 1 else None
    if returned is None:
        return ()
    items = returned.elts
    if any(isinstance(item, ast.Starred) for item in items):
        return ()  # positions unknown

    if any(
        (isinstance(n, ast.Name) and n.id in ("globals", "vars", "setattr", "exec", "eval"))
        or (isinstance(n, ast.Attribute) and n.attr in ("__dict__", "modules", "__globals__"))
        for n in ast.walk(tree)
    ):
        return ()  # module names reached by computed strings: none is surely a literal

    def bindings(scope: list[ast.AST]) -> dict[str, list[ast.AST | None]]:
        """name -> the values bound to it (None: a binding whose value is not read here)."""
        bound: dict[str, list[ast.AST | None]] = {}
        for node in scope:
            names: list[str] = []
            value: ast.AST | None = None
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
                names = [node.id]  # its value, where plain, is added below
            elif isinstance(node, ast.arg):
                names = [node.arg]  # `def get_inputs(S=torch.ones(4))`
            elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar):
                names = [node.name] if node.name else []
            elif isinstance(node, ast.MatchMapping):
                names = [node.rest] if node.rest else []
            elif isinstance(node, ast.Global | ast.Nonlocal):
                names = list(node.names)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names = [(a.asname or a.name).split(".")[0] for a in node.names]
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names = [node.name]
            for name in names:
                bound.setdefault(name, []).append(value)
        for node in scope:  # plain `n = 4`, `n: int = 4`, `(n := 4)`: the value is read
            plain = isinstance(node, ast.Assign | ast.AnnAssign | ast.NamedExpr)
            targets = getattr(node, "targets", None) or [getattr(node, "target", None)]
            if plain and node.value is not None:
                for target in targets:
                    if isinstance(target, ast.Name):
                        values = bound[target.id]
                        values[values.index(None)] = node.value
        return bound

    local = bindings(pyast.scope_nodes([function.args, *function.body]))
    module = bindings(pyast.scope_nodes(list(tree.body)))
    for node in ast.walk(tree):  # `global dim` in any function may rebind it
        if isinstance(node, ast.Global):
            for name in node.names:
                module.setdefault(name, []).append(None)

    def literal(node: ast.AST | None, depth: int = 0) -> bool:
        if node is None or depth > 16:
            return False
        if isinstance(node, ast.Name):
            values = local.get(node.id)
            if values is None:
                values = None if overridable else module.get(node.id)
            return bool(values) and all(literal(v, depth + 1) for v in values or [])
        if isinstance(node, ast.UnaryOp):
            return literal(node.operand, depth + 1)
        if isinstance(node, ast.BinOp):
            return literal(node.left, depth + 1) and literal(node.right, depth + 1)
        if isinstance(node, ast.Tuple | ast.List):
            return all(literal(e, depth + 1) for e in node.elts)
        if isinstance(node, ast.Call) and not node.keywords:  # `1.0 / math.sqrt(head_dim)`
            func = node.func
            builtin = isinstance(func, ast.Name) and func.id in NUMBER_BUILTINS
            maths = (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id == "math"
                and module.get("math") == [None]  # `import math`, nothing else
            )
            unbound = not builtin or func.id not in module
            return (builtin or maths) and unbound and all(literal(a, depth + 1) for a in node.args)
        return isinstance(node, ast.Constant)

    return tuple(i for i, item in enumerate(items) if literal(item))


def _extra_shapes(names: dict[str, ast.AST], path: Path) -> list[dict[str, Any]] | None:
    node = names.get("EXTRA_SHAPES")
    if node is None:
        return []
    if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
        return None
    try:
        value = ast.literal_eval(node.value)
    except ValueError:
        return None  # computed at import time; the worker validates it
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise BadInput(f"problem {path}: EXTRA_SHAPES must be a list of dicts of global overrides")
    for variant in value:
        unknown = [k for k in variant if k not in names]
        if unknown:
            raise BadInput(
                f"problem {path}: EXTRA_SHAPES names {', '.join(map(str, unknown))}, "
                "which the file does not define at module level"
            )
    return value


def load_candidate(path: Path | str, problem: Problem) -> Candidate:
    """Read a candidate file and check that its ModelNew matches the problem's Model."""
    path = Path(path).expanduser().resolve()
    source = _read(path, "candidate")
    tree = _parse(source, path, "candidate")
    model_new = _top_level(tree).get("ModelNew")
    if model_new is None:
        raise BadInput(
            f"candidate {path} defines no ModelNew; the candidate class must be ModelNew"
        )
    names = _top_level(pyast.parse(problem.source))
    model = names["Model"]
    if isinstance(model_new, ast.ClassDef) and isinstance(model, ast.ClassDef):
        for method, inputs in (("__init__", "get_init_inputs"), ("forward", "get_inputs")):
            want, got = _method(model, method), _method(model_new, method)
            passed = _returned_count(names.get(inputs))
            if want is not None and got is not None and not _accepts_calls_of(got, want, passed):
                takes = (
                    f"the {passed} positional argument(s) {inputs}() returns"
                    if passed is not None
                    else "the same positional arguments"
                )
                raise BadInput(
                    f"candidate {path}: ModelNew.{method}({', '.join(_method_params(got))}) "
                    f"does not match Model.{method}({', '.join(_method_params(want))}) of "
                    f"{problem.path.name}; it must take {takes} (names may differ)"
                )
    return Candidate(
        path=path, source=source, source_hash=hashlib.sha256(source.encode()).hexdigest()
    )


def load_problem_dir(root: Path | str) -> list[Problem]:
    """All problems under a folder, KernelBench's `level1/ level2/ ...` layout included.

    Files that are not problems (no `Model`, helpers, `__init__.py`) are skipped; problems are
    ordered by level, then by their leading number, then by name.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise BadInput(f"problem folder not found: {root}")
    problems = []
    for path in root.rglob("*.py"):
        if path.name.startswith(("_", ".")):
            continue
        try:
            problems.append(load_problem(path))
        except BadInput:
            continue
    return sorted(problems, key=_order)


def _order(problem: Problem) -> tuple[int, int, str]:
    match = re.match(r"(\d+)", problem.name)
    return (problem.level or 0, int(match.group(1)) if match else 1 << 30, problem.name)
