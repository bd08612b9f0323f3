"""Precompiled torch headers for a candidate's C++ wrapper (gcc only).

Why: in the fast layout (kernel-only `.cu`, a slim `.cpp` registering ops with `TORCH_LIBRARY`)
most of a build is g++ parsing the same torch headers (`torch/library.h`, `ATen/core/Tensor.h`,
the `c10/cuda` stream helpers) for every candidate: about 8 of 9 s on a 2-core machine. A
precompiled header (PCH) of those headers, made once per toolchain and flag set, cuts that
compile to about 3 s.

How, without changing what the candidate means:
- only the torch headers (`torch/`, `ATen/`, `c10/`, not the small per-op `ATen/ops/` ones) that
  the candidate itself includes in its leading block of `#include <...>` lines go into the
  prelude, in the candidate's order; they are include-guarded, so the candidate's own includes
  become no-ops;
- `torch/extension.h` (the KernelBench layout, pybind included) is left alone: such builds stay
  as they were;
- the PCH is compiled with exactly the flags ninja will use for the `.cpp` (read from torch's
  `build.ninja`), minus the per-extension `TORCH_EXTENSION_NAME` define, which the headers never
  read; gcc checks the rest and falls back to the plain headers when the PCH does not fit
  (`-Winvalid-pch` says so in the build log), so a stale or foreign PCH costs time, never
  correctness;
- the prelude's folder is passed with `-isystem`, so the dependency file ninja keeps does not
  name it: evicting an old PCH never forces a cached extension to rebuild.

Who makes them: never a build worker. A build worker has already run the candidate's code (its
import calls `load_inline`), and a PCH it made or changed would be compiled into every later
candidate's build with those flags: one hostile candidate could plant code in all the others.
So workers see `<builds>/pch/` read-only (`isolation`), and a build whose PCH does not exist yet
goes without it and leaves a recipe (headers, compiler, flags) in its build folder. After the
build, the CLI (`make_requested`) checks the recipe against what torch itself would write (torch
headers only; known flags only; include folders only torch's, Python's and CUDA's) and makes the
PCH with gcc, no shell, for the builds that follow.

PCHs live in `<builds>/pch/<key>/`, made under an exclusive `flock` (concurrent makers of the same
key wait for the first), and at most `KEEP` of them are kept (each is about 300 MB).
`KERNELWRIGHT_PCH=0` turns the whole thing off.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from kernelwright.runner.isolation import run_tracked

PRELUDE = "kernelwright_pch_prelude.h"
MARKER = ".kw-complete"
APPLIED = ".kw-pch"  # in a build directory: the cflags line used, re-applied on cache hits
RECIPE = ".kw-pch-recipe.json"  # in a build directory: the PCH it wanted, for the CLI to make
KEEP = 4
EVICT_AFTER_S = 600.0  # never evict a PCH used this recently (a build may be about to read it)
MAKE_TIMEOUT_S = 300.0
ENV_SWITCH = "KERNELWRIGHT_PCH"

_INCLUDE = re.compile(r"#\s*include\s*<([^>]+)>\s*(//.*)?")
_TORCH_HEADER = ("torch/", "ATen/", "c10/")
_NOT_IN_PRELUDE = ("ATen/ops/", "torch/extension.h", "torch/python.h")


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def leading_torch_headers(source: str) -> list[str]:
    """Torch headers named in the source's leading block of `#include <...>` lines (blank lines
    and comments may sit between them); the block ends at the first line of anything else."""
    headers: list[str] = []
    in_comment = False
    for raw in source.splitlines():
        line = raw.strip()
        if in_comment:
            in_comment = "*/" not in line
            if not in_comment and line.split("*/", 1)[1].strip():
                break
            continue
        if not line or line.startswith("//"):
            continue
        if line.startswith("/*"):
            if "*/" not in line:
                in_comment = True
            elif line.split("*/", 1)[1].strip():
                break
            continue
        match = _INCLUDE.fullmatch(line)
        if match is None:
            break
        header = match.group(1).strip()
        if header.startswith(_TORCH_HEADER) and not header.startswith(_NOT_IN_PRELUDE):
            if header not in headers:
                headers.append(header)
    return headers


def _ninja_value(text: str) -> str:
    """Undo ninja's escaping of a variable's value."""
    return re.sub(r"\$([$ :\n])", r"\1", text)


def _variables(ninja: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in ninja.splitlines():
        if line.startswith(("rule ", "build ")):
            break
        match = re.fullmatch(r"(\w+) = ?(.*)", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


@functools.lru_cache(maxsize=8)
def _gcc_identity(cxx: str) -> str | None:
    """The first line of `cxx --version` when cxx is gcc (PCHs here are gcc's format), else None."""
    try:
        out = subprocess.run(
            [*shlex.split(cxx), "--version"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    if "Free Software Foundation" not in out:
        return None
    return out.splitlines()[0].strip()


def prepare(build_directory: Path, root: Path, toolchain: list[str], cached: bool) -> str:
    """Point this build's C++ compile at a PCH of its torch headers, making the PCH if needed.

    Called just before torch runs ninja in `build_directory`. Returns a line for the build log
    ('' when nothing was done). Never raises for a PCH problem: the build then goes on without."""
    ninja_file = build_directory / "build.ninja"
    applied_file = build_directory / APPLIED
    try:
        ninja = ninja_file.read_text()
    except OSError:
        return ""
    if cached:  # ninja must see the command it built with, or it would compile again
        if applied_file.exists():
            _set_cflags(ninja_file, ninja, applied_file.read_text().strip())
        return ""
    if not enabled():
        return ""
    variables = _variables(ninja)
    sources = re.findall(r"^build [^:\n]+: compile (.+)$", ninja, re.MULTILINE)
    if len(sources) != 1 or "cflags" not in variables:
        return ""
    try:
        headers = leading_torch_headers(Path(_ninja_value(sources[0].strip())).read_text())
    except OSError:
        return ""
    cxx = _ninja_value(variables.get("cxx", "c++")).strip() or "c++"
    identity = _gcc_identity(cxx)
    if not headers or identity is None:
        return ""
    cflags = _ninja_value(variables["cflags"])
    flags = re.sub(r"\s*-DTORCH_EXTENSION_NAME=\S+", "", cflags).strip()
    post = _ninja_value(variables.get("post_cflags", "")).strip()
    folder = root / "pch" / _key(toolchain, identity, cxx, flags, post, headers)
    if re.search(r"[\s$]", str(folder)):  # it goes into build.ninja unquoted, unescaped
        return f"precompiled header not used: its folder {folder} has a space or '$'"
    state = _state(folder)
    if state is None:  # the CLI makes it after this build, from the recipe (see the docstring)
        recipe = {"toolchain": toolchain, "cxx": cxx, "flags": flags, "post": post}
        (build_directory / RECIPE).write_text(json.dumps({**recipe, "headers": headers}))
        return "precompiled header not made yet: kernelwright makes it for the next builds"
    if state:
        return f"precompiled header not used: {state}"
    line = f"{variables['cflags']} -isystem {folder} -include {PRELUDE} -Winvalid-pch"
    _set_cflags(ninja_file, ninja, line)
    applied_file.write_text(line + "\n")
    return f"precompiled header {folder} (reused): {', '.join(headers)}"


def _key(
    toolchain: list[str], identity: str, cxx: str, flags: str, post: str, headers: list[str]
) -> str:
    text = json.dumps([toolchain, identity, cxx, flags, post, headers])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _state(folder: Path) -> str | None:
    """None: no PCH made yet; '': a good one; else why it could not be made."""
    try:
        state = (folder / MARKER).read_text()
    except OSError:
        return None
    return "" if state.startswith("ok") else state.strip()


def make_requested(build_dirs: list[Path], root: Path, include_dirs: list[Path]) -> list[str]:
    """In the CLI, after builds: make the PCHs their recipes ask for, where each recipe is one
    torch would write (`_checked_recipe`). Returns a line per recipe for the log."""
    notes = []
    for build_dir in build_dirs:
        try:  # a PCH this build used counts as recently used: not evicted (workers cannot touch)
            used = re.search(r"-isystem (\S+) -include", (Path(build_dir) / APPLIED).read_text())
            if used and Path(used.group(1)).parent == root / "pch":
                os.utime(Path(used.group(1)) / MARKER)
        except OSError:
            pass
        path = Path(build_dir) / RECIPE
        try:
            recipe = json.loads(path.read_text())
            path.unlink()
        except (OSError, ValueError):
            continue
        problem = _checked_recipe(recipe, include_dirs)
        if problem:
            notes.append(f"precompiled header not made: {problem}")
            continue
        identity = _gcc_identity(recipe["cxx"])
        if identity is None:
            continue
        parts = [recipe[k] for k in ("cxx", "flags", "post", "headers")]
        folder = root / "pch" / _key(recipe["toolchain"], identity, *parts)
        started = time.perf_counter()
        made, problem = _ensure(folder, *parts)
        if made:
            notes.append(
                f"precompiled header {folder} made in {time.perf_counter() - started:.1f} s"
            )
        elif problem:
            notes.append(f"precompiled header not made: {problem}")
    return notes


_HEADER = re.compile(r"(?:torch|ATen|c10)/[A-Za-z0-9_]+(?:/[A-Za-z0-9_]+)*\.h")
# Flags torch writes for a C++ extension, and the harmless ones a candidate adds; anything else
# (-fplugin, -Wl,..., -include, -specs, quoting tricks) means no PCH for that recipe.
_FLAG = re.compile(
    r"-D[A-Za-z_]\w*(?:=(?:[\w.+-]*|\"[\w.+-]*\"))?|-U[A-Za-z_]\w*|-std=(?:c|gnu)\+\+\w+"
    r"|-O[0-3sgz]?|-Ofast|-g[0-3]?|-w|-pthread|-pipe|-m[\w=.+-]+|-W(?![lap],)[\w=+-]*"
    r"|-f(?!plugin|profile|dump|lto|opt-info|stack-usage|callgraph|record|save|auto-profile"
    r"|spec)[\w=.+-]+"
)


def _checked_recipe(recipe: Any, include_dirs: list[Path]) -> str:
    """'' for a recipe torch itself could have written here, else what is wrong with it."""
    if not isinstance(recipe, dict):
        return "a malformed recipe"
    headers, cxx = recipe.get("headers"), recipe.get("cxx")
    if not isinstance(headers, list) or not headers:
        return "a recipe without headers"
    if not all(isinstance(h, str) and _HEADER.fullmatch(h) for h in headers):
        return "a header outside torch's"
    if cxx != os.environ.get("CXX", "c++"):
        return f"a compiler other than torch's ({cxx!r})"
    if not isinstance(recipe.get("toolchain"), list):
        return "a recipe without its toolchain"
    roots = [Path(d).resolve() for d in include_dirs]
    for part in ("flags", "post"):
        text = recipe.get(part)
        if not isinstance(text, str):
            return f"a recipe without {part}"
        try:
            words = shlex.split(text)
        except ValueError:
            return f"unbalanced quotes in its {part}"
        while words:
            word = words.pop(0)
            folder = None
            if word in ("-isystem", "-I"):
                folder = words.pop(0) if words else ""
            elif word.startswith(("-isystem", "-I")):
                folder = word.removeprefix("-isystem").removeprefix("-I")
            if folder is not None:
                resolved = Path(folder).resolve()
                if not any(resolved == r or r in resolved.parents for r in roots):
                    return f"an include folder outside torch's, Python's and CUDA's ({folder})"
            elif not _FLAG.fullmatch(word):
                return f"a flag kernelwright does not precompile with ({word})"
    return ""


def _set_cflags(ninja_file: Path, ninja: str, line: str) -> None:
    text = re.sub(r"^cflags = ?.*$", lambda _: f"cflags = {line}", ninja, count=1, flags=re.M)
    if text != ninja:
        ninja_file.write_text(text)


def _ensure(folder: Path, cxx: str, flags: str, post: str, headers: list[str]) -> tuple[bool, str]:
    """Make the PCH in `folder` unless it exists. Returns (made now, problem or '')."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    marker = folder / MARKER
    with open(folder.parent / f"{folder.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            state = marker.read_text()
            os.utime(marker)  # recently used: not evicted
            return False, "" if state.startswith("ok") else state.strip()
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        prelude = folder / PRELUDE
        prelude.write_text("".join(f"#include <{h}>\n" for h in headers))
        partial = folder / f"{PRELUDE}.gch.partial"
        command = [*shlex.split(cxx), *shlex.split(flags), "-x", "c++-header", str(prelude)]
        command += ["-o", str(partial), *shlex.split(post)]
        try:
            proc = run_tracked(command, MAKE_TIMEOUT_S)  # Ctrl-C of a run ends it too
            ok = proc.returncode == 0 and partial.exists()
            problem = "" if ok else f"gcc could not precompile it: {proc.stderr.strip()[-300:]}"
        except subprocess.TimeoutExpired:
            ok, problem = False, f"precompiling took over {MAKE_TIMEOUT_S:.0f} s"
            proc = None
        if proc is not None and proc.returncode < 0:  # killed (Ctrl-C): not gcc's verdict
            shutil.rmtree(folder, ignore_errors=True)
            return False, "interrupted"
        if ok:
            os.replace(partial, folder / f"{PRELUDE}.gch")
        else:
            partial.unlink(missing_ok=True)
        # A failure is remembered too, so later builds with these flags do not retry it.
        marker.write_text("ok\n" if ok else f"{problem}\n")
    _evict(folder.parent, keep=folder)
    return ok, problem


def _evict(pch_root: Path, keep: Path) -> None:
    """Delete the oldest PCHs beyond KEEP, never one used in the last EVICT_AFTER_S seconds."""
    entries = []
    for folder in pch_root.iterdir():
        marker = folder / MARKER
        if folder.is_dir() and folder != keep and marker.exists():
            entries.append((marker.stat().st_mtime, folder))
    entries.sort(reverse=True)
    now = time.time()
    for mtime, folder in entries[KEEP - 1 :]:
        if now - mtime > EVICT_AFTER_S:
            with open(pch_root / f"{folder.name}.lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                shutil.rmtree(folder, ignore_errors=True)
