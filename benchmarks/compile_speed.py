"""Compile speed: the shipped candidates built the KernelBench way and kernelwright's fast way.

    python benchmarks/compile_speed.py [--target cpu|cuda] [--only 01_gelu,2] [--parallel N]
                                       [--layouts naive,fast[,shipped]] [--build-timeout S] [--json]

Where the two layouts come from: a generator (`render` below) takes ONE kernel body, a shipped
candidate `core/suite/<target>/NN_name.py` (its `cpp_source`, `cuda_source`, its `load_inline`
arguments and its `ModelNew`), and writes each layout of it as a candidate file:

- naive, as KernelBench's examples write candidates: torch/extension.h and a pybind11 module made
  by `load_inline(functions=[...])` with torch's default implicit headers. On cuda the kernels and
  the torch-facing wrapper both sit in `cuda_sources` (so nvcc parses the torch headers) and
  `cpp_sources` holds only the wrappers' declarations. On cpu it is the wrapper as shipped.
- fast, as the coder prompt asks (prompts/coder_system.j2): the kernel-only CUDA source as shipped
  (CUDA headers only) and the wrapper rewritten for the slim headers (`torch/library.h`,
  `ATen/core/Tensor.h`, `ATen/ops/<op>.h` for each op it calls; `torch::` names become `at::`),
  registered with `TORCH_LIBRARY`, built with `is_python_module=False, no_implicit_headers=True` and
  called as `torch.ops.<name>.<fn>`.
- shipped (only when asked for): the file as it is (its extension renamed). The cuda suite is
  written in the split layout (kernel-only .cu, a pybind .cpp with torch/extension.h); the cpu
  suite in the naive one.

Both layouts keep the candidate's own flags (`-O3`), so only the layout differs. Every build goes
through kernelwright's own path (`compiler.pool.build_many` -> build worker -> content-addressed
cache, with the nvcc pre-check on cuda), under a fresh KERNELWRIGHT_HOME, one build at a time, so
no build is a cache hit and none disturbs another. `compile_s` is the time spent inside the build
worker loading the candidate (what `evaluate --json` reports); `wall_s` adds starting the worker
and importing torch.

Before them, one fast build of the first candidate (renamed) is reported on its own: in a fresh home
it goes without the precompiled torch headers (compiler/pch.py), which the CLI makes right after it
for the later fast builds, as every build after the first of a flag set gets in a real session.
Then two more figures: a cache hit (the first fast candidate built again, unchanged) and a
parallel one: N fast candidates (the selected ones, renamed so each is a fresh build, cycled when
fewer than N) built at once, against the same builds one after another (their fast builds above).
A full cuda run takes about 15 min on an H100 machine (each naive build about a minute); where a
command has a shorter limit, split it: `--only 1,2,3,4,5,6 --parallel 0`, then
`--only 7,8,9,10,11,12`. Exit code 0 when every build succeeded, 1 when one failed (its status
and first error are printed), 2 on bad arguments or a missing toolchain.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from kernelwright.compiler import pch
from kernelwright.compiler.pool import PooledBuild, build_many, default_jobs
from kernelwright.errors import KernelwrightError
from kernelwright.targets import check_toolchain, default_target

LAYOUTS = ("naive", "fast", "shipped")
SUITE = Path(__file__).resolve().parent.parent / "core" / "suite"

# torch:: names the slim headers do not define, with their at:: spelling; other torch:: names
# (Tensor, empty, empty_like, ...) are the same functions under at::.
SCALAR_TYPES = {
    "kFloat32": "kFloat",
    "kFloat16": "kHalf",
    "kFloat64": "kDouble",
    "kInt32": "kInt",
    "kInt64": "kLong",
    "kInt16": "kShort",
    "kInt8": "kChar",
    "kUInt8": "kByte",
}
NOT_OPS = {"parallel_for", "parallel_reduce", "get_num_threads", "cuda"}
EXTENSION_H = re.compile(r"^\s*#\s*include\s*[<\"]torch/(extension|torch)\.h[>\"].*\n?", re.M)


class LayoutError(ValueError):
    """A shipped candidate the generator cannot take apart (it says what it expected)."""


# -- the generator ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shipped:
    """One shipped candidate, taken apart: the kernel body, its wrapper and its Python."""

    stem: str  # file name without .py, e.g. 02_row_sum
    ext: str  # the extension name it passes to load_inline
    cpp: str  # the torch-facing wrapper (cpp_source)
    cuda: str | None  # the kernels and launchers (cuda_source); None on cpu
    functions: list[str]
    cflags: list[str]
    cuda_cflags: list[str]
    head: str  # the file before the sources and the load_inline call
    block: str  # the sources and the load_inline call, as shipped
    tail: str  # the file after them (ModelNew), which calls `_ext.<fn>(...)`


def take_apart(path: Path) -> Shipped:
    text = path.read_text()
    tree = ast.parse(text)
    strings: dict[str, str] = {}
    call: ast.Call | None = None
    taken: list[ast.stmt] = []
    for node in tree.body:
        value = node.value if isinstance(node, ast.Assign | ast.Expr) else None
        names = [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
        if isinstance(value, ast.Constant) and isinstance(value.value, str) and names:
            if names[0] in ("cpp_source", "cuda_source"):
                strings[names[0]] = value.value
                taken.append(node)
        elif (
            isinstance(value, ast.Call)
            and getattr(value.func, "id", "") == "load_inline"
            and names == ["_ext"]
        ):
            call = value
            taken.append(node)
    if call is None or "cpp_source" not in strings:
        raise LayoutError(
            f"{path}: expected `cpp_source = r'''...'''` and `_ext = load_inline(...)`"
        )
    kwargs = {k.arg: k.value for k in call.keywords if k.arg}
    literal = {
        k: ast.literal_eval(v) for k, v in kwargs.items() if isinstance(v, ast.Constant | ast.List)
    }
    if literal.get("is_python_module", True) is False or "functions" not in literal:
        raise LayoutError(
            f"{path}: expected a pybind candidate (`functions=[...]`), the generator's input"
        )
    first = min(n.lineno for n in taken)
    last = max(n.end_lineno or n.lineno for n in taken)
    inside = [n for n in tree.body if first < n.lineno < last and n not in taken]
    if inside:
        raise LayoutError(
            f"{path}: line {inside[0].lineno} sits between the sources and load_inline"
        )
    lines = text.splitlines(keepends=True)
    cuda = strings.get("cuda_source")
    if cuda is not None and "torch/" in "".join(re.findall(r"#\s*include\s*\S+", cuda)):
        raise LayoutError(f"{path}: its cuda_source includes torch headers; expected kernel-only")
    return Shipped(
        stem=path.stem,
        ext=str(literal["name"]),
        cpp=strings["cpp_source"],
        cuda=cuda,
        functions=[str(f) for f in literal["functions"]],
        cflags=[str(f) for f in literal.get("extra_cflags", [])],
        cuda_cflags=[str(f) for f in literal.get("extra_cuda_cflags", [])],
        head="".join(lines[: first - 1]),
        block="".join(lines[first - 1 : last]),
        tail="".join(lines[last:]),
    )


def declarations(cpp: str, functions: list[str]) -> list[str]:
    """The C++ declaration of each named function, from its definition in `cpp`."""
    found = []
    for fn in functions:
        match = re.search(rf"^([^\n;{{}}#]*?\b{re.escape(fn)}\s*\([^)]*\))\s*\{{", cpp, re.M)
        if match is None:
            raise LayoutError(f"no definition of {fn}() in the wrapper")
        found.append(" ".join(match.group(1).split()) + ";")
    return found


def slim_wrapper(cpp: str, namespace: str, functions: list[str]) -> str:
    """The wrapper on the slim headers, registered with TORCH_LIBRARY under `namespace`."""
    body = EXTENSION_H.sub("", cpp)
    for old, new in SCALAR_TYPES.items():
        body = re.sub(rf"\btorch::{old}\b", f"at::{new}", body)
    body = re.sub(r"\btorch::", "at::", body)
    ops = sorted(set(re.findall(r"\bat::([a-z][a-z0-9_]*)\s*\(", body)) - NOT_OPS)
    includes = ["#include <torch/library.h>", "#include <ATen/core/Tensor.h>"]
    includes += [f"#include <ATen/ops/{op}.h>" for op in ops]
    defs = "\n".join(f'    m.def("{fn}", &{fn});' for fn in functions)
    return (
        "\n".join(includes)
        + "\n"
        + body.rstrip()
        + f"\n\nTORCH_LIBRARY({namespace}, m) {{\n{defs}\n}}\n"
    )


def _flags(parts: Shipped) -> str:
    out = f"    extra_cflags={parts.cflags!r},\n" if parts.cflags else ""
    return out + (f"    extra_cuda_cflags={parts.cuda_cflags!r},\n" if parts.cuda_cflags else "")


def _string(name: str, text: str) -> str:
    if '"""' in text or text.endswith("\\"):
        return f"{name} = {text!r}\n"
    return f'{name} = r"""{text}"""\n'


