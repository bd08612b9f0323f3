"""`native_preprocessed`: the candidate's sources as the compiler reads them (see
compiler/audit.py)."""

from __future__ import annotations

import os
import re
import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from kernelwright.compiler import pch
from kernelwright.compiler.audit_rules import (
    _MACRO_NOISY,
    PREPROCESS_TIMEOUT_S,
    PREPROCESSED,
    Refusal,
    _cuda_home,
    _first_line,
    _run,
    _under,
)

# --- native_preprocessed --------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    source: Path
    cuda: bool
    flags: tuple[str, ...]
    required: bool  # torch wrote it into the build folder (load_inline): it must be there


def _scan_folders(folders: list[Path], notes: list[str]) -> list[Refusal | None]:
    refusals: dict[Path, Refusal | None] = {folder: None for folder in folders}
    jobs = []
    for folder in folders:
        units = compile_units(folder)
        if units is None:
            reason = f"{folder.name}/build.ninja is gone, so what was compiled cannot be read"
            refusals[folder] = Refusal(PREPROCESSED, reason)
        jobs += [(folder, unit) for unit in units or []]
    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
        outcomes = list(pool.map(lambda job: scan_unit(job[1], job[0], notes), jobs))
    for (folder, _), outcome in zip(jobs, outcomes, strict=True):
        refusals[folder] = refusals[folder] or outcome
    return [refusals[folder] for folder in folders]


def compile_units(folder: Path) -> list[Unit] | None:
    """The sources torch's `build.ninja` in `folder` compiles, with the flags they were compiled
    with (kept: only `safe_flags`); None without a `build.ninja` (torch's JIT builds always
    write one: only candidate code removes it)."""
    try:
        ninja = (folder / "build.ninja").read_text(errors="replace")
    except OSError:
        return None
    values = {k: pch._ninja_value(v) for k, v in pch._variables(ninja).items()}
    units = []
    for line in ninja.splitlines():
        match = re.fullmatch(r"build (.+?): (compile|cuda_compile) (.+)", line)
        if not match:
            continue
        cuda = match.group(2) == "cuda_compile"
        prefix = "cuda_" if cuda else ""
        flags = f"{values.get(prefix + 'cflags', '')} {values.get(prefix + 'post_cflags', '')}"
        source = Path(pch._ninja_value(match.group(3)))
        required = source.parent.resolve() == folder.resolve()
        units.append(Unit(source, cuda, tuple(safe_flags(flags)), required))
    return units


_KEEP_FLAG = re.compile(
    r"-[DU]\S+|-std=[\w+]+|-O[0-3sgz]?|-Ofast|-pthread|-m(?:64|32|arch=\S+|tune=\S+|avx\w*|sse\w*"
    r"|fma\w*|f16c|bmi2?|cpu=\S+|fpu=\S+)|-f(?:no-)?(?:openmp(?:-simd)?|fast-math|unsafe-math-"
    r"optimizations|finite-math-only|math-errno|PIC|pic|PIE|pie|exceptions|rtti|signed-char"
    r"|unsigned-char|char8_t|sanitize=[\w,]+)|--use_fast_math|-use_fast_math"
    r"|--expt-relaxed-constexpr|--expt-extended-lambda|-gencode=\S+|-arch=\S+|--generate-code=\S+"
)
_PATH_FLAGS = ("-isystem", "-iquote", "-idirafter", "-include", "-imacros", "-I")


def safe_flags(text: str) -> list[str]:
    """The preprocessing flags of a compile line: include folders and files, defines, the
    standard and the switches that set predefined macros; never one that runs or loads
    anything (`-fplugin`, `-specs`, `-Wp,`, `-Xcompiler`, `-ccbin`...). A dropped flag's
    argument is judged as a word of its own."""
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    kept: list[str] = []
    while words:
        word = words.pop(0)
        flag = next((f for f in _PATH_FLAGS if word.startswith(f)), None)
        if flag is not None:
            value = word[len(flag) :] or (words.pop(0) if words else "")
            if value and not value.startswith("-"):
                kept += [flag, value]
        elif _KEEP_FLAG.fullmatch(word):
            kept.append(word)
    return kept


