"""Precompiled torch headers for C++ wrappers (compiler/pch.py).

The unit tests drive `pch.prepare` on a build.ninja laid out as torch writes it, with a tiny
stand-in for the torch headers so gcc runs in milliseconds; the last test builds two real
fast-layout candidates through kernelwright's own build path."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from kernelwright.compiler import pch

needs_gcc = pytest.mark.skipif(
    pch._gcc_identity("c++") is None or shutil.which("ninja") is None,
    reason="needs gcc as c++ and ninja",
)

GUARDED = "#ifndef FAKE_LIBRARY_H\n#define FAKE_LIBRARY_H\n{body}\n#endif\n"


def test_the_prelude_is_the_leading_torch_includes_without_op_headers_or_extension_h():
    source = """// a wrapper
/* block
   comment */
#include <torch/library.h>
#include <vector>
#include <ATen/ops/empty.h>
#include <ATen/core/Tensor.h>  // tensors
#include <c10/cuda/CUDAGuard.h>
#include "local.h"
#include <ATen/Parallel.h>
"""
    # ends at the quoted include: what follows it might depend on it
    assert pch.leading_torch_headers(source) == [
        "torch/library.h",
        "ATen/core/Tensor.h",
        "c10/cuda/CUDAGuard.h",
    ]
    assert pch.leading_torch_headers("#define X 1\n#include <torch/library.h>\n") == []
    assert pch.leading_torch_headers("#include <torch/extension.h>\n") == []
    assert pch.leading_torch_headers("int x;\n#include <torch/library.h>\n") == []


def _fake_build(tmp: Path, name: str, extra_flags: str = "") -> Path:
    """A build directory as torch leaves it just before running ninja."""
    include = tmp / "include"
    (include / "torch").mkdir(parents=True, exist_ok=True)
    header = include / "torch" / "library.h"
    if not header.exists():
        header.write_text(GUARDED.format(body="inline int answer() { return 42; }"))
    build = tmp / name
    build.mkdir()
    source = build / "main.cpp"
    source.write_text("#include <torch/library.h>\nint f() { return answer(); }\n")
    (build / "build.ninja").write_text(
        "ninja_required_version = 1.3\n"
        "cxx = c++\n\n"
        f"cflags = -DTORCH_EXTENSION_NAME={name} -isystem {include} -fPIC -O2{extra_flags}\n"
        "post_cflags = \n\n"
        "rule compile\n"
        "  command = $cxx -MMD -MF $out.d $cflags -c $in -o $out $post_cflags\n"
        "  depfile = $out.d\n"
        "  deps = gcc\n\n"
        f"build main.o: compile {source}\n\n"
        "default main.o\n"
    )
    return build


def _ninja(build: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ninja", "-v"], cwd=build, capture_output=True, text=True)


def _made(tmp: Path, root: Path, name: str = "ext_made", extra_flags: str = "") -> list[str]:
    """What the CLI does after a build that found no PCH: make it from the build's recipe."""
    build = _fake_build(tmp, name, extra_flags)
    note = pch.prepare(build, root, ["toolchain"], cached=False)
    assert note.startswith("precompiled header not made yet")
    assert "-include" not in (build / "build.ninja").read_text()  # this build goes without
    notes = pch.make_requested([build], root, [tmp / "include"])
    assert not (build / pch.RECIPE).exists()  # used up
    return notes