def render(parts: Shipped, layout: str, suffix: str = "") -> tuple[str, str]:
    """(extension name, candidate source) of one layout of a shipped candidate."""
    name = f"{parts.ext}_{layout}{suffix}"
    if layout == "shipped":
        block = parts.block.replace(f'name="{parts.ext}"', f'name="{name}"')
        if block == parts.block:
            raise LayoutError(f'{parts.stem}: expected name="{parts.ext}" in its load_inline call')
        return name, parts.head + block + parts.tail
    if layout == "naive":
        if parts.cuda is None:
            cpp, cuda = parts.cpp, None
        else:  # KernelBench: kernels and wrappers in the .cu, declarations in the .cpp
            cpp = "\n".join(declarations(parts.cpp, parts.functions)) + "\n"
            cuda = "#include <torch/extension.h>\n" + parts.cuda.rstrip() + "\n\n" + parts.cpp
        call = f"    functions={parts.functions!r},\n"
        tail = parts.tail
    elif layout == "fast":
        cpp, cuda = slim_wrapper(parts.cpp, name, parts.functions), parts.cuda
        call = "    is_python_module=False,\n    no_implicit_headers=True,\n"
        tail = parts.tail.replace("_ext.", f"torch.ops.{name}.")
    else:
        raise LayoutError(f"unknown layout {layout!r}")
    block = _string("cpp_source", cpp)
    if cuda is not None:
        block += "\n" + _string("cuda_source", cuda)
    assign = "_ext = " if layout == "naive" else ""
    block += f'\n{assign}load_inline(\n    name="{name}",\n    cpp_sources=cpp_source,\n'
    block += "    cuda_sources=cuda_source,\n" if cuda is not None else ""
    block += call + _flags(parts) + ")\n"
    return name, parts.head + block + tail


