"""Turn a recorded candidate into a standalone drop-in file.

The file imports in a fresh interpreter without building anything, exposes `ModelNew` with the
reference's constructor and `forward`, builds each extension the first time it is used, and if
the build fails raises `RuntimeError` carrying the compiler's log. It never falls back to PyTorch.

How: every module-level `NAME = ...load_inline(...)` / `...load(...)` call of the candidate is
wrapped, in the source text itself (comments and layout kept), into `_kw_lazy(lambda: <call>)`.
"""

from __future__ import annotations

import ast
from typing import Any

from kernelwright import pyast

PRELUDE = '''
class _KwLazyExtension:
    """Builds the extension on first attribute access; raises with the build log on failure."""

    def __init__(self, build):
        self._kw_build = build
        self._kw_module = None

    def __getattr__(self, name):
        if name.startswith("_kw_"):
            raise AttributeError(name)
        if self._kw_module is None:
            try:
                self._kw_module = self._kw_build()
            except Exception as exc:
                raise RuntimeError(f"building the kernel extension failed:\\n{exc}") from exc
        return getattr(self._kw_module, name)


def _kw_lazy(build):
    return _KwLazyExtension(build)


'''


def _is_build_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in ("load_inline", "load")


def make_lazy(source: str) -> str:
    """The candidate source with module-level extension builds deferred to first use."""
    tree = pyast.parse(source)
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))

    def pos(lineno: int, col: int) -> int:
        # ast columns count UTF-8 bytes; string offsets count characters
        return offsets[lineno - 1] + len(lines[lineno - 1].encode()[:col].decode(errors="ignore"))

    edits: list[tuple[int, int, str]] = []
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            call = node.value
            if (
                _is_build_call(call)
                and call.end_lineno is not None
                and call.end_col_offset is not None
            ):
                start = pos(call.lineno, call.col_offset)
                end = pos(call.end_lineno, call.end_col_offset)
                edits.append((start, end, f"_kw_lazy(lambda: {source[start:end]})"))
    for start, end, text in sorted(edits, reverse=True):
        source = source[:start] + text + source[end:]
    return source


def render(candidate: dict[str, Any]) -> str:
    """The exported file for a candidate record (as returned by `store.repo.get_candidate`)."""
    evaluation = candidate.get("evaluation") or {}
    env = evaluation.get("environment") or {}
    speedup = evaluation.get("speedup")
    header = (
        f'"""Exported by kernelwright: candidate {candidate["id"]} '
        f"of run {candidate['run_id']}.\n\n"
        f"Drop-in replacement for `Model` of {candidate['problem']['name']} "
        f"(problem hash {candidate['problem']['content_hash'][:12]}): `ModelNew` takes the same\n"
        "constructor arguments and forward inputs. Its extension builds on first use; a failed\n"
        "build raises RuntimeError with the compiler log.\n\n"
        + (f"Measured: {speedup:.3f}x over PyTorch eager" if speedup else "Measured: correct")
        + (f" on {env.get('gpu') or env.get('cpu')}, torch {env.get('torch')}" if env else "")
        + '.\n"""\n'
    )
    body = make_lazy(candidate["source"])
    future, rest = _split_future_imports(body)
    return header + future + PRELUDE + rest


def _split_future_imports(source: str) -> tuple[str, str]:
    """`from __future__` lines must stay first; keep them before the prelude."""
    tree = pyast.parse(source)
    last = 0
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            last = node.end_lineno or node.lineno
        elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            break
    lines = source.splitlines(keepends=True)
    return "".join(lines[:last]), "".join(lines[last:])
