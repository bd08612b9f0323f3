"""compiler/audit.py: what a build made, read as the compiler and the loader read it (issue 21).

No torch extension is built here: tiny libraries are compiled with the system compiler, and
sources are preprocessed as the audit preprocesses a build folder's. Each hiding trick of issue
21 (token pasting, a macro include, `_Pragma("omp ...")`, a `'"'` literal, C++ decoded or joined
in Python) is caught by the preprocessed scan or the symbol audit; honest code passes both.
"""

from __future__ import annotations

import json
import platform
import re
import runpy
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
from kernelwright.compiler import audit, audit_rules, build, preprocessed, seal, symbols
from kernelwright.compiler.native_checks import native_findings
from kernelwright.compiler.precheck_run import system_includes
from kernelwright.records import Status

FIXTURES = Path(__file__).parent / "fixtures" / "native_audit"
SUITE = Path(__file__).resolve().parent.parent / "core" / "suite" / "cpu"
X86_64 = platform.machine() in ("x86_64", "AMD64")

needs_gcc = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("g++", "nm", "readelf", "objdump")),
    reason="needs g++ and binutils",
)


def _library(tmp_path: Path, source: Path | str, name: str = "ext", *extra: str) -> Path:
    """A shared library compiled from a fixture (or source text) with g++."""
    if isinstance(source, str):
        path = tmp_path / f"{name}.cpp"
        path.write_text(source)
        source = path
    out = tmp_path / f"{name}.so"
    cmd = ["g++", "-shared", "-fPIC", "-O2", str(source), "-o", str(out), *extra]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


def _scan(
    tmp_path: Path, source: Path | str, flags: tuple[str, ...] = ()
) -> audit_rules.Refusal | None:
    """The preprocessed scan of one source as it would lie in a build folder."""
    folder = tmp_path / "kw_ext-abc123"
    folder.mkdir(exist_ok=True)
    main = folder / "main.cpp"
    if isinstance(source, Path):
        for sibling in source.parent.glob("*.h"):
            shutil.copy(sibling, folder / sibling.name)
        source = source.read_text()
    main.write_text(source)
    return preprocessed.scan_unit(preprocessed.Unit(main, False, flags, True), folder)


# --- the symbol audit -----------------------------------------------------------------------


@needs_gcc
def test_an_honest_library_passes(tmp_path):
    assert symbols.audit_library(_library(tmp_path, FIXTURES / "honest.cpp")) is None


@needs_gcc
def test_a_pasted_fork_is_an_import_whatever_the_source_looked_like(tmp_path):
    library = _library(
        tmp_path, "#include <unistd.h>\n#define P(a, b) a##b\nint g() { return P(fo, rk)(); }\n"
    )
    refusal = symbols.audit_library(library)
    assert refusal == audit_rules.Refusal(
        "native_symbols", "ext.so imports `fork` (process control)"
    )
    assert refusal.line() == "rejected by native_symbols: ext.so imports `fork` (process control)"


@needs_gcc
@pytest.mark.parametrize(
    ("code", "symbol"),
    [
        ('#include <dlfcn.h>\nvoid* f() { return dlsym(RTLD_DEFAULT, "x"); }', "dlsym"),
        ("#include <sys/mman.h>\nint f(void* p) { return mprotect(p, 4096, 7); }", "mprotect"),
        ('#include <cstdlib>\nint f() { return setenv("A", "1", 1); }', "setenv"),
        ("#include <csignal>\nvoid h(int) {}\nvoid f() { std::signal(14, h); }", "signal"),
        ("#include <sys/socket.h>\nint f() { return socket(2, 1, 0); }", "socket"),
        ("#include <unistd.h>\nlong f() { return syscall(39); }", "syscall"),
    ],
)
def test_each_denied_import_is_refused(tmp_path, code, symbol):
    refusal = symbols.audit_library(_library(tmp_path, code))
    assert refusal is not None and f"`{symbol}`" in refusal.reason


@needs_gcc
def test_std_thread_shows_only_as_an_import(tmp_path):
    refusal = symbols.audit_library(_library(tmp_path, FIXTURES / "thread_start.cpp"))
    assert refusal is not None and "std::thread::_M_start_thread" in refusal.reason
    assert "(threads)" in refusal.reason


