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

PCHs live in `<builds>/pch/<key>/`, made under an exclusive `flock` (concurrent builders of the
same key wait for the first), and at most `KEEP` of them are kept (each is about 300 MB).
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

PRELUDE = "kernelwright_pch_prelude.h"
MARKER = ".kw-complete"
APPLIED = ".kw-pch"  # in a build directory: the cflags line used, re-applied on cache hits
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
    key_text = json.dumps([toolchain, identity, cxx, flags, post, headers])
    key = hashlib.sha256(key_text.encode()).hexdigest()[:20]
    folder = root / "pch" / key
    if re.search(r"[\s$]", str(folder)):  # it goes into build.ninja unquoted, unescaped
        return f"precompiled header not used: its folder {folder} has a space or '$'"
    started = time.perf_counter()
    made, problem = _ensure(folder, cxx, flags, post, headers)
    if problem:
        return f"precompiled header not used: {problem}"
    line = f"{variables['cflags']} -isystem {folder} -include {PRELUDE} -Winvalid-pch"
    _set_cflags(ninja_file, ninja, line)
    applied_file.write_text(line + "\n")
    what = f"made in {time.perf_counter() - started:.1f} s" if made else "reused"
    return f"precompiled header {folder} ({what}): {', '.join(headers)}"


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
        command = (
            f"{cxx} {flags} -x c++-header {shlex.quote(str(prelude))} "
            f"-o {shlex.quote(str(partial))} {post}"
        )
        try:
            proc = subprocess.run(
                command, shell=True, capture_output=True, text=True, timeout=MAKE_TIMEOUT_S
            )
            ok = proc.returncode == 0 and partial.exists()
            problem = "" if ok else f"gcc could not precompile it: {proc.stderr.strip()[-300:]}"
        except subprocess.TimeoutExpired:
            ok, problem = False, f"precompiling took over {MAKE_TIMEOUT_S:.0f} s"
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
