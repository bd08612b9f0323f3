"""Read what a build made as the compiler and the loader read it, in the parent (issue 21).

The build worker ran candidate code, so what it reports and the text rules of the static checks
(which read the candidate's Python file) are not the last word on the native code. After a build
succeeds, `build.py` calls `audit_build` here, in the CLI process; a refusal makes the build
`rejected` with the check's name and one line naming what fired:

- `native_symbols`: every shared library on the candidate's shelf (the folders the build reports,
  as `seal.record` seals them, and any other `.so` there) is read with `nm -D`: an import named in
  `DENIED_SYMBOLS` (process and signal control, threads, sockets, dynamic loading, `mprotect`,
  `mallopt`, the environment, raw `syscall`; a small table of C++ entry points besides) is
  refused, whatever the source looked like; so are libraries linked beyond the toolchain's
  (`LINKABLE`), a run path outside the system's, torch's and CUDA's folders, and the `syscall`
  instruction itself in the library's code (it needs no import): the executable sections are
  searched for its bytes (`sysenter`, `int 0x80` too; `svc` on aarch64), and a hit is confirmed
  by `objdump -d`, since those bytes also occur inside other instructions.
- `native_preprocessed`: each source of each build folder (from torch's `build.ninja`) is run
  through the preprocessor (`c++ -E`, `nvcc -E` for `.cu`) with the build's include folders and
  defines (only flags that cannot run anything: never `-fplugin`, `-specs`, `-Wp,`, `-Xcompiler`,
  `-ccbin`); the lines the preprocessor attributes to files outside the trusted include folders
  (torch's, Python's, CUDA's, the compiler's own, the precompiled headers') are what the
  candidate wrote, with its macros expanded, its `_Pragma`s as `#pragma` lines and the headers it
  includes named. native_checks' rules run over that text (character literals made `0` first,
  so `'"'` opens no string), so token pasting, a macro include, `_Pragma("omp ...")`, a `'"'`
  literal, or C++ joined or decoded by Python at import time hide nothing from them. Macro
  expansions of system headers on the candidate's lines are left out for all rules but those in
  `_MACRO_SAFE` (pybind's own macros reach Python objects). A `#line` or GNU line-marker
  directive in the candidate's files (which would make the attribution lie) is refused.

What this does not see, and why it is enough to pre-screen: sources are read as they lie in the
build folder after the build, and the build worker could rewrite them (or delete the temporary
sources of a `load()`, which honest code does too: those are noted and skipped), and a flag left
out of the preprocessing could pick another `#if` branch; the libraries themselves are what the
symbol and instruction audits read, and a process-level sandbox with a syscall filter is what
holds at run time (a library can still find `fork` by walking memory from an address it has).
Device code (`__CUDA_ARCH__` branches) is not preprocessed: it cannot call host functions.

Cost: nm, readelf and the ELF scan take a few tens of milliseconds per library; preprocessing
torch's headers takes seconds, so it runs once per sealed build: a folder whose libraries still
match the seal its passing audit was recorded against (`seals/<shelf>/<folder>.audit.json`, where
workers cannot write) is not preprocessed again.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelwright.compiler import seal
from kernelwright.compiler.audit_rules import AUDIT_VERSION, Refusal
from kernelwright.compiler.preprocessed import _scan_folders
from kernelwright.compiler.symbols import audit_library


@dataclass
class AuditReport:
    refusal: Refusal | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def log(self) -> str:
        lines = [*self.notes, f"native audit: {self.seconds:.2f} s"]
        if self.refusal is not None:
            lines.append(self.refusal.line())
        return "".join(f"[kernelwright] {line}\n" for line in lines)


def audit_build(shelf: Path, builds: list[dict[str, Any]]) -> AuditReport:
    """Audit what a successful build left on the candidate's `shelf` (parent side only)."""
    started = time.perf_counter()
    report = AuditReport()
    folders = _reported_folders(shelf, builds)
    libraries = sorted(
        p
        for p in shelf.rglob("*.so*")
        if (p.name.endswith(".so") or ".so." in p.name) and p.is_file() and not p.is_symlink()
    )
    for library in libraries:
        report.refusal = audit_library(library)
        if report.refusal:
            break
    pending = [f for f in folders if not _recorded(f)]
    if report.refusal is None and pending:
        refusals = _scan_folders(pending, report.notes)
        report.refusal = next((r for r in refusals if r is not None), None)
        for folder, refusal in zip(pending, refusals, strict=True):
            if refusal is None:
                _record(folder)
    elif folders and not pending:
        report.notes.append("preprocessed scan: passed at this build's seal, not repeated")
    report.seconds = time.perf_counter() - started
    return report


def _reported_folders(shelf: Path, builds: list[dict[str, Any]]) -> list[Path]:
    keys = [str(b.get("key")) for b in builds if re.fullmatch(r"[0-9a-f]+", str(b.get("key")))]
    return sorted({f for key in keys for f in shelf.glob(f"*-{key}") if f.is_dir()})


# --- the record of a passing scan, beside the build's seal ----------------------------------


def _record_file(folder: Path) -> Path:
    shelf = folder.parent  # as seal.py's seal: $KERNELWRIGHT_HOME/seals/<shelf>/<folder>.json
    return shelf.parent.parent / seal.SEALS / shelf.name / f"{folder.name}.audit.json"


def _seal_text(folder: Path) -> str | None:
    try:
        return (_record_file(folder).with_name(f"{folder.name}.json")).read_text()
    except OSError:
        return None


def _recorded(folder: Path) -> bool:
    """Whether the preprocessed scan passed for this folder's sealed libraries already."""
    current = _seal_text(folder)
    try:
        record = json.loads(_record_file(folder).read_text())
    except (OSError, ValueError):
        return False
    return (
        current is not None
        and isinstance(record, dict)
        and record == {"version": AUDIT_VERSION, "seal": current}
        and seal.intact(folder)
    )


def _record(folder: Path) -> None:
    current = _seal_text(folder)
    if current is None:
        return
    target = _record_file(folder)
    partial = target.with_suffix(".partial")
    try:
        partial.write_text(json.dumps({"version": AUDIT_VERSION, "seal": current}))
        os.replace(partial, target)
    except OSError:
        pass  # the scan runs again next time