@needs_gcc
@pytest.mark.skipif(not X86_64, reason="x86-64 inline assembly")
def test_the_syscall_instruction_needs_no_import(tmp_path):
    library = _library(tmp_path, FIXTURES / "raw_syscall.cpp")
    assert symbols.denied_import(symbols.imported_symbols(library)) is None
    refusal = symbols.audit_library(library)
    assert refusal is not None and "`syscall`" in refusal.reason and "my_getpid" in refusal.reason


@needs_gcc
@pytest.mark.skipif(not X86_64, reason="x86-64 encoding")
def test_syscall_bytes_inside_another_instruction_are_not_one(tmp_path):
    library = _library(tmp_path, FIXTURES / "honest.cpp")  # mov $0x50f, %eax: b8 0f 05 00 00
    _, regions = symbols._code_regions(library.read_bytes())
    data = library.read_bytes()
    assert any(data.find(b"\x0f\x05", start, start + size) >= 0 for start, size in regions)
    assert symbols.syscall_instruction(library) == ""


@needs_gcc
def test_a_library_linked_beyond_the_toolchain_is_refused(tmp_path):
    side = _library(
        tmp_path, '#include <unistd.h>\nextern "C" int helper() { return fork(); }', "libhidden"
    )
    code = 'extern "C" int helper();\nint f() { return helper(); }'
    library = _library(tmp_path, code, "ext", f"-L{tmp_path}", "-lhidden", f"-Wl,-rpath,{tmp_path}")
    assert side.exists() and symbols.denied_import(symbols.imported_symbols(library)) is None
    refusal = symbols.audit_library(library)
    assert refusal is not None and "links libhidden.so" in refusal.reason


def test_the_deny_table_is_data():
    assert audit_rules.DENIED_SYMBOLS["clone3"] == audit_rules.PROCESS
    assert audit_rules.DENIED_SYMBOLS["dl_iterate_phdr"] == audit_rules.LOADER
    assert audit_rules.DENIED_SYMBOLS["process_vm_writev"] == audit_rules.PROCESS
    assert (
        "GOMP_parallel" not in audit_rules.DENIED_SYMBOLS
    )  # a plain `#pragma omp` (see the module)
    assert symbols.denied_import(["memcpy", "at::internal::set_thread_num(int)", "tanhf"]) is None


# --- the preprocessed scan ------------------------------------------------------------------


@needs_gcc
@pytest.mark.parametrize(
    ("fixture", "rule"),
    [
        ("token_paste.cpp", "file_replay"),  # `syscall`
        ("macro_include.cpp", "file_replay"),  # `#include <sys/syscall.h>`
        ("pragma_omp.cpp", "threads"),  # `num_threads(8)`
        ("char_literal.cpp", "threads"),  # `fork(`
        ("system_header.cpp", "threads"),  # a candidate header marked a system header
    ],
)
def test_each_hiding_trick_is_caught_by_the_preprocessed_scan(tmp_path, fixture, rule):
    text = (FIXTURES / fixture).read_text()
    stripped = native_findings(_strip(text))
    assert not [f for f in stripped if f.check == rule and f.severity == "reject"], "not hidden"
    refusal = _scan(tmp_path, FIXTURES / fixture)
    assert refusal is not None and refusal.check == "native_preprocessed"
    assert refusal.reason.startswith(f"{rule}: ") and "main.cpp as preprocessed" in refusal.reason


def _strip(text: str) -> str:
    from kernelwright.compiler.native_checks import strip_comments

    return strip_comments(text)


@needs_gcc
def test_a_line_directive_cannot_hand_lines_to_a_system_header(tmp_path):
    refusal = _scan(tmp_path, FIXTURES / "line_directive.cpp")
    assert refusal is not None and "renames its lines (`#line 1" in refusal.reason