def scan_unit(unit: Unit, cwd: Path, notes: list[str] | None = None) -> Refusal | None:
    """Preprocess one source and run native_checks' rules over the candidate's lines of it."""
    name = unit.source.name
    if not unit.source.is_file():
        if unit.required:
            return Refusal(PREPROCESSED, f"{name}, a source of the build, is gone from its folder")
        if notes is not None:
            notes.append(f"preprocessed scan: {unit.source} is gone (a temporary source?)")
        return None
    if unit.cuda:
        from kernelwright.compiler.precheck_run import find_nvcc

        nvcc = find_nvcc()
        if nvcc is None:
            if notes is not None:
                notes.append(f"preprocessed scan: no nvcc to read {name}")
            return None
        command = [nvcc, "-E", "-x", "cu", *unit.flags, str(unit.source)]
    else:
        compiler = shlex.split(os.environ.get("CXX", "c++")) or ["c++"]
        command = [*compiler, "-E", "-x", "c++", *unit.flags, str(unit.source)]
    proc = _run(command, PREPROCESS_TIMEOUT_S, cwd)
    if proc is None:
        return Refusal(PREPROCESSED, f"the preprocessor did not finish {name} in time")
    if proc.returncode != 0:
        error = next((ln for ln in proc.stderr.splitlines() if "error" in ln), _first_line(proc))
        return Refusal(PREPROCESSED, f"the preprocessor cannot read {name} as built: {error[:200]}")
    return scan_preprocessed(proc.stdout, cwd, _trusted_roots(unit), _search_roots(unit), name)


def scan_preprocessed(
    output: str, cwd: Path, trusted: tuple[str, ...], search: tuple[str, ...], name: str
) -> Refusal | None:
    """native_checks' rejecting rules over the candidate's lines of preprocessor `output`."""
    own = own_lines(output, cwd, trusted, search)
    rules = _rules()
    for path in own.files:
        directive = _line_directive(path, rules)
        if directive:
            return Refusal(PREPROCESSED, f"{Path(path).name} renames its lines (`{directive}`)")
    strict, full = neutral_chars(own.strict), neutral_chars(own.full)
    found = [f for f in rules.native_findings(strict) if f.severity == rules.REJECT]
    found += [
        f
        for f in rules.native_findings(full)
        if f.severity == rules.REJECT and f.check not in _MACRO_NOISY
    ]
    if not found:
        return None
    first = found[0]
    return Refusal(PREPROCESSED, f"{first.check}: {first.message} in {name} as preprocessed")


@dataclass
class OwnLines:
    strict: str  # the candidate's lines, without system headers' macro expansions on them
    full: str  # with them
    files: list[str]  # the candidate's files (the main source and what it included)


_MARKER = re.compile(r'^# (\d+) "((?:[^"\\\n]|\\.)*)"((?: [1-4])*)[ \t]*$', re.M)


def own_lines(
    output: str, cwd: Path, trusted: tuple[str, ...], search: tuple[str, ...]
) -> OwnLines:
    """The lines of preprocessor output in files outside `trusted` (folders), with an
    `#include <name>` line for each header such a file includes (its directive is gone)."""
    markers = list(_MARKER.finditer(output))
    cache: dict[str, str | None] = {}

    def own(raw: str) -> str | None:  # the resolved path of a candidate file, else None
        if raw not in cache:
            path = _path_of(raw, cwd)
            if (raw.startswith("<") and raw.endswith(">")) or _under(path, trusted):
                cache[raw] = None  # a pseudo file, or a header of the toolchain as named
            else:
                resolved = os.path.realpath(path)
                cache[raw] = None if _under(resolved, trusted) else resolved
        return cache[raw]

    strict: list[str] = []
    full: list[str] = []
    files: list[str] = []
    current: str | None = None  # the file of the text before each marker
    for i, marker in enumerate(markers):
        name, flags = marker.group(2), marker.group(3).split()
        path = own(name)
        if path and path not in files:
            files.append(path)
        if "1" in flags and current is not None and own(current):
            include = f"#include <{_include_name(_path_of(name, cwd), search)}>\n"
            strict.append(include)
            full.append(include)
        current = name
        if path is None:
            continue
        end = markers[i + 1].start() if i + 1 < len(markers) else len(output)
        text = output[marker.end() : end]
        full.append(text)
        following = markers[i + 1] if i + 1 < len(markers) else None
        excursion = (  # a system macro's expansion, back to the same file and line state
            "3" in flags
            and following is not None
            and following.group(2) == marker.group(2)
            and not following.group(3).split()
        )
        if not excursion:
            strict.append(text)
    return OwnLines("\n".join(strict), "\n".join(full), files)