@needs_gcc
def test_the_cli_makes_the_pch_a_build_asked_for_and_the_next_builds_use_it(tmp_path):
    root = tmp_path / "builds"
    notes = _made(tmp_path, root)
    assert len(notes) == 1 and "made in" in notes[0]
    # From now on the header's text would fail to compile: only the PCH can make this build pass,
    # so passing proves gcc used it (and -Winvalid-pch would have said if it had not).
    header = tmp_path / "include" / "torch" / "library.h"
    header.write_text(GUARDED.format(body="#error the precompiled header was not used"))
    second = _fake_build(tmp_path, "ext_b")  # another extension name, same flags and headers
    note = pch.prepare(second, root, ["toolchain"], cached=False)
    assert "(reused)" in note and "torch/library.h" in note
    assert "-include kernelwright_pch_prelude.h" in (second / "build.ninja").read_text()
    proc = _ninja(second)
    assert proc.returncode == 0, proc.stdout
    assert "warning" not in proc.stdout.lower()
    assert len(list((root / "pch").iterdir())) == 2  # one PCH folder and its lock file

    # the dependency file does not name the prelude: evicting a PCH never forces a rebuild
    deps = subprocess.run(["ninja", "-t", "deps"], cwd=second, capture_output=True, text=True)
    assert "main.cpp" in deps.stdout and "kernelwright_pch_prelude" not in deps.stdout


@needs_gcc
def test_a_cache_hit_keeps_the_command_ninja_built_with(tmp_path):
    root = tmp_path / "builds"
    _made(tmp_path, root)
    build = _fake_build(tmp_path, "ext_a")
    pristine = (build / "build.ninja").read_text()
    pch.prepare(build, root, ["toolchain"], cached=False)
    assert _ninja(build).returncode == 0
    # a later process loading the cached extension: torch rewrites build.ninja as it was
    (build / "build.ninja").write_text(pristine)
    assert pch.prepare(build, root, ["toolchain"], cached=True) == ""
    assert "no work to do" in _ninja(build).stdout


@needs_gcc
def test_flags_gcc_rejects_are_remembered_and_the_build_goes_on_without(tmp_path):
    root = tmp_path / "builds"
    notes = _made(tmp_path, root, extra_flags=" -fno-such-flag-kw")
    assert notes[0].startswith("precompiled header not made: gcc could not precompile it")
    again = _fake_build(tmp_path, "ext_b", " -fno-such-flag-kw")
    started = time.perf_counter()
    assert "not used" in pch.prepare(again, root, ["toolchain"], cached=False)
    assert time.perf_counter() - started < 1.0  # remembered, not retried
    assert "-include" not in (again / "build.ninja").read_text()


TORCH_FLAGS = (
    '-DTORCH_API_INCLUDE_EXTENSION_H -DPYBIND11_COMPILER_TYPE=\\"_gcc\\" -isystem {inc} '
    "-isystem {inc}/torch/csrc/api/include -fPIC -std=c++17 -O3 -march=native -Wall"
)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({}, ""),
        ({"headers": ["torch/../../../etc/evil.h"]}, "a header outside torch's"),
        ({"headers": ["mine.h"]}, "a header outside torch's"),
        ({"cxx": "/tmp/evil/g++"}, "a compiler other than torch's"),
        ({"flags": "-fplugin=/tmp/evil.so"}, "a flag kernelwright does not precompile with"),
        ({"flags": "-Wl,-rpath,/tmp"}, "a flag kernelwright does not precompile with"),
        ({"flags": "-include /tmp/evil.h"}, "a flag kernelwright does not precompile with"),
        ({"flags": "-isystem /tmp/evil"}, "an include folder outside"),
        ({"flags": "-I{inc}/../../evil"}, "an include folder outside"),
        ({"post": "$(touch /tmp/x)"}, "a flag kernelwright does not precompile with"),
        ({"flags": "-DX='a"}, "unbalanced quotes"),
    ],
)
def test_only_a_recipe_torch_could_have_written_is_made(tmp_path, change, problem):
    inc = tmp_path / "torch" / "include"
    (inc / "torch" / "csrc" / "api" / "include").mkdir(parents=True)
    recipe = {
        "toolchain": ["t"],
        "cxx": os.environ.get("CXX", "c++"),
        "flags": TORCH_FLAGS.format(inc=inc),
        "post": "",
        "headers": ["torch/library.h", "ATen/core/Tensor.h"],
    }
    recipe.update({k: v.format(inc=inc) if isinstance(v, str) else v for k, v in change.items()})
    found = pch._checked_recipe(recipe, [inc])
    assert found.startswith(problem) if problem else found == ""