@needs_gcc
def test_cpp_decoded_or_joined_in_python_is_read_as_written(tmp_path):
    written = runpy.run_path(str(FIXTURES / "hidden_in_python.py"))["cpp_source"]
    python = (FIXTURES / "hidden_in_python.py").read_text()
    assert "fork" not in python and "socket(" not in python
    refusal = _scan(tmp_path, written)
    assert refusal is not None and refusal.reason.startswith(("threads: ", "network: "))
    refusal = symbols.audit_library(_library(tmp_path, written))
    assert refusal is not None and "imports `" in refusal.reason


@needs_gcc
def test_honest_source_passes_the_preprocessed_scan(tmp_path):
    assert _scan(tmp_path, FIXTURES / "honest.cpp") is None


def test_character_literals_become_numbers():
    text = "char q = '\"'; int n = 1'000; auto s = R\"(it's)\"; auto t = u8'x'; f(\"'\");"
    assert (
        preprocessed.neutral_chars(text)
        == 'char q = 0; int n = 1\'000; auto s = R"(it\'s)"; auto t = u80; f("\'");'
    )


def test_only_safe_preprocessing_flags_are_kept():
    line = (
        "-DTORCH_EXTENSION_NAME=x -isystem /opt/torch/include -I/src -fplugin=/evil.so -specs=x"
        " -Wp,-MD,y -Xcompiler -fplugin=z -ccbin /bin/evil -include pre.h -std=c++20 -O3 -fPIC"
        " -fopenmp -march=native --use_fast_math -o out"
    )
    assert preprocessed.safe_flags(line) == [
        "-DTORCH_EXTENSION_NAME=x", "-isystem", "/opt/torch/include", "-I", "/src",
        "-include", "pre.h", "-std=c++20", "-O3", "-fPIC", "-fopenmp", "-march=native",
        "--use_fast_math",
    ]  # fmt: skip


@needs_gcc
def test_the_shipped_cpu_candidates_pass_the_preprocessed_scan(tmp_path):
    """Their `cpp_source` as load_inline writes it (torch's include first, the pybind module
    last), preprocessed with torch's include folders."""
    flags = ("-DTORCH_EXTENSION_NAME=kw_suite", "-DTORCH_API_INCLUDE_EXTENSION_H", "-std=c++17")
    flags += tuple(w for folder in system_includes() for w in ("-isystem", folder))

    def scan(path: Path) -> audit_rules.Refusal | None:
        text = path.read_text()
        source = re.search(r'cpp_source = r"""(.*?)"""', text, re.S).group(1)
        names = re.search(r"functions=\[([^\]]*)\]", text).group(1)
        module = "".join(
            f'm.def("{n}", torch::wrap_pybind_function({n}), "{n}");\n'
            for n in re.findall(r'"(\w+)"', names)
        )
        pybind = f"PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {{\n{module}}}\n"
        main = f"#include <torch/extension.h>\n{source}\n{pybind}"
        folder = tmp_path / path.stem
        folder.mkdir()
        return _scan(folder, main, flags)

    candidates = sorted(SUITE.glob("[0-9]*.py"))
    assert len(candidates) >= 4
    with ThreadPoolExecutor(max_workers=len(candidates)) as pool:
        outcomes = dict(zip([c.name for c in candidates], pool.map(scan, candidates), strict=True))
    assert outcomes == {name: None for name in outcomes}


# --- audit_build and build.py ---------------------------------------------------------------


def _shelf(home: Path, code: str) -> tuple[Path, list[dict[str, object]]]:
    """A candidate's shelf with one build folder (source, library, seal) as a build leaves it."""
    shelf = home / "builds" / "0123456789abcdef0123"
    folder = shelf / "kw_ext-0123abcd"
    folder.mkdir(parents=True)
    (folder / "main.cpp").write_text(code)
    _ninja(folder)
    subprocess.run(
        ["g++", "-shared", "-fPIC", str(folder / "main.cpp"), "-o", str(folder / "kw_ext.so")],
        check=True,
        capture_output=True,
    )
    builds = [{"name": "kw_ext", "key": "0123abcd", "cached": False}]
    seal.record(shelf, builds)
    return shelf, builds