def shipped_candidates(target: str, only: str = "") -> list[Path]:
    """The shipped candidates of `target`, those named in `only` (names, prefixes or numbers)."""
    paths = sorted((SUITE / target).glob("[0-9]*.py"))
    tokens = [t.strip() for t in only.split(",") if t.strip()]
    if not tokens:
        return paths
    chosen = []
    for token in tokens:
        hits = [
            p
            for p in paths
            if (token.isdigit() and int(p.stem.split("_")[0]) == int(token))
            or (not token.isdigit() and p.stem.startswith(token))
        ]
        if not hits:
            names = ", ".join(p.stem for p in paths)
            raise LayoutError(f"--only {token}: no shipped {target} candidate; there are {names}")
        chosen += [p for p in hits if p not in chosen]
    return chosen


# -- measuring ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    candidate: str
    layout: str
    ok: bool
    status: str
    compile_s: float
    wall_s: float
    cached: bool
    precheck_s: float | None
    reason: str


def _row(candidate: str, layout: str, built: PooledBuild) -> Row:
    result = built.result
    return Row(
        candidate=candidate,
        layout=layout,
        ok=result.ok,
        status="ok" if result.ok else str(result.status),
        compile_s=round(result.compile_s, 3),
        wall_s=round(built.wall_s, 3),
        cached=result.cached,
        precheck_s=None if result.precheck_s is None else round(result.precheck_s, 3),
        reason=result.reason,
    )


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _machine(target: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": metadata.version("torch"),
    }
    if target == "cuda":
        from kernelwright.compiler.precheck_run import find_nvcc
        from kernelwright.targets import first_gpu_name

        nvcc = find_nvcc()
        if nvcc:
            out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
            info["nvcc"] = out.strip().splitlines()[-1] if out.strip() else None
        info["gpu"] = first_gpu_name()
    return info