def _path_of(raw: str, cwd: Path) -> str:
    """The path a line marker names (escapes undone, relative to the preprocessor's folder)."""
    return os.path.normpath(os.path.join(cwd, re.sub(r"\\(.)", r"\1", raw)))


def _include_name(path: str, search: tuple[str, ...]) -> str:
    """How an `#include <...>` names `path`: relative to the innermost search folder."""
    resolved = os.path.realpath(path)
    best = ""
    for root in search:
        if _under(resolved, (root,)) and len(root) > len(best):
            best = root
    return os.path.relpath(resolved, best) if best else path


_LINE_DIRECTIVE = re.compile(r"^[ \t]*(?:#|%:)[ \t]*(?:line\b|\d)[^\n]*", re.M)


def _line_directive(path: str, rules: Any) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    match = _LINE_DIRECTIVE.search(rules.strip_comments(text))
    return match.group(0).strip()[:80] if match else ""


_TOKEN = re.compile(
    r"(?:u8|[uUL])?R\"([^()\\\s]{0,16})\(.*?\)\1\""  # raw string
    r"|[A-Za-z_]\w*"  # identifier (a literal's prefix too)
    r"|\.?\d(?:[eEpP][+-]|[\w.']|)*"  # pp-number: 1'000'000 opens no character literal
    r"|\"(?:[^\"\\\n]|\\.)*\""  # string
    r"|'(?:[^'\\\n]|\\.)*'",  # character literal
    re.S,
)


def neutral_chars(text: str) -> str:
    """`text` with each character literal replaced by `0`: after preprocessing a character is a
    number, and a `'"'` left in place would open a string for the text rules."""
    return _TOKEN.sub(lambda m: "0" if m.group(0).startswith("'") else m.group(0), text)


def _rules() -> Any:
    from kernelwright.compiler import native_checks

    return native_checks


def _trusted_roots(unit: Unit) -> tuple[str, ...]:
    return _system_roots() + ((_cuda_home(),) if unit.cuda and _cuda_home() else ())


def _search_roots(unit: Unit) -> tuple[str, ...]:
    flags = list(unit.flags)
    named = [
        os.path.realpath(flags[i + 1])
        for i, f in enumerate(flags[:-1])
        if f in ("-I", "-isystem", "-iquote", "-idirafter")
    ]
    cuda = _cuda_home()
    extra = (os.path.join(cuda, "include"),) if cuda else ()
    return _system_roots() + tuple(named) + extra


@lru_cache(maxsize=1)
def _system_roots() -> tuple[str, ...]:
    """Folders whose headers are the toolchain's: torch's, Python's, the compiler's own search
    list and the precompiled headers' (made by the CLI only)."""
    from kernelwright import paths
    from kernelwright.compiler.precheck_run import system_includes

    roots = [*system_includes(), str(paths.pch_dir())]
    compiler = shlex.split(os.environ.get("CXX", "c++")) or ["c++"]
    proc = _run([*compiler, "-E", "-x", "c++", "-v", os.devnull], 30.0)
    if proc is not None:
        listing = re.search(r"search starts here:\n(.*?)End of search list", proc.stderr, re.S)
        if listing:
            roots += [line.strip() for line in listing.group(1).splitlines() if line.strip()]
    return tuple(sorted({os.path.realpath(r) for r in roots}))
