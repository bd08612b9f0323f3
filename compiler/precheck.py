"""Decide whether, and how, to pre-check a CUDA extension call with a quick `nvcc -cubin`.

Pure functions of the call's arguments and the environment (no torch, no subprocess). They
guarantee that a pre-check is planned only for the fast "kernel-only" layout: every `.cu`
translation unit includes no torch/ATen/c10/pybind11/Python headers, directly or through a local
header it quotes, and `load_inline` was told `no_implicit_headers=True` (otherwise torch prepends
`torch/types.h` to the `.cu`, whose parse alone takes about a minute). The planned command mirrors
the full build's nvcc flags (torch's defines, include paths, the candidate's safe flags, the same
arch), so a pre-check failure is a failure the full build would also hit.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PRECHECK_TIMEOUT_S = 60.0
DEFAULT_ARCH = "sm_90"
DEFAULT_STD = "-std=c++20"  # what torch's cpp_extension adds when the candidate names none

_TORCH_HEADER = re.compile(
    r'^[ \t]*#[ \t]*include[ \t]*[<"][ \t]*'
    r"(torch/|ATen/|c10/|caffe2/|pybind11/|TH/|THC/|Python\.h)",
    re.MULTILINE,
)
_QUOTED_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"', re.MULTILINE)

# Flags passed on as they are: they change what compiles (macros, language, math) or how ptxas
# allocates registers, and none of them needs torch or a link step.
_SAFE_FLAG = re.compile(
    r"^(-O\d?|--?use_fast_math|-std=\S+|-[DUI]\S+|-isystem=?\S+|--expt-relaxed-constexpr|"
    r"--(define-macro|undefine-macro|include-path|system-include)=\S+|"
    r"--expt-extended-lambda|--extended-lambda|-lineinfo|--restrict|"
    r"--(ftz|prec-div|prec-sqrt|fmad)=(true|false)|--?maxrregcount=\d+)$"
)
# Safe flags that may take their value as the next word (nvcc accepts both spellings).
_PAIRED = {
    "-D", "-U", "-I", "-isystem",
    "--define-macro", "--undefine-macro", "--include-path", "--system-include",
}  # fmt: skip
# Flags that make a lone `-cubin` run wrong: relocatable device code links device symbols across
# units (a `-cubin` would reject the unresolved ones), and a forced include may pull in torch.
_UNSUPPORTED = re.compile(
    r"^(-rdc(=true)?|--relocatable-device-code(=true)?|-dc|--device-c|"
    r"-include|--pre-include(=\S*)?|-Xcompiler=?.*-include.*)$"
)
_ARCH_IN_FLAG = re.compile(r"(?:sm|compute)_(\d+[a-z]?)")
_ARCH_ENTRY = re.compile(r"^(\d+)\.(\d+)([a-z]?)$")
# torch's named arches, each mapped to the first one it expands to.
_NAMED_ARCHES = {
    "Kepler+Tesla": "3.7",
    "Kepler": "3.5",
    "Maxwell+Tegra": "5.3",
    "Maxwell": "5.0",
    "Pascal": "6.0",
    "Volta+Tegra": "7.2",
    "Volta": "7.0",
    "Turing": "7.5",
    "Ampere+Tegra": "8.7",
    "Ampere": "8.0",
    "Ada": "8.9",
    "Hopper": "9.0",
    "Blackwell+Tegra": "11.0",
    "Blackwell": "10.0",
}


@dataclass(frozen=True)
class CudaUnit:
    """One `.cu` translation unit: `path` is the file for `load`; None for `load_inline`'s
    `cuda.cu`, which exists only as `text` until torch writes it."""

    name: str
    text: str
    path: Path | None


@dataclass(frozen=True)
class PrecheckPlan:
    extension: str
    units: list[CudaUnit]
    flags: list[str]  # the candidate's extra_cuda_cflags that are safe to pass
    include_dirs: list[str]  # the candidate's extra_include_paths
    user_arch: str | None  # an arch the candidate's own flags name (torch then uses only those)


def plan_precheck(fn: str, arguments: Mapping[str, Any]) -> PrecheckPlan | None:
    """The pre-check for one `load_inline`/`load` call (its bound arguments), or None when it
    must be skipped: not kernel-only, no CUDA source, flags a `-cubin` run cannot honour."""
    if arguments.get("with_cuda") is False:
        return None
    include_dirs = [str(p) for p in _as_list(arguments.get("extra_include_paths"))]
    if fn == "load_inline":
        if not arguments.get("no_implicit_headers", False):
            return None  # torch prepends torch/types.h to cuda.cu
        text = "\n".join(str(s) for s in _as_list(arguments.get("cuda_sources")))
        units = [CudaUnit("cuda.cu", text, None)] if text.strip() else []
    elif fn == "load":
        units = []
        for source in _as_list(arguments.get("sources")):
            path = Path(str(source)).absolute()  # nvcc runs elsewhere
            if path.suffix != ".cu":
                continue
            try:
                units.append(CudaUnit(path.name, path.read_text(errors="replace"), path))
            except OSError:
                return None  # let the full build report the missing file
    else:
        return None
    if not units or not all(is_kernel_only(u, include_dirs) for u in units):
        return None
    raw = _split_flags(_as_list(arguments.get("extra_cuda_cflags")))
    if any(_UNSUPPORTED.match(flag) for flag in raw):
        return None
    user_arch = arch_from_flags(_as_list(arguments.get("extra_cuda_cflags")))
    name = str(arguments.get("name", "ext"))
    return PrecheckPlan(name, units, safe_cuda_flags(raw), include_dirs, user_arch)


def is_kernel_only(unit: CudaUnit, include_dirs: Iterable[str], depth: int = 8) -> bool:
    """True when neither the unit nor any local header it quotes includes torch headers."""
    search = [Path(d) for d in include_dirs]
    seen: set[Path] = set()
    pending = [(unit.text, unit.path.parent if unit.path else None, 0)]
    while pending:
        text, here, level = pending.pop()
        if _TORCH_HEADER.search(text):
            return False
        if level >= depth:
            continue
        for name in _QUOTED_INCLUDE.findall(text):
            # nvcc looks for a quoted header beside the including file first, then in -I folders.
            folders = ([here] if here else []) + search
            header = next((f / name for f in folders if (f / name).is_file()), None)
            if header is None or header.resolve() in seen:
                continue
            seen.add(header.resolve())
            try:
                pending.append((header.read_text(errors="replace"), header.parent, level + 1))
            except OSError:
                continue
    return True


def safe_cuda_flags(words: list[str]) -> list[str]:
    """The flags of `words` (already split) that the pre-check passes on; the rest is dropped."""
    kept: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        if word in _PAIRED and index + 1 < len(words):
            kept += [word, words[index + 1]]
            index += 2
            continue
        if _SAFE_FLAG.match(word):
            kept.append(word)
        index += 1
    return kept


def arch_from_flags(flags: list[str]) -> str | None:
    """The first `sm_XX` the candidate's arch flags name. torch skips its own arch flags when any
    flag mentions 'arch', so the full build then targets exactly what these say."""
    for flag in flags:
        if "arch" in str(flag) and (match := _ARCH_IN_FLAG.search(str(flag))):
            return f"sm_{match.group(1)}"
    return None


def choose_arch(user_arch: str | None, arch_list: str, gpu_arches: str) -> str:
    """The arch to pre-check for: the candidate's own arch flag, else the first entry of
    TORCH_CUDA_ARCH_LIST ("9.0" -> sm_90, "9.0a" -> sm_90a), else the first visible GPU's
    compute capability ("8.0,9.0" -> sm_80), else sm_90."""
    if user_arch:
        return user_arch
    for candidates in (arch_list.replace(" ", ";").split(";"), gpu_arches.split(",")):
        first = next((c.strip() for c in candidates if c.strip()), "")
        first = _NAMED_ARCHES.get(first.split("+")[0], first).split("+")[0]
        if match := _ARCH_ENTRY.match(first):
            return f"sm_{match[1]}{match[2]}{match[3]}"
    return DEFAULT_ARCH


def nvcc_command(
    nvcc: str,
    source: Path,
    cubin: Path,
    arch: str,
    plan: PrecheckPlan,
    base_flags: list[str],
    system_includes: list[str],
    host_compiler: str | None = None,
) -> list[str]:
    """`nvcc -cubin -Xptxas -v` with the flags the full build's nvcc step would get."""
    command = [nvcc, "-cubin", f"-arch={arch}", "-Xptxas", "-v", "-o", str(cubin)]
    if host_compiler:
        command += ["-ccbin", host_compiler]
    command += base_flags
    command += [f"-DTORCH_EXTENSION_NAME={plan.extension}", "-DTORCH_API_INCLUDE_EXTENSION_H"]
    command += [f"-I{Path(d).absolute()}" for d in plan.include_dirs]
    for folder in system_includes:
        command += ["-isystem", folder]
    command += plan.flags
    if not any(flag.startswith("-std=") for flag in plan.flags):
        command.append(DEFAULT_STD)
    return [*command, str(source)]


def _split_flags(flags: list[Any]) -> list[str]:
    # torch writes each flag into build.ninja as it is, so the shell splits "-Xptxas -v" in two.
    words: list[str] = []
    for flag in flags:
        try:
            words += shlex.split(str(flag))
        except ValueError:
            words.append(str(flag))
    return words


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, Path)):
        return [value]
    return list(value)