class Bench:
    """Writes layouts as candidate files and builds them through kernelwright's pool."""

    def __init__(self, target: str, timeout_s: float, work: Path) -> None:
        self.target, self.timeout_s, self.work = target, timeout_s, work

    def write(self, parts: Shipped, layout: str, suffix: str = "") -> Path:
        name, source = render(parts, layout, suffix)
        path = self.work / f"{name}.py"
        path.write_text(source)
        return path

    def build(self, paths: list[Path], jobs: int = 1) -> list[PooledBuild]:
        return build_many(paths, self.target, jobs=jobs, timeout_s=self.timeout_s)


def run(args: argparse.Namespace, say: Any) -> dict[str, Any]:
    target, layouts = args.target, args.layouts
    shipped = [take_apart(p) for p in shipped_candidates(target, args.only)]
    parallel = default_jobs() if args.parallel is None else args.parallel
    bench = Bench(target, args.build_timeout, Path(os.environ["KERNELWRIGHT_HOME"]) / "src")
    bench.work.mkdir(parents=True, exist_ok=True)
    say(
        f"compile speed on {target}: {len(shipped)} candidates x {', '.join(layouts)}, "
        f"one build at a time, {os.cpu_count()} cores, build limit {args.build_timeout:g} s"
    )
    figures: dict[str, Any] = {
        "target": target,
        "machine": _machine(target),
        "layouts": list(layouts),
    }
    if "fast" in layouts and shipped:
        # A fresh home has no precompiled torch headers yet (compiler/pch.py): the first fast
        # build goes without, and the CLI makes them after it, once per toolchain and flag set.
        # Shown on its own, not in the medians.
        (built,) = bench.build([bench.write(shipped[0], "fast", "_first")])
        first_build = _row(shipped[0].stem, "fast", built)
        figures["first_fast_build"] = asdict(first_build)
        say(f"  first fast build in this fresh home: {first_build.compile_s:.2f} s{_pch_note()}")
    rows: list[Row] = []
    for parts in shipped:
        for layout in layouts:
            (built,) = bench.build([bench.write(parts, layout)])
            rows.append(_row(parts.stem, layout, built))
            r = rows[-1]
            note = "" if r.ok else f"  {r.status}: {r.reason[:160]}"
            note += "  (cache hit: not a fresh build!)" if r.cached else ""
            times = f"{r.compile_s:8.2f} s  (wall {r.wall_s:.2f} s)"
            say(f"  {parts.stem:<22} {layout:<8} {times}{note}")

    medians = {
        lay: _median([r.compile_s for r in rows if r.layout == lay and r.ok]) for lay in layouts
    }
    figures["builds"] = [asdict(r) for r in rows]
    figures["median_compile_s"] = medians
    naive, fast = medians.get("naive"), medians.get("fast")
    figures["naive_over_fast"] = round(naive / fast, 2) if naive and fast else None

    fast_rows = {r.candidate: r for r in rows if r.layout == "fast" and r.ok}
    first = next((p for p in shipped if p.stem in fast_rows), None)
    if first is not None:  # the same file again: every extension comes from the cache
        (built,) = bench.build([bench.work / f"{first.ext}_fast.py"])
        figures["cache_hit"] = asdict(_row(first.stem, "fast", built))

    picks = [p for p in shipped if p.stem in fast_rows]
    if parallel > 0 and picks:
        chosen = [picks[i % len(picks)] for i in range(parallel)]
        paths = [bench.write(p, "fast", f"_p{i}") for i, p in enumerate(chosen)]
        say(f"  building {parallel} fast candidates at once ...")
        start = time.perf_counter()
        built = bench.build(paths, jobs=parallel)
        wall = time.perf_counter() - start
        alone = [fast_rows[p.stem].wall_s for p in chosen]
        parallel_rows = [_row(p.stem, "fast", b) for p, b in zip(chosen, built, strict=True)]
        figures["parallel"] = {
            "builds": parallel,
            "all_ok": all(r.ok for r in parallel_rows),
            "wall_s": round(wall, 3),
            "one_after_another_s": round(sum(alone), 3),
            "throughput_gain": round(sum(alone) / wall, 2),
            "median_wall_alone_s": _median(alone),
            "median_wall_at_once_s": _median([r.wall_s for r in parallel_rows]),
            "median_compile_at_once_s": _median([r.compile_s for r in parallel_rows]),
            "failures": [asdict(r) for r in parallel_rows if not r.ok],
        }
    figures["all_ok"] = (
        all(r.ok for r in rows)
        and figures.get("first_fast_build", {}).get("ok", True)
        and figures.get("parallel", {}).get("all_ok", True)
        and figures.get("cache_hit", {}).get("cached", True)
    )
    return figures


