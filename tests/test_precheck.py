"""The nvcc pre-check of kernel-only CUDA candidates and the ptxas stats it yields.

The parser runs on recorded `nvcc -cubin -arch=sm_90 -Xptxas -v` output (tests/fixtures/precheck,
recorded with CUDA 13.0 from the `.cu` files beside them; spill.cu with `-maxrregcount=16`). Tests
that run nvcc skip where it is missing; none needs a GPU: a rejected candidate ends in the
pre-check, before torch's CUDA build would be needed.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import pytest
from kernelwright import paths
from kernelwright.compiler import precheck, precheck_run, ptxas
from kernelwright.compiler.build import PRECHECK_TAG, build_candidate
from kernelwright.records import EvaluationResult, Status
from kernelwright.store import repo
from kernelwright.store.db import open_engine

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "precheck"
needs_nvcc = pytest.mark.skipif(
    precheck_run.find_nvcc() is None, reason="nvcc is not installed (the pre-check needs it)"
)

KERNEL = r"""
#include <cuda_runtime.h>
__global__ void scale_kernel(const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = 2.0f * x[i];
}
"""
BROKEN = KERNEL.replace("threadIdx.x;", "threadIdx.x")  # missing ';'
KERNELBENCH = "#include <torch/extension.h>\n#include <cuda_runtime.h>\n" + KERNEL.split("\n", 2)[2]


def _load_inline(cuda: str, implicit: bool = False) -> dict[str, object]:
    return {
        "name": "ext",
        "cpp_sources": "int f();",
        "cuda_sources": cuda,
        "no_implicit_headers": not implicit,
    }


# -- the ptxas parser, on recorded output ------------------------------------------------------


def _parsed(name: str) -> list[dict[str, object]]:
    return ptxas.parse_ptxas((FIXTURES / f"{name}.sm_90.ptxas.txt").read_text())


def test_parser_reads_registers_of_a_plain_kernel():
    assert _parsed("add") == [
        {
            "kernel": "_Z10add_kernelPKfS0_Pfi",
            "registers": 12,
            "shared_mem_bytes": 0,
            "stack_bytes": 0,
            "spill_store_bytes": 0,
            "spill_load_bytes": 0,
        }
    ]


def test_parser_reads_static_shared_memory_per_kernel():
    stats = {k["kernel"]: (k["registers"], k["shared_mem_bytes"]) for k in _parsed("smem")}
    assert stats == {
        "_Z10sum_kernelILi512EEvPKfPfi": (12, 2048),
        "_Z10sum_kernelILi256EEvPKfPfi": (11, 1024),
        "_Z16transpose_kernelPKfPfii": (12, 4224),  # 32 x 33 floats
    }


def test_parser_reads_spills_and_leaves_out_device_functions():
    (hungry,) = _parsed("spill")  # `mix` is a non-inlined __device__ function, not a kernel
    assert hungry["kernel"] == "_Z13hungry_kernelPKfPfi"
    assert hungry["registers"] == 24
    assert (hungry["stack_bytes"], hungry["spill_store_bytes"], hungry["spill_load_bytes"]) == (
        1136,
        2256,
        2504,
    )


def test_parser_reads_the_older_smem_and_cmem_layout():
    # The CUDA 11/12 layout (hand-written here): "static+reserved bytes smem" and cmem banks.
    text = (
        "ptxas info    : Compiling entry function '_Z1kPf' for 'sm_80'\n"
        "ptxas info    : Function properties for _Z1kPf\n"
        "    8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads\n"
        "ptxas info    : Used 40 registers, 4096+0 bytes smem, 368 bytes cmem[0]\n"
    )
    (kernel,) = ptxas.parse_ptxas(text)
    assert (kernel["registers"], kernel["shared_mem_bytes"], kernel["stack_bytes"]) == (40, 4096, 8)
    assert ptxas.parse_ptxas("nvcc fatal   : garbage\n") == []


def test_demangling_with_and_without_cxxfilt(monkeypatch):
    kernels = _parsed("add")
    if shutil.which("c++filt"):
        names = [k["kernel"] for k in ptxas.demangle(kernels)]
        assert names == ["add_kernel(float const*, float const*, float*, int)"]
    monkeypatch.setattr(ptxas.shutil, "which", lambda name: None)
    assert ptxas.demangle(kernels) == kernels


# -- when the pre-check runs, and with which flags and arch -------------------------------------


def test_only_kernel_only_sources_are_planned(tmp_path):
    assert precheck.plan_precheck("load_inline", _load_inline(KERNEL)) is not None
    # without no_implicit_headers torch prepends torch/types.h: not kernel-only
    assert precheck.plan_precheck("load_inline", _load_inline(KERNEL, implicit=True)) is None
    assert precheck.plan_precheck("load_inline", _load_inline(KERNELBENCH)) is None
    assert precheck.plan_precheck("load_inline", _load_inline("")) is None
    # a local header that pulls in torch makes the unit slow too
    (tmp_path / "common.cuh").write_text("#include <ATen/ATen.h>\n")
    (tmp_path / "k.cu").write_text('#include "common.cuh"\n' + KERNEL)
    (tmp_path / "ok.cu").write_text(KERNEL)
    assert (
        precheck.plan_precheck("load", {"name": "e", "sources": [str(tmp_path / "k.cu")]}) is None
    )
    plan = precheck.plan_precheck("load", {"name": "e", "sources": [str(tmp_path / "ok.cu")]})
    assert plan is not None and plan.units[0].path == tmp_path / "ok.cu"


def test_flags_are_filtered_and_rdc_skips_the_precheck():
    flags = ["-O3", "--use_fast_math", "-std=c++17", "-Xptxas -v", "-D FOO=1", "-G", "-lcublas"]
    plan = precheck.plan_precheck(
        "load_inline", {**_load_inline(KERNEL), "extra_cuda_cflags": flags}
    )
    assert plan is not None
    assert plan.flags == ["-O3", "--use_fast_math", "-std=c++17", "-D", "FOO=1"]
    rdc = {**_load_inline(KERNEL), "extra_cuda_cflags": ["-rdc=true"]}
    assert precheck.plan_precheck("load_inline", rdc) is None


@pytest.mark.parametrize(
    ("user", "arch_list", "gpus", "expected"),
    [
        (None, "9.0", "", "sm_90"),
        (None, "9.0a", "8.0", "sm_90a"),
        (None, "8.0;9.0+PTX", "", "sm_80"),
        (None, "8.6 9.0", "", "sm_86"),
        (None, "10.0", "", "sm_100"),
        (None, "Hopper", "", "sm_90"),
        (None, "", "8.0,9.0", "sm_80"),
        (None, "native", "8.9", "sm_89"),
        (None, "", "", "sm_90"),
        ("sm_90a", "8.0", "8.0", "sm_90a"),
    ],
)
def test_arch_selection(user, arch_list, gpus, expected):
    assert precheck.choose_arch(user, arch_list, gpus) == expected


def test_arch_comes_from_torch_cuda_arch_list_and_user_flags(monkeypatch):
    seen: list[str] = []
    monkeypatch.setattr(precheck_run, "find_nvcc", lambda: "/bin/nvcc")
    monkeypatch.setattr(precheck_run, "run_plan", lambda plan, nvcc, arch, *rest: seen.append(arch))
    from torch.utils.cpp_extension import load_inline

    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0a;10.0")
    precheck_run.precheck_call("load_inline", load_inline, (), _load_inline(KERNEL), "")
    gencode = {**_load_inline(KERNEL), "extra_cuda_cflags": ["-gencode=arch=compute_80,code=sm_80"]}
    precheck_run.precheck_call("load_inline", load_inline, (), gencode, "")
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST")
    precheck_run.precheck_call("load_inline", load_inline, (), _load_inline(KERNEL), "8.6")
    assert seen == ["sm_90a", "sm_80", "sm_86"]


def test_missing_nvcc_skips_silently(monkeypatch):
    from torch.utils.cpp_extension import load_inline

    monkeypatch.setattr(precheck_run, "find_nvcc", lambda: None)
    assert (
        precheck_run.precheck_call("load_inline", load_inline, (), _load_inline(BROKEN), "") is None
    )


# -- nvcc itself ---------------------------------------------------------------------------------


def _call(cuda: str, implicit: bool = False) -> precheck_run.PrecheckOutcome | None:
    from torch.utils.cpp_extension import load_inline

    return precheck_run.precheck_call(
        "load_inline", load_inline, (), _load_inline(cuda, implicit), ""
    )


@needs_nvcc
def test_precheck_rejects_a_syntax_error_in_seconds():
    outcome = _call(BROKEN)
    assert outcome is not None and not outcome.ok
    assert 'cuda.cu(5): error: expected a ";"' in outcome.output
    assert outcome.seconds < 30


@needs_nvcc
def test_precheck_passes_a_good_kernel_with_its_stats():
    outcome = _call(KERNEL)
    assert outcome is not None and outcome.ok, outcome and outcome.output
    (kernel,) = outcome.kernels
    assert kernel["kernel"].startswith("scale_kernel") or kernel["kernel"].startswith("_Z")
    assert kernel["registers"] > 0 and kernel["spill_store_bytes"] == 0


@needs_nvcc
def test_precheck_past_its_time_limit_is_inconclusive():
    plan = precheck.plan_precheck("load_inline", _load_inline(BROKEN))
    assert plan is not None
    nvcc = precheck_run.find_nvcc()
    assert nvcc is not None
    outcome = precheck_run.run_plan(plan, nvcc, "sm_90", [], [], timeout_s=0.05)
    assert outcome.ok and outcome.timed_out and not outcome.kernels  # the full build decides


def test_kernelbench_layout_is_not_prechecked():
    assert _call(KERNELBENCH) is None
    assert _call(KERNEL, implicit=True) is None


# -- through the build worker --------------------------------------------------------------------


def _candidate(tmp_path: Path, cuda: str, name: str) -> Path:
    # a unique comment keeps a reused build cache (KERNELWRIGHT_TEST_HOME) from answering
    cuda = f"// {uuid.uuid4().hex}\n{cuda}"
    path = tmp_path / f"{name}.py"
    path.write_text(
        "from torch.utils.cpp_extension import load_inline\n"
        f"CUDA = {cuda!r}\n"
        f"ext = load_inline(name={name!r}, cpp_sources='int f();', cuda_sources=CUDA,\n"
        "                  no_implicit_headers=True)\n"
    )
    return path


@needs_nvcc
def test_worker_ends_a_broken_kernel_in_the_precheck(tmp_path):
    started = time.perf_counter()
    candidate = _candidate(tmp_path, BROKEN, "broken_scale")
    result = build_candidate(candidate, "cuda")
    elapsed = time.perf_counter() - started
    assert result.status == Status.COMPILE_ERROR
    assert result.reason.startswith('cuda.cu(6): error: expected a ";"'), result.reason
    assert result.reason.endswith(PRECHECK_TAG)
    assert "nvcc -cubin" in result.log and "1 error detected" in result.log
    assert result.precheck_s is not None and result.precheck_s < 30
    assert elapsed < 90  # worker start and `import torch` included; a full build takes 20-70 s
    # no full build ran: no build directory was ever made for the extension
    assert not list(paths.shelf(candidate).glob("broken_scale-*"))


@needs_nvcc
def test_worker_reports_kernel_stats_of_a_good_kernel(tmp_path):
    result = build_candidate(_candidate(tmp_path, KERNEL, "good_scale"), "cuda")
    # a CPU-only torch then fails the full build, a CUDA one passes it: the stats come either way
    assert PRECHECK_TAG not in result.reason
    assert result.precheck_s is not None
    (kernel,) = result.kernels
    assert kernel["registers"] > 0


def test_build_fields_reach_the_store(tmp_path):
    kernels = [{"kernel": "k()", "registers": 8, "shared_mem_bytes": 0, "stack_bytes": 0,
                "spill_store_bytes": 0, "spill_load_bytes": 0}]  # fmt: skip
    result = EvaluationResult(
        status=Status.COMPILE_ERROR,
        reason="x",
        target="cuda",
        problem="/p.py",
        problem_hash="h" * 64,
        candidate="/c.py",
        trials=1,
        compile_s=0.5,
        kernels=kernels,
        precheck_s=0.4,
    )
    engine = open_engine(f"sqlite:///{tmp_path / 'history.db'}")
    run_id = repo.start_run(engine, "optimize", "cuda", {})
    problem = {"content_hash": "h" * 64, "name": "p", "path": "/p.py", "source": "class Model: ..."}
    cid = repo.add_candidate(engine, run_id, problem, "src", "s", result)
    build = repo.get_candidate(engine, cid)["build"]
    assert build["kernels"] == kernels and build["precheck_s"] == 0.4
