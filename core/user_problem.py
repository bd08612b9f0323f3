"""Turn what the user names on `kernelwright optimize PROBLEM` into a KernelBench problem file.

`resolve_problem` accepts an existing `.py` problem file, the name of a shipped suite problem, or
`path/to/module.py:ClassName` plus an input description, and returns a file `load_problem` accepts.
Guarantees:

- user code is only parsed (AST) here, never imported or run; it runs later, in workers;
- a wrapper for `module.py:ClassName` inlines the module's source verbatim, so the reference is
  self-contained, readable by the coder and its content hash follows every edit of the module;
- the wrapper depends only on its arguments and the files' contents (no timestamps), so two
  identical calls write byte-identical files with the same content hash;
- every user mistake raises `BadInput` with one line that says what to fix.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import json
import math
import os
import re
import tempfile
from importlib.resources import files
from pathlib import Path
from typing import Any

from kernelwright import paths, pyast
from kernelwright.errors import BadInput
from kernelwright.runner.confine import allow_reading

DTYPES = ("float32", "float16", "bfloat16", "float64", "int32", "int64", "bool")
INPUTS_EXAMPLE = '--inputs "float32[8192,4096] int64[16]"'
_TENSOR = re.compile(r"(?:(?P<dtype>[a-z0-9]+))?\[(?P<dims>\d+(?:,\d+)*)?\]")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def resolve_problem(
    spec: str,
    *,
    inputs: str | None = None,
    get_inputs: str | None = None,
    init_args: str | None = None,
) -> Path:
    """Path to a KernelBench-format problem file for `spec` (see the module docstring)."""
    if ":" in spec:
        return _wrap_module(spec, inputs, get_inputs, init_args)
    if any(flag is not None for flag in (inputs, get_inputs, init_args)):
        raise BadInput(
            "--inputs, --get-inputs and --init-args only go with PROBLEM as module.py:ClassName"
        )
    path = Path(spec).expanduser()
    if path.exists():  # a file in cwd wins over a shipped problem of the same name
        if not path.is_file() or path.suffix != ".py":
            raise BadInput(f"problem {spec} is not a .py file; name a problem file")
        return path.resolve()
    shipped = files("kernelwright.suite") / "problems" / (spec.removesuffix(".py") + ".py")
    if "/" not in spec and shipped.is_file():
        return Path(str(shipped)).resolve()
    if "/" in spec or spec.endswith(".py"):
        raise BadInput(f"problem file not found: {spec}")
    names = sorted(
        p.name.removesuffix(".py")
        for p in (files("kernelwright.suite") / "problems").iterdir()
        if p.name.endswith(".py") and not p.name.startswith("_")
    )
    close = difflib.get_close_matches(spec, names, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    raise BadInput(
        f"no problem file or shipped problem named {spec}; {hint}`kernelwright suite` lists the "
        "shipped problems"
    )


def _split_ref(ref: str, flag: str, what: str) -> tuple[Path, str, str, ast.Module]:
    """`file.py:name` -> (resolved file, name, source, AST), checked without importing it."""
    file, _, name = ref.rpartition(":")
    if not file or not name.isidentifier():
        raise BadInput(f"{flag} {ref!r} is malformed; write path/to/file.py:{what}")
    path = Path(file).expanduser()
    if path.suffix != ".py":
        raise BadInput(f"{flag} {ref!r}: {file} is not a .py file")
    if not path.is_file():
        raise BadInput(f"{flag} {ref!r}: file not found: {file}")
    try:
        source = path.read_text(encoding="utf-8")
        tree = pyast.parse(source, filename=str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read {file}: {exc}") from exc
    except SyntaxError as exc:
        raise BadInput(f"{file} has a syntax error at line {exc.lineno}: {exc.msg}") from exc
    return path.resolve(), name, source, tree


def _defines(tree: ast.Module, name: str, kinds: tuple[type, ...]) -> bool:
    return any(isinstance(node, kinds) and node.name == name for node in tree.body)


def _wrap_module(
    spec: str, inputs: str | None, get_inputs: str | None, init_args: str | None
) -> Path:
    module, cls, source, tree = _split_ref(spec, "PROBLEM", "ClassName")
    if not _defines(tree, cls, (ast.ClassDef,)):
        raise BadInput(f"{module} defines no top-level class {cls}")
    if any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree)):
        # The module runs as a plain file, outside its package: a relative import cannot resolve.
        raise BadInput(f"{module} uses relative imports; use absolute ones to optimize {cls}")
    if (inputs is None) == (get_inputs is None):
        raise BadInput(
            f"{spec} needs exactly one of --inputs (e.g. {INPUTS_EXAMPLE}) or "
            "--get-inputs file.py:function"
        )
    # `from __future__` imports must stay first: the preamble goes right after the last one.
    futures = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == "__future__"]
    cut = max((n.end_lineno or 0 for n in futures), default=0)
    lines = source.splitlines(keepends=True)
    head, body = "".join(lines[:cut]), "".join(lines[cut:])
    allow_reading(module.parent)  # its sibling imports, wherever the sandbox would hide them
    preamble = (
        f"# Generated by kernelwright from {module}:{cls}; rewritten on every run, do not edit.\n"
        "import sys\n\n"
        f"if {str(module.parent)!r} not in sys.path:  # the module's sibling imports\n"
        f"    sys.path.insert(0, {str(module.parent)!r})\n"
        f"# ---- {module.name}, verbatim ----\n"
    )
    if head and not head.endswith("\n"):
        head += "\n"
    if not body.endswith("\n"):
        body += "\n"
    # Model is looked up by name; a user class already called Model is subclassed via an alias.
    base = "_KwUserModel" if cls == "Model" else cls
    alias = "_KwUserModel = Model\n\n" if cls == "Model" else ""
    tail = (
        f"# ---- end of {module.name} ----\n\n"
        f"{alias}\nclass Model({base}):\n    pass\n\n\n"
        f"{_inputs_code(module, inputs, get_inputs)}\n\n"
        f"def get_init_inputs():\n    return {_init_args(init_args)!r}\n"
    )
    text = head + preamble + body + tail
    out_dir = paths.home() / "problems"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{module.stem}_{cls}.py"
    if not target.is_file() or target.read_text(encoding="utf-8") != text:
        # Temp file + os.replace: a concurrent reader never sees a half-written problem.
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{target.stem}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o644)  # mkstemp makes it 0600; a problem file is ordinary data
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return target


def _inputs_code(module: Path, inputs: str | None, get_inputs: str | None) -> str:
    if inputs is not None:
        items = ", ".join(_input_entry(entry) for entry in _entries(inputs))
        return f"import torch\n\n\ndef get_inputs():\n    return [{items}]\n"
    assert get_inputs is not None
    path, func, _, tree = _split_ref(get_inputs, "--get-inputs", "function")
    if not _defines(tree, func, (ast.FunctionDef,)):
        raise BadInput(f"--get-inputs: {path} defines no top-level function {func}")
    if path == module:
        return f"get_inputs = {func}\n"
    # Loaded by absolute path when the problem runs; its sha256 is a string (not a comment) so
    # the problem's content hash changes when that file does.
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    allow_reading(path.parent)
    return (
        f"_KW_INPUTS_SHA256 = {digest!r}\n\n\n"
        "def _kw_load_get_inputs():\n"
        "    import importlib.util\n\n"
        f"    if {str(path.parent)!r} not in sys.path:\n"
        f"        sys.path.insert(0, {str(path.parent)!r})\n"
        f"    spec = importlib.util.spec_from_file_location('kw_user_inputs', {str(path)!r})\n"
        "    module = importlib.util.module_from_spec(spec)\n"
        "    spec.loader.exec_module(module)\n"
        f"    return module.{func}\n\n\n"
        "get_inputs = _kw_load_get_inputs()\n"
    )


def _entries(inputs: str) -> list[str]:
    # Spaces inside brackets ("[8, 16]") are layout, not separators.
    squeezed = re.sub(r"\[[^\]]*\]", lambda m: re.sub(r"\s+", "", m.group()), inputs)
    entries = [e for e in re.split(r"[;\s]+", squeezed) if e]
    if not entries:
        raise BadInput(
            f"--inputs is empty; describe each forward() argument, e.g. {INPUTS_EXAMPLE}"
        )
    return entries


def _input_entry(entry: str) -> str:
    """Python expression for one `--inputs` entry: a tensor `DTYPE[d0,...]` or a number."""
    if _NUMBER.fullmatch(entry):
        return repr(int(entry)) if re.fullmatch(r"[+-]?\d+", entry) else repr(float(entry))
    match = _TENSOR.fullmatch(entry)
    dtype = (match.group("dtype") or "float32") if match else None
    if match is None or dtype not in DTYPES:
        raise BadInput(
            f"--inputs entry {entry!r} is not DTYPE[d0,d1,...] or a number (DTYPE one of "
            f"{', '.join(DTYPES)}); e.g. {INPUTS_EXAMPLE}"
        )
    dims = (match.group("dims") or "").replace(",", ", ")
    shape = f"({dims},)" if dims and "," not in dims else f"({dims})"
    if dtype.startswith(("float", "bfloat")):
        return f"torch.randn({shape}, dtype=torch.{dtype})"
    high = 2 if dtype == "bool" else 16  # small ints: safe as indices into most dimensions
    return f"torch.randint(0, {high}, {shape}, dtype=torch.{dtype})"


def _init_args(raw: str | None) -> list[Any]:
    if raw is None:
        return []
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadInput(
            f"--init-args is not valid JSON ({exc.msg}); e.g. --init-args '[768, 3]'"
        ) from exc
    if not isinstance(value, list) or not _literal(value):
        raise BadInput(
            "--init-args must be a JSON list of numbers, strings, bools and lists, e.g. '[768, 3]'"
        )
    return value


def _literal(value: Any) -> bool:
    """Whether repr(value) is a Python literal (JSON's NaN/Infinity and objects are not)."""
    if isinstance(value, list):
        return all(_literal(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (bool, int, str))
