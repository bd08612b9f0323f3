"""Turn a recorded candidate into a standalone drop-in file.

The file imports in a fresh interpreter without building anything, exposes `ModelNew` with the
reference's constructor and `forward`, builds its extensions the first time one is used, and if
the build fails raises `RuntimeError` carrying the compiler's log. It never falls back to PyTorch.

How: every module-level `load_inline(...)` / `load(...)` call of the candidate is wrapped, in the
source text itself (comments and layout kept), into `_kw_lazy(lambda: <call>)`:
- `NAME = load_inline(...)` (a Python module): built on first attribute access of NAME.
- a bare `load_inline(..., is_python_module=False)` (the fast layout, whose `TORCH_LIBRARY` ops
  are called as `torch.ops.NS.fn`): `torch.ops.NS` stands in until first use, then every deferred
  build runs and the real namespace takes over. Any access to a namespace the file registers
  builds everything deferred, so no op is ever missing.
Where the namespaces cannot be read for sure from the file's strings (a name made at run time,
`TORCH_LIBRARY_IMPL`) nothing is deferred: such a file builds at import, as the candidate did.

The file's docstring says where it came from and what was measured: the speedup over PyTorch
eager (the median of the timing rounds' ratios of the reference's time to the candidate's), the
spread of those ratios as p20-p80 (kernelwright.spread), and, where that range holds 1.0, that
the figure is within noise. The device and torch version it was measured on follow.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from kernelwright import pyast, spread

PRELUDE = '''
_kw_deferred = []  # every deferred build, in source order


class _KwLazyExtension:
    """Builds the extension on first use; raises with the build log on failure."""

    def __init__(self, build):
        self._kw_build = build
        self._kw_built = False
        self._kw_module = None
        _kw_deferred.append(self)

    def _kw_load(self):
        if not self._kw_built:
            try:
                self._kw_module = self._kw_build()
            except Exception as exc:
                raise RuntimeError(f"building the kernel extension failed:\\n{exc}") from exc
            self._kw_built = True
        return self._kw_module

    def __getattr__(self, name):
        if name.startswith("_kw_"):
            raise AttributeError(name)
        return getattr(self._kw_load(), name)


class _KwLazyOps:
    """Stands in for torch.ops.NAMESPACE: on first use builds every deferred extension (one of
    them registers the namespace), then hands over to the real namespace."""

    def __init__(self, namespace):
        self._kw_namespace = namespace

    def __getattr__(self, name):
        if name.startswith("_kw_"):
            raise AttributeError(name)
        import torch

        # Out of the way before building: registering the ops may look the namespace up.
        for namespace in _kw_op_namespaces:
            if isinstance(vars(torch.ops).get(namespace), _KwLazyOps):
                delattr(torch.ops, namespace)
        try:
            for extension in _kw_deferred:
                extension._kw_load()
        except BaseException:
            _kw_lazy_ops(_kw_op_namespaces)  # not built: the next use tries again
            raise
        return getattr(getattr(torch.ops, self._kw_namespace), name)


_kw_op_namespaces = ()


def _kw_lazy(build):
    return _KwLazyExtension(build)


def _kw_lazy_ops(namespaces):
    import torch

    global _kw_op_namespaces
    _kw_op_namespaces = namespaces
    for namespace in namespaces:
        setattr(torch.ops, namespace, _KwLazyOps(namespace))


'''

_MACRO = re.compile(r"\bTORCH_LIBRARY\w*")
_REGISTERS = re.compile(r"\bTORCH_LIBRARY(?:_FRAGMENT)?\s*\(\s*([A-Za-z_]\w*)\s*,")


def _is_build_call(node: ast.AST | None) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in ("load_inline", "load")


def _python_module(call: ast.Call) -> bool | None:
    """The call's `is_python_module` (default True); None where it is not a constant."""
    for keyword in call.keywords:
        if keyword.arg == "is_python_module":
            value = keyword.value
            return value.value if isinstance(value, ast.Constant) else None
    return None if any(k.arg is None for k in call.keywords) else True  # **kwargs: unknown


