"""`native_symbols`: what a built library imports, links and executes (see compiler/audit.py)."""

from __future__ import annotations

import os
import re
import struct
from functools import lru_cache
from pathlib import Path

from kernelwright.compiler.audit_rules import (
    DENIED_CXX,
    DENIED_SYMBOLS,
    LINKABLE,
    SYMBOLS,
    Refusal,
    _cuda_home,
    _first_line,
    _run,
    _torch_root,
    _under,
)

# --- native_symbols -------------------------------------------------------------------------


def audit_library(library: Path) -> Refusal | None:
    """The first reason to refuse one shared library, or None."""
    name = library.name
    try:
        symbols = imported_symbols(library)
        needed, run_paths = linked_libraries(library)
    except AuditError as exc:
        return Refusal(SYMBOLS, f"cannot read {name}: {exc}")
    denied = denied_import(symbols)
    if denied:
        return Refusal(SYMBOLS, f"{name} imports `{denied[0]}` ({denied[1]})")
    foreign = foreign_library(needed, run_paths, library.parent)
    if foreign:
        return Refusal(SYMBOLS, f"{name} {foreign}")
    found = syscall_instruction(library)
    if found:
        return Refusal(SYMBOLS, f"{name} {found}")
    return None


class AuditError(RuntimeError):
    """A library the tools cannot read (no loadable extension is like that)."""


def imported_symbols(library: Path) -> list[str]:
    """The dynamic symbols `library` imports (undefined and weak undefined), C++ demangled,
    without their version suffix."""
    proc = _run(["nm", "-D", "--undefined-only", "-C", str(library)], 30.0)
    if proc is None or proc.returncode != 0:
        raise AuditError(f"nm -D failed ({_first_line(proc)})")
    found = []
    for line in proc.stdout.splitlines():
        match = re.fullmatch(r"\s*[UwvV]\s+(.+?)\s*", line)
        if match:
            found.append(re.sub(r"@{1,2}[A-Za-z_][\w.]*$", "", match.group(1)))
    return found


def denied_import(symbols: list[str]) -> tuple[str, str] | None:
    """(symbol, category) of the first import in the deny tables."""
    for symbol in symbols:
        if symbol in DENIED_SYMBOLS:
            return symbol, DENIED_SYMBOLS[symbol]
        for pattern, category in DENIED_CXX:
            if pattern.match(symbol):
                return symbol, category
    return None


def linked_libraries(library: Path) -> tuple[list[str], list[str]]:
    """(DT_NEEDED names, RPATH/RUNPATH entries) from `readelf -d`."""
    proc = _run(["readelf", "-dW", str(library)], 30.0)
    if proc is None or proc.returncode != 0:
        raise AuditError(f"readelf -d failed ({_first_line(proc)})")
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.*)\]", proc.stdout)
    paths = re.findall(r"\((?:RPATH|RUNPATH)\)\s+Library r(?:un)?path: \[(.*)\]", proc.stdout)
    return needed, [p for entry in paths for p in entry.split(":") if p]


def foreign_library(needed: list[str], run_paths: list[str], origin: Path) -> str:
    """What links the library beyond the toolchain: '' when nothing does."""
    for name in needed:
        if not LINKABLE.fullmatch(name):
            return f"links {name}, a library outside the C, C++, OpenMP, torch and CUDA runtimes"
    roots = [*_library_roots()]
    for entry in run_paths:
        folder = os.path.realpath(entry.replace("$ORIGIN", str(origin)).replace("${ORIGIN}", ""))
        if not _under(folder, roots):
            return f"looks for libraries in {entry} (a run path outside the system's and torch's)"
    return ""


@lru_cache(maxsize=1)
def _library_roots() -> tuple[str, ...]:
    roots = ["/lib", "/lib64", "/usr/lib", "/usr/lib64"]
    torch = _torch_root()
    if torch:
        roots.append(os.path.join(torch, "lib"))
    cuda = _cuda_home()
    if cuda:
        roots.append(cuda)
    return tuple(os.path.realpath(r) for r in roots)


_X86_64, _AARCH64 = 62, 183
_X86_SYSCALL = re.compile(rb"\x0f\x05|\x0f\x34|\xcd\x80")  # syscall, sysenter, int 0x80
# svc #imm16 is 0xd4000001 | imm16 << 5, little-endian
_AARCH64_SVC = re.compile(rb"(?=[\x01\x21\x41\x61\x81\xa1\xc1\xe1].[\x00-\x1f]\xd4)", re.S)


def syscall_instruction(library: Path) -> str:
    """Where `library`'s code executes a system call instruction itself; '' when it does not."""
    try:
        data = library.read_bytes()
        machine, regions = _code_regions(data)
    except (OSError, struct.error, ValueError) as exc:
        return f"cannot be read as an ELF library ({exc})"
    if machine == _AARCH64:  # fixed-width, aligned: every `svc #imm` word is one
        for start, size in regions:
            for match in _AARCH64_SVC.finditer(data, start, start + size):
                if (match.start() - start) % 4 == 0:
                    return f"executes `svc` (a system call) at file offset {match.start():#x}"
        return ""
    if machine != _X86_64:
        return ""
    hits = [
        start + m.start()
        for start, size in regions
        for m in _X86_SYSCALL.finditer(data, start, start + size)
    ]
    if not hits:
        return ""
    # The bytes also occur inside other instructions (a displacement of 0x50f): what a
    # disassembly decodes as the instruction decides.
    proc = _run(["objdump", "-d", "--no-show-raw-insn", "-w", str(library)], 60.0)
    if proc is None or proc.returncode != 0:
        return (
            f"has system call bytes in its code at {hits[0]:#x} and objdump could not decode them"
        )
    function = "?"
    for line in proc.stdout.splitlines():
        header = re.match(r"[0-9a-f]+ <(.+)>:$", line)
        if header:
            function = header.group(1)
        elif re.match(r"\s*[0-9a-f]+:\s+(?:syscall|sysenter|int\s+\$0x80)\b", line):
            instruction = line.split(":", 1)[1].strip()
            return f"executes `{instruction}` (a system call) in {function}"
    return ""


def _code_regions(data: bytes) -> tuple[int, list[tuple[int, int]]]:
    """(machine, [(file offset, size)] of the executable sections, or of the executable
    segments where the file has no section headers)."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    (machine,) = struct.unpack_from("<H", data, 18)
    phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 0x36)
    sections = []
    for i in range(shnum if shoff else 0):
        _, kind, flags, _, offset, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        if flags & 0x4 and kind != 8:  # SHF_EXECINSTR, not SHT_NOBITS
            sections.append((offset, min(size, max(0, len(data) - offset))))
    if sections:
        return machine, sections
    segments = []
    for i in range(phnum):
        kind, flags, offset, _, _, size = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if kind == 1 and flags & 0x1:  # PT_LOAD, PF_X
            segments.append((offset, min(size, max(0, len(data) - offset))))
    return machine, segments