@needs_gcc
def test_switched_off_or_another_compiler_changes_nothing(tmp_path, monkeypatch):
    root = tmp_path / "builds"
    build = _fake_build(tmp_path, "ext_a")
    monkeypatch.setenv(pch.ENV_SWITCH, "0")
    assert pch.prepare(build, root, ["toolchain"], cached=False) == ""
    monkeypatch.delenv(pch.ENV_SWITCH)
    fake = tmp_path / "clang++"
    fake.write_text("#!/bin/sh\necho 'clang version 18.1.0'\n")
    fake.chmod(0o755)
    text = (build / "build.ninja").read_text().replace("cxx = c++", f"cxx = {fake}")
    (build / "build.ninja").write_text(text)
    assert pch.prepare(build, root, ["toolchain"], cached=False) == ""
    assert "-include" not in (build / "build.ninja").read_text()
    assert not (root / "pch").exists()


@needs_gcc
def test_a_builds_folder_with_a_space_goes_without(tmp_path):
    build = _fake_build(tmp_path, "ext_a")
    before = (build / "build.ninja").read_text()
    note = pch.prepare(build, tmp_path / "my builds", ["toolchain"], cached=False)
    assert note.startswith("precompiled header not used") and "space" in note
    assert (build / "build.ninja").read_text() == before


@needs_gcc
def test_old_pchs_beyond_the_limit_are_evicted_recent_ones_kept(tmp_path):
    root = tmp_path / "builds"
    old = time.time() - 2 * pch.EVICT_AFTER_S
    for i in range(pch.KEEP + 2):
        folder = root / "pch" / f"old{i}"
        folder.mkdir(parents=True)
        (folder / pch.MARKER).write_text("ok\n")
        os.utime(folder / pch.MARKER, (old + i, old + i))
    recent = root / "pch" / "recent"
    recent.mkdir()
    (recent / pch.MARKER).write_text("ok\n")
    _made(tmp_path, root)
    left = {p.name for p in (root / "pch").iterdir() if p.is_dir()}
    # the new one, the recent one, and the newest old ones up to KEEP in all
    assert "recent" in left and len(left) == pch.KEEP
    assert {f"old{pch.KEEP + 1}", f"old{pch.KEEP}"} <= left and "old0" not in left


FAST_CPU = '''
import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

cpp_source = r"""
#include <torch/library.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>

at::Tensor twice(at::Tensor x) {
    auto xc = x.contiguous();
    auto y = at::empty_like(xc);
    const float* src = xc.data_ptr<float>();
    float* dst = y.data_ptr<float>();
    for (int64_t i = 0; i < xc.numel(); ++i) dst[i] = 2.0f * src[i];
    return y;
}

TORCH_LIBRARY(NAME, m) { m.def("twice", &twice); }
"""

load_inline(name="NAME", cpp_sources=cpp_source, is_python_module=False,
            no_implicit_headers=True, extra_cflags=["-O2"])


class ModelNew(nn.Module):
    def forward(self, x):
        return torch.ops.NAME.twice(x)
'''


@pytest.mark.slow
@needs_gcc
def test_real_fast_layout_candidates_share_one_pch(tmp_path, monkeypatch):
    from kernelwright.compiler.build import start_build

    monkeypatch.setenv("KERNELWRIGHT_HOME", str(tmp_path / "home"))
    results = []
    for name in ("kw_pch_a", "kw_pch_b"):
        path = tmp_path / f"{name}.py"
        path.write_text(FAST_CPU.replace("NAME", name))
        results.append(start_build(path, "cpu").result())
    first, second = results
    assert first.ok and second.ok, (first.log[-2000:], second.log[-2000:])
    # the first goes without and the CLI makes the PCH after it; the second uses it
    assert "not made yet" in first.log and "made in" in first.log
    assert "(reused)" in second.log
    assert "not used because" not in second.log  # gcc's -Winvalid-pch warning
    pchs = [p for p in (tmp_path / "home" / "builds" / "pch").iterdir() if p.is_dir()]
    assert len(pchs) == 1
