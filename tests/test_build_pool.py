"""Several candidates built at once, and builds that a killed builder cannot block.

Real CPU builds of tiny candidates in the fast layout (TORCH_LIBRARY and slim headers, about 8 s
each on two cores). Extension names are fresh per session, so nothing here is a cache hit left
by an earlier session that reused its KERNELWRIGHT_TEST_HOME.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest
from kernelwright import paths
from kernelwright.compiler.build import build_candidate, start_build
from kernelwright.compiler.loader import COMPLETE_MARKER, TORCH_BATON
from kernelwright.compiler.pool import build_many, default_jobs

pytestmark = pytest.mark.slow

CANDIDATE = '''
import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

cpp_source = r"""
#include <torch/library.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>

at::Tensor scaled(const at::Tensor& x) {
    at::Tensor xc = x.contiguous();
    at::Tensor y = at::empty_like(xc);
    const float* xp = xc.const_data_ptr<float>();
    float* yp = y.mutable_data_ptr<float>();
    for (int64_t i = 0; i < xc.numel(); ++i) yp[i] = FACTOR * xp[i];
    return y;
}

TORCH_LIBRARY(NAME, m) { m.def("scaled(Tensor x) -> Tensor", &scaled); }
"""

load_inline(
    name="NAME", cpp_sources=cpp_source, is_python_module=False, no_implicit_headers=True
)


class ModelNew(nn.Module):
    def forward(self, x):
        return torch.ops.NAME.scaled(x)
'''


def _candidate(folder: Path, factor: str) -> tuple[Path, str]:
    name = f"kw_pool_{uuid.uuid4().hex[:10]}"
    path = folder / f"{name}.py"
    path.write_text(CANDIDATE.replace("NAME", name).replace("FACTOR", factor))
    return path, name


def _directory(candidate: Path, name: str, key: str) -> Path:
    return paths.shelf(candidate) / f"{name}-{key}"


@pytest.fixture(scope="module")
def pair(kw_home: Path, tmp_path_factory: pytest.TempPathFactory):
    """Two different candidates built at once; (their names, the pool's results, its wall time)."""
    os.environ["KERNELWRIGHT_HOME"] = str(kw_home)  # the autouse fixture is per test
    folder = tmp_path_factory.mktemp("pool")
    (a, name_a), (b, name_b) = _candidate(folder, "2.0f"), _candidate(folder, "3.0f")
    start = time.monotonic()
    built = build_many([a, b], "cpu", jobs=2, timeout_s=240)
    return [name_a, name_b], built, time.monotonic() - start


def test_two_candidates_build_at_once_in_their_own_directories(pair):
    names, built, wall = pair
    for name, one in zip(names, built, strict=True):
        assert one.result.ok, one.result.log[-3000:]
        assert not one.result.cached
        assert (_directory(one.candidate, name, one.result.key) / COMPLETE_MARKER).exists()
    assert built[0].result.key != built[1].result.key
    # they overlapped: together they took less than one after the other
    assert wall < built[0].wall_s + built[1].wall_s
    assert 1 <= default_jobs() <= 8


def test_torch_lock_left_in_a_finished_build_does_not_block_the_next_load(pair):
    # torch takes its FileBaton on every load, cache hits included: a loader killed meanwhile
    # leaves `lock` beside a finished build, and torch alone would wait on it forever.
    names, built, _ = pair
    directory = _directory(built[0].candidate, names[0], built[0].result.key)
    os.close(os.open(directory / TORCH_BATON, os.O_CREAT | os.O_EXCL))
    start = time.monotonic()
    again = build_candidate(built[0].candidate, "cpu", timeout_s=60)
    assert again.ok, again.reason
    assert again.cached and again.compile_s < 1
    assert time.monotonic() - start < 30
    assert "stale" in again.log and not (directory / TORCH_BATON).exists()


def test_builder_killed_mid_build_does_not_block_the_next_build(tmp_path):
    candidate, name = _candidate(tmp_path, "4.0f")
    job = start_build(candidate, "cpu", timeout_s=240)
    deadline = time.monotonic() + 120
    locks: list[Path] = []
    while not locks and time.monotonic() < deadline:  # torch holds its lock while compiling
        locks = list(paths.shelf(candidate).glob(f"{name}-*/{TORCH_BATON}"))
        time.sleep(0.05)
    assert locks, "the build never took torch's lock"
    job.worker.kill()  # as SIGKILL of the builder: compiler and ninja included
    killed = job.result()
    assert not killed.ok
    assert locks[0].exists()  # the dead builder's lock is still there
    start = time.monotonic()
    again = build_candidate(candidate, "cpu", timeout_s=120)
    assert again.ok, again.log[-3000:]
    assert not again.cached
    assert time.monotonic() - start < 60  # a build, not a wait for the 120 s limit


def test_load_sources_count_by_name_and_contents_not_by_folder(tmp_path):
    from kernelwright.compiler.loader import extension_key

    def source(folder: str, name: str, text: str) -> str:
        path = tmp_path / folder / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        return str(path)

    toolchain = ["t"]
    first = {"sources": [source("a", "k.cpp", "int f();")]}
    key = extension_key("load", ("ext",), first, toolchain)
    moved = extension_key("load", ("ext", [source("b", "k.cpp", "int f();")]), {}, toolchain)
    changed = extension_key("load", ("ext", [source("c", "k.cpp", "int g();")]), {}, toolchain)
    renamed = extension_key("load", ("ext", [source("d", "k.cu", "int f();")]), {}, toolchain)
    flags = {"sources": [source("a", "k.cpp", "int f();")], "extra_cflags": ["-O3"]}
    assert key == moved  # positional or keyword, any folder
    assert len({key, changed, renamed, extension_key("load", ("ext",), flags, toolchain)}) == 4
