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

import importlib
import importlib.util
import json
import os
import re
import shlex
import struct
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from kernelwright.compiler import pch, seal
from kernelwright.runner.isolation import kill_tree

SYMBOLS = "native_symbols"
PREPROCESSED = "native_preprocessed"
AUDIT_VERSION = "1"  # a passing record of another version is not trusted: the rules changed
PREPROCESS_TIMEOUT_S = 120.0

PROCESS = "process control"
SIGNALS = "signals and timers"
THREADS = "threads"
SOCKETS = "sockets"
LOADER = "dynamic loading"
MEMORY = "memory protection and allocator tuning"
ENVIRONMENT = "the environment"
SYSCALL = "raw system calls"
HOOKS = "process-wide hooks"

# C symbols an extension may not import: name -> category (the reason's wording).
# OpenMP's GOMP_*/__kmpc_fork_* are not here: a plain `#pragma omp` runs on the one runtime torch
# loaded (libgomp.so.1 is matched by soname), in the pool size torch set for the worker; what
# changes that size (`omp_set_num_threads`, a `num_threads` clause: the preprocessed scan) is.
DENIED_SYMBOLS: dict[str, str] = {
    **dict.fromkeys(
        "fork vfork _Fork __libc_fork clone clone3 __clone execve execv execvp execvpe execl"
        " execlp execle fexecve execveat posix_spawn posix_spawnp system popen daemon kill"
        " killpg tgkill tkill pidfd_send_signal ptrace prctl process_vm_readv process_vm_writev"
        " unshare setns".split(),
        PROCESS,
    ),
    **dict.fromkeys(
        "signal sigaction __sysv_signal sysv_signal bsd_signal sigset sigqueue raise"
        " pthread_kill pthread_sigqueue sigprocmask pthread_sigmask setitimer alarm ualarm"
        " timer_create timer_settime timerfd_create signalfd".split(),
        SIGNALS,
    ),
    **dict.fromkeys(
        "pthread_create thrd_create omp_set_num_threads __kmpc_push_num_threads".split(), THREADS
    ),
    **dict.fromkeys(
        "socket socketpair connect bind listen accept accept4 sendto sendmsg recvfrom recvmsg"
        " getaddrinfo gethostbyname gethostbyname2 gethostbyname_r".split(),
        SOCKETS,
    ),
    **dict.fromkeys(
        "dlopen dlmopen dlsym dlvsym dladdr dladdr1 dlinfo __libc_dlopen_mode __libc_dlsym"
        " __libc_dlvsym _dl_sym dl_iterate_phdr _dl_find_object _r_debug".split(),
        LOADER,
    ),
    **dict.fromkeys("mprotect pkey_mprotect mallopt".split(), MEMORY),
    **dict.fromkeys("setenv putenv unsetenv clearenv".split(), ENVIRONMENT),
    "syscall": SYSCALL,
}

# C++ entry points (as `nm -C` demangles them) that start threads or install process-wide hooks
# (`std::thread` and `std::async` start theirs in libstdc++, so only this import shows them).
DENIED_CXX: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"std::thread::_M_start_thread\b"), THREADS),
    (
        re.compile(r"at::(?:launch|intraop_launch\w*|set_num_threads|set_num_interop_threads)\("),
        THREADS,
    ),
    (re.compile(r"c10::ThreadPool::ThreadPool\("), THREADS),
    (re.compile(r"c10::Set(?:CPU)?Allocator\("), HOOKS),
    (re.compile(r"at::(?:add|remove)(?:Global|ThreadLocal)Callback\("), HOOKS),
]

# The libraries an extension may link (DT_NEEDED): the C and C++ runtimes, OpenMP, torch's,
# Python's and CUDA's (torch's wheels add an 8-hex-digit hash to the ones they bundle).
LINKABLE = re.compile(
    r"lib(?:c|m|mvec|dl|rt|pthread|gcc_s|stdc\+\+|atomic|gomp|omp|iomp5|shm|c10\w*|torch\w*"
    r"|python3[\w.]*|cuda|cudart|cublas\w*|cudnn\w*|cufft\w*|curand|cusparse\w*|cusolver\w*"
    r"|nvrtc\w*|nvToolsExt|nvJitLink|cupti|nccl|nvidia-ml)(?:-[0-9a-f]{8})?\.so(?:\.[\d.]+)?"
    r"|ld-linux[\w.-]*\.so\.\d+"
)

# Rules that may also read what system headers' macros put on the candidate's lines: all but
# these (pybind's PYBIND11_MODULE expands to Python API calls by design).
_MACRO_NOISY = {"python_from_native"}
_RULES_MODULE = "kernelwright.verifier.native_checks"


@dataclass(frozen=True)
class Refusal:
    check: str
    reason: str  # one line, naming the symbol, instruction or rule and where

    def line(self) -> str:
        return f"rejected by {self.check}: {self.reason}"


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
    """native_checks, reached by name: its rules belong to the verifier, which imports this
    package, and a compiler module may not import the verifier (tests/test_import_lines.py)."""
    return importlib.import_module(_RULES_MODULE)


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


@lru_cache(maxsize=1)
def _cuda_home() -> str:
    """The CUDA toolkit's folder ('' without one): the first of CUDA_HOME, CUDA_PATH, nvcc's
    and /usr/local/cuda* that holds the runtime's headers (nvcc may be a wrapper script)."""
    from kernelwright.compiler.precheck_run import find_nvcc

    nvcc = find_nvcc()
    guesses = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    guesses += [str(Path(nvcc).resolve().parent.parent)] if nvcc else []
    guesses += sorted((str(p) for p in Path("/usr/local").glob("cuda*")), reverse=True)
    for guess in guesses:
        if guess and (Path(guess) / "include" / "cuda_runtime_api.h").is_file():
            return os.path.realpath(guess)
    return ""


def _torch_root() -> str:
    spec = importlib.util.find_spec("torch")
    return str(Path(spec.origin).parent) if spec and spec.origin else ""


def _under(path: str, roots: tuple[str, ...] | list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


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


# --- helpers --------------------------------------------------------------------------------


def _run(
    command: list[str], timeout_s: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str] | None:
    """Run a trusted tool (output decoded with replacement); None when it could not start or
    ran past `timeout_s` (its whole tree is killed: cc1plus runs under g++)."""
    try:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError:
        return None
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        proc.communicate()
        return None
    return subprocess.CompletedProcess(
        command, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    )


def _first_line(proc: subprocess.CompletedProcess[str] | None) -> str:
    if proc is None:
        return "the tool is missing or did not answer"
    lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    return lines[0][:200] if lines else f"exit {proc.returncode}"


__all__ = [
    "AuditReport",
    "Refusal",
    "audit_build",
    "audit_library",
    "denied_import",
    "own_lines",
    "scan_preprocessed",
    "scan_unit",
    "syscall_instruction",
]