def op_namespaces(tree: ast.Module) -> tuple[str, ...] | None:
    """The torch op namespaces the file's strings register with TORCH_LIBRARY; None when a use
    of the macros cannot be read (a name made at run time, TORCH_LIBRARY_IMPL, ...)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = _REGISTERS.findall(node.value)
            if len(names) != len(_MACRO.findall(node.value)):
                return None
            found.update(names)
    return tuple(sorted(found))


def make_lazy(source: str) -> tuple[str, tuple[str, ...]]:
    """The candidate source with module-level extension builds deferred to first use, and the
    op namespaces whose first use must run them (see the module docstring)."""
    tree = pyast.parse(source)
    namespaces = op_namespaces(tree)
    if namespaces is None:
        return source, ()
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))

    def pos(lineno: int, col: int) -> int:
        # ast columns count UTF-8 bytes; string offsets count characters
        return offsets[lineno - 1] + len(lines[lineno - 1].encode()[:col].decode(errors="ignore"))

    edits: list[tuple[int, int, str]] = []
    for node in tree.body:
        call = node.value if isinstance(node, ast.Assign | ast.AnnAssign | ast.Expr) else None
        if not _is_build_call(call) or call.end_lineno is None or call.end_col_offset is None:
            continue
        assert isinstance(call, ast.Call)
        kind, bound = _python_module(call), not isinstance(node, ast.Expr)
        # A bound Python module builds when NAME is first used, a bare op library when one of the
        # file's op namespaces is. A bound op library is left: NAME expects the path it returns.
        if (bound and kind is True) or (not bound and kind is False and namespaces):
            start = pos(call.lineno, call.col_offset)
            end = pos(call.end_lineno, call.end_col_offset)
            edits.append((start, end, f"_kw_lazy(lambda: {source[start:end]})"))
    for start, end, text in sorted(edits, reverse=True):
        source = source[:start] + text + source[end:]
    return source, namespaces if edits else ()


def render(candidate: dict[str, Any]) -> str:
    """The exported file for a candidate record (as returned by `store.repo.get_candidate`)."""
    evaluation = candidate.get("evaluation") or {}
    env = evaluation.get("environment") or {}
    speedup = evaluation.get("speedup")
    low, high = evaluation.get("speedup_p20"), evaluation.get("speedup_p80")
    rounds = len((evaluation.get("timing") or {}).get("round_ratios") or [])
    if speedup:
        measured = f"Measured: {speedup:.3f}x over PyTorch eager"
        if rounds:
            measured += f"\n(the median of {rounds} timing rounds' ratios"
            measured += f"; p20-p80 {low:.3f}-{high:.3f}" if low is not None else ""
            measured += ")"
    else:
        measured = "Measured: correct"
    noise = ""
    if spread.within_noise(low, high):
        noise = (
            "\nWithin noise: some timing rounds found it no faster than PyTorch (its p20-p80\n"
            "holds 1.0), so this figure alone does not show that it is faster."
        )
    about = (
        f"Exported by kernelwright: candidate {candidate['id']} of run {candidate['run_id']}.\n\n"
        f"Drop-in replacement for `Model` of {candidate['problem']['name']} "
        f"(problem hash {candidate['problem']['content_hash'][:12]}): `ModelNew` takes the same\n"
        "constructor arguments and forward inputs. Its extension builds on first use; a failed\n"
        "build raises RuntimeError with the compiler log.\n\n"
        + measured
        + (f"\non {env.get('gpu') or env.get('cpu')}, torch {env.get('torch')}" if env else "")
        + "."
        + noise
    )
    body, namespaces = make_lazy(candidate["source"])
    first, rest = _split_future_imports(body)
    if ast.get_docstring(pyast.parse(body), clean=False) is None:
        header = f'"""{about}\n"""\n'
    else:  # the candidate's own docstring stays the module's, before any `from __future__`
        header = "".join(f"# {line}".rstrip() + "\n" for line in about.splitlines()) + "\n"
    hooks = f"_kw_lazy_ops({namespaces!r})\n\n\n" if namespaces else ""
    return header + first + PRELUDE + hooks + rest


def _split_future_imports(source: str) -> tuple[str, str]:
    """The lines up to the docstring and `from __future__` imports, which must stay first (the
    prelude goes after them), and the rest."""
    tree = pyast.parse(source)
    last = 0
    for index, node in enumerate(tree.body):
        future = isinstance(node, ast.ImportFrom) and node.module == "__future__"
        docstring = index == 0 and ast.get_docstring(tree, clean=False) is not None
        if not (future or docstring):
            break
        last = node.end_lineno or node.lineno
    lines = source.splitlines(keepends=True)
    return "".join(lines[:last]), "".join(lines[last:])
