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


@needs_gcc
def test_a_build_compiles_against_the_pch_and_the_next_one_reuses_it(tmp_path):
    root = tmp_path / "builds"
    first = _fake_build(tmp_path, "ext_a")
    note = pch.prepare(first, root, ["toolchain"], cached=False)
    assert "made in" in note and "torch/library.h" in note
    assert "-include kernelwright_pch_prelude.h" in (first / "build.ninja").read_text()
    # From now on the header's text would fail to compile: only the PCH can make this build pass,
    # so passing proves gcc used it (and -Winvalid-pch would have said if it had not).
    header = tmp_path / "include" / "torch" / "library.h"
    header.write_text(GUARDED.format(body="#error the precompiled header was not used"))
    proc = _ninja(first)
    assert proc.returncode == 0, proc.stdout
    assert "warning" not in proc.stdout.lower()

    # another extension name, same flags and headers: the same PCH
    second = _fake_build(tmp_path, "ext_b")
    assert "(reused)" in pch.prepare(second, root, ["toolchain"], cached=False)
    assert _ninja(second).returncode == 0
    assert len(list((root / "pch").iterdir())) == 2  # one PCH folder and its lock file

    # the dependency file does not name the prelude: evicting a PCH never forces a rebuild
    deps = subprocess.run(["ninja", "-t", "deps"], cwd=second, capture_output=True, text=True)
    assert "main.cpp" in deps.stdout and "kernelwright_pch_prelude" not in deps.stdout


@needs_gcc
def test_a_cache_hit_keeps_the_command_ninja_built_with(tmp_path):
    root = tmp_path / "builds"
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
    build = _fake_build(tmp_path, "ext_a", " -fno-such-flag-kw")
    note = pch.prepare(build, root, ["toolchain"], cached=False)
    assert note.startswith("precompiled header not used: gcc could not precompile it")
    assert "-include" not in (build / "build.ninja").read_text()
    again = _fake_build(tmp_path, "ext_b", " -fno-such-flag-kw")
    started = time.perf_counter()
    assert "not used" in pch.prepare(again, root, ["toolchain"], cached=False)
    assert time.perf_counter() - started < 1.0  # remembered, not retried


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
    pch.prepare(_fake_build(tmp_path, "ext_a"), root, ["toolchain"], cached=False)
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
    assert "precompiled header" in first.log and "made in" in first.log
    assert "(reused)" in second.log
    assert "not used because" not in second.log  # gcc's -Winvalid-pch warning
    pchs = [p for p in (tmp_path / "home" / "builds" / "pch").iterdir() if p.is_dir()]
    assert len(pchs) == 1