def _ninja(folder: Path) -> None:
    """The parts of torch's build.ninja the audit reads."""
    (folder / "build.ninja").write_text(
        "ninja_required_version = 1.3\ncxx = c++\n\ncflags = -DTORCH_EXTENSION_NAME=kw_ext"
        " -std=c++17 -fplugin=/nowhere.so\npost_cflags = \n\nrule compile\n"
        f"  command = $cxx $cflags -c $in -o $out\n\nbuild main.o: compile {folder}/main.cpp\n"
    )


@needs_gcc
def test_a_passing_audit_is_recorded_against_the_seal(tmp_path):
    shelf, builds = _shelf(tmp_path, "int twice(int x) { return 2 * x; }\n")
    first = audit.audit_build(shelf, builds)
    assert first.refusal is None and not first.notes
    record = tmp_path / "seals" / shelf.name / "kw_ext-0123abcd.audit.json"
    assert json.loads(record.read_text())["version"] == audit_rules.AUDIT_VERSION
    again = audit.audit_build(shelf, builds)
    assert again.refusal is None and "not repeated" in again.notes[0]
    (shelf / "kw_ext-0123abcd" / "kw_ext.so").write_bytes(b"changed")  # no longer the seal's
    assert not audit._recorded(shelf / "kw_ext-0123abcd")


@needs_gcc
def test_a_tampered_build_folder_is_refused(tmp_path):
    shelf, builds = _shelf(tmp_path, "int twice(int x) { return 2 * x; }\n")
    (shelf / "kw_ext-0123abcd" / "main.cpp").unlink()
    report = audit.audit_build(shelf, builds)
    assert report.refusal == audit_rules.Refusal(
        "native_preprocessed", "main.cpp, a source of the build, is gone from its folder"
    )
    (shelf / "kw_ext-0123abcd" / "build.ninja").unlink()
    report = audit.audit_build(shelf, builds)
    assert report.refusal is not None and "build.ninja is gone" in report.refusal.reason


class _FakeWorker:
    """What BuildJob needs of a build worker that reports success."""

    def __init__(self, module, scratch, deadline_s, writable):
        self.scratch, self.over_limit, self.sent = scratch, None, {}

    def send(self, request):
        self.sent = request

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def recv(self):
        shelf = Path(self.sent["builds_root"])
        builds = [{"name": "kw_ext", "key": "0123abcd", "cached": False}]
        return {
            "kind": "build", "ok": True, "traceback": "", "compile_s": 1.5, "cached": False,
            "key": "0123abcd", "builds": builds, "build_dir": str(shelf),
            "precheck_error": None, "precheck_s": None, "kernels": [], "nonce": self.sent["nonce"],
        }  # fmt: skip

    def finish(self):
        return SimpleNamespace(stdout="", stderr="", timed_out=False, describe=lambda: "exit 0")


@needs_gcc
def test_build_result_is_rejected_with_the_check_name(tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELWRIGHT_HOME", str(tmp_path))
    candidate = tmp_path / "candidate.py"
    candidate.write_text("# a candidate\n")
    from kernelwright import paths

    shelf = paths.shelf(candidate)
    folder = shelf / "kw_ext-0123abcd"
    folder.mkdir(parents=True)
    (folder / "main.cpp").write_text("#include <unistd.h>\nint f() { return fork(); }\n")
    _ninja(folder)
    subprocess.run(
        ["g++", "-shared", "-fPIC", str(folder / "main.cpp"), "-o", str(folder / "kw_ext.so")],
        check=True,
        capture_output=True,
    )
    monkeypatch.setattr(build, "Worker", _FakeWorker)
    result = build.build_candidate(candidate, "cpu")
    assert result.status is Status.REJECTED
    assert result.reason == "rejected by native_symbols: kw_ext.so imports `fork` (process control)"
    assert "native audit:" in result.log and result.compile_s == 1.5
    (folder / "main.cpp").write_text("int f() { return 1; }\n")
    subprocess.run(
        ["g++", "-shared", "-fPIC", str(folder / "main.cpp"), "-o", str(folder / "kw_ext.so")],
        check=True,
        capture_output=True,
    )
    monkeypatch.setattr(build, "_make_pchs", lambda shelf, builds: "")
    assert build.build_candidate(candidate, "cpu").ok