def _pch_note() -> str:
    if not pch.enabled():
        return f" (precompiled headers off: {pch.ENV_SWITCH}=0)"
    return " (it makes the precompiled torch headers that later builds reuse)"


def summary(figures: dict[str, Any]) -> str:
    layouts = figures["layouts"]
    by = {(r["candidate"], r["layout"]): r for r in figures["builds"]}
    names = list(dict.fromkeys(r["candidate"] for r in figures["builds"]))
    ratio = "naive" in layouts and "fast" in layouts
    head = ["candidate", *[f"{lay}_s" for lay in layouts]] + (["naive/fast"] if ratio else [])
    lines = [" | ".join(head), "|".join("---" for _ in head)]
    for name in names:
        cells = [name]
        for lay in layouts:
            r = by.get((name, lay))
            cells.append("-" if r is None else f"{r['compile_s']:.2f}" if r["ok"] else r["status"])
        if ratio:
            a, b = by.get((name, "naive")), by.get((name, "fast"))
            ok = a and b and a["ok"] and b["ok"] and b["compile_s"] > 0
            cells.append(f"{a['compile_s'] / b['compile_s']:.1f}x" if ok else "-")
        lines.append(" | ".join(cells))
    medians = figures["median_compile_s"]
    cells = ["median", *["-" if medians[lay] is None else f"{medians[lay]:.2f}" for lay in layouts]]
    if ratio:
        cells.append(
            "-" if figures["naive_over_fast"] is None else f"{figures['naive_over_fast']}x"
        )
    lines.append(" | ".join(cells))
    first = figures.get("first_fast_build")
    if first:
        lines.append(
            f"\nfirst fast build in a fresh home, not in the medians: {first['compile_s']:.2f} s"
            f"{_pch_note()}"
        )
    hit = figures.get("cache_hit")
    if hit:
        lines.append(
            f"\ncache hit ({hit['candidate']}, fast, unchanged): compile {hit['compile_s']:.3f} s, "
            f"wall {hit['wall_s']:.2f} s (worker start and import torch), cached={hit['cached']}"
        )
    par = figures.get("parallel")
    if par:
        lines.append(
            f"parallel: {par['builds']} different fast candidates at once: {par['wall_s']:.1f} s "
            f"wall; one after another {par['one_after_another_s']:.1f} s "
            f"({par['throughput_gain']}x throughput); one build's wall alone "
            f"{par['median_wall_alone_s']:.2f} s, at once {par['median_wall_at_once_s']:.2f} s "
            f"(medians){'' if par['all_ok'] else '; SOME FAILED'}"
        )
    m = figures["machine"]
    lines.append(
        f"machine: {m['cpus']} cores, {m['platform']}, torch {m['torch']}"
        + (f", {m.get('nvcc')}, {m.get('gpu')}" if figures["target"] == "cuda" else "")
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--target", choices=["cuda", "cpu"], default=None)
    parser.add_argument("--only", default="", help="comma-separated names, prefixes or numbers")
    parser.add_argument("--layouts", default="naive,fast", help=f"any of {', '.join(LAYOUTS)}")
    parser.add_argument(
        "--parallel", type=int, default=None, help="builds at once (default min(8, cores); 0: skip)"
    )
    parser.add_argument("--build-timeout", type=float, default=300.0, help="seconds per build")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--keep", action="store_true", help="keep the build folder and print it")
    args = parser.parse_args(argv)
    args.layouts = [lay.strip() for lay in args.layouts.split(",") if lay.strip()]
    unknown = [lay for lay in args.layouts if lay not in LAYOUTS]
    if unknown or not args.layouts:
        parser.error(f"--layouts: use some of {', '.join(LAYOUTS)}")

    args.target = args.target or default_target()
    out = sys.stderr if args.json else sys.stdout

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    home = Path(tempfile.mkdtemp(prefix="kw-compile-speed-"))
    os.environ["KERNELWRIGHT_HOME"] = str(home)  # fresh: no build of this run is a cache hit
    try:
        check_toolchain(args.target)
        figures = run(args, say)
    except (KernelwrightError, LayoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            say(f"builds kept in {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    say("\n" + summary(figures))
    if args.json:
        print(json.dumps(figures, indent=2))
    return 0 if figures["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
