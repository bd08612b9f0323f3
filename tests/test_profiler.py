"""The Nsight Compute profiler on the CPU: metric names, CSV parsing, roofline, the ncu process.

ncu itself needs a GPU; here a stand-in (`fixtures/ncu/fake_ncu.py`) plays it, so the command
line, the isolation, the time limit and every failure path run for real. The metric names are
checked against NVIDIA's own tables through the Perf SDK host library of the CUDA toolkit.
"""

from __future__ import annotations

import csv
import ctypes
import glob
import io
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest
from kernelwright import profiling as prof
from kernelwright.profiler import ncu, ncu_metrics, roofline
from kernelwright.profiler.sheets import gpu_sheet
from kernelwright.runner.isolation import sandbox

FIXTURES = Path(__file__).parent / "fixtures" / "ncu"
H100 = gpu_sheet("NVIDIA H100 80GB HBM3")
KERNELS = ["reduce_rows", "matmul_tiled", "scan_tail"]


# -- metric names --------------------------------------------------------------------------------


def _perf_sdk() -> ctypes.CDLL | None:
    roots = [os.environ.get("CUDA_HOME", ""), "/usr/local/cuda", *glob.glob("/usr/local/cuda-*")]
    for root in filter(None, roots):
        for rel in (
            "lib/libnvperf_host.so",
            "lib64/libnvperf_host.so",
            "targets/*/lib/libnvperf_host.so",
        ):
            for path in glob.glob(os.path.join(root, rel)):
                try:
                    return ctypes.CDLL(path)
                except OSError:
                    continue
    return None


class _Params(ctypes.Structure):
    @classmethod
    def make(cls, **values: object) -> _Params:
        last = cls._fields_[-1][0]
        size = getattr(cls, last).offset + getattr(cls, last).size
        return cls(structSize=size, **values)


class _Init(_Params):
    _fields_ = [("structSize", ctypes.c_size_t), ("pPriv", ctypes.c_void_p)]


class _ScratchSize(_Params):
    _fields_ = [
        ("structSize", ctypes.c_size_t),
        ("pPriv", ctypes.c_void_p),
        ("pChipName", ctypes.c_char_p),
        ("pCounterAvailabilityImage", ctypes.c_void_p),
        ("scratchBufferSize", ctypes.c_size_t),
    ]


class _Evaluator(_Params):
    _fields_ = [
        ("structSize", ctypes.c_size_t),
        ("pPriv", ctypes.c_void_p),
        ("pScratchBuffer", ctypes.c_void_p),
        ("scratchBufferSize", ctypes.c_size_t),
        ("pChipName", ctypes.c_char_p),
        ("pCounterAvailabilityImage", ctypes.c_void_p),
        ("pCounterDataImage", ctypes.c_void_p),
        ("counterDataImageSize", ctypes.c_size_t),
        ("pMetricsEvaluator", ctypes.c_void_p),
    ]


class _Request(ctypes.Structure):
    _fields_ = [
        ("metricIndex", ctypes.c_size_t),
        ("metricType", ctypes.c_uint8),
        ("rollupOp", ctypes.c_uint8),
        ("submetric", ctypes.c_uint16),
    ]


class _Convert(_Params):
    _fields_ = [
        ("structSize", ctypes.c_size_t),
        ("pPriv", ctypes.c_void_p),
        ("pMetricsEvaluator", ctypes.c_void_p),
        ("pMetricName", ctypes.c_char_p),
        ("pMetricEvalRequest", ctypes.POINTER(_Request)),
        ("metricEvalRequestStructSize", ctypes.c_size_t),
    ]


def _invalid_names(lib: ctypes.CDLL, chip: str, names: list[str]) -> list[str]:
    """The names NVIDIA's metric tables for `chip` do not know (what ncu would print n/a for)."""
    assert lib.NVPW_InitializeHost(ctypes.byref(_Init.make(pPriv=None))) == 0
    size = _ScratchSize.make(pChipName=chip.encode())
    assert lib.NVPW_CUDA_MetricsEvaluator_CalculateScratchBufferSize(ctypes.byref(size)) == 0
    scratch = ctypes.create_string_buffer(size.scratchBufferSize)
    evaluator = _Evaluator.make(
        pScratchBuffer=ctypes.cast(scratch, ctypes.c_void_p),
        scratchBufferSize=size.scratchBufferSize,
        pChipName=chip.encode(),
    )
    assert lib.NVPW_CUDA_MetricsEvaluator_Initialize(ctypes.byref(evaluator)) == 0
    request_size = _Request.submetric.offset + _Request.submetric.size
    invalid = []
    for name in names:
        request = _Request()
        convert = _Convert.make(
            pMetricsEvaluator=evaluator.pMetricsEvaluator,
            pMetricName=name.encode(),
            pMetricEvalRequest=ctypes.pointer(request),
            metricEvalRequestStructSize=request_size,
        )
        if lib.NVPW_MetricsEvaluator_ConvertMetricNameToMetricEvalRequest(ctypes.byref(convert)):
            invalid.append(name)
    return invalid


@pytest.mark.parametrize("capability", sorted(ncu_metrics.CHIPS))
def test_every_hardware_metric_is_a_valid_name_on_each_architecture(capability):
    lib = _perf_sdk()
    if lib is None:
        pytest.skip("the CUDA toolkit's libnvperf_host.so is not installed")
    chip = ncu_metrics.CHIPS[capability]
    own = set(ncu_metrics.LAUNCH)
    names = [n for n in ncu_metrics.metrics_for(capability) if n not in own]
    assert _invalid_names(lib, chip, names) == []
    # The check can fail: CudaForge's two metrics that read n/a on an H100, and a made-up one.
    bad = [
        "sm__inst_executed_pipe_fp32.avg.pct_of_peak_sustained_active",
        "smsp__warp_issue_stalled_memory_dependency_per_warp_active.pct",
        "dram__bites_read.sum",
    ]
    expected = bad[2:] if capability < (9, 0) else bad
    assert set(expected) <= set(_invalid_names(lib, chip, bad))


def test_every_flop_counter_and_stall_is_requested_somewhere():
    requested = {n for cc in ncu_metrics.CHIPS for n in ncu_metrics.metrics_for(cc)}
    assert {metric for _, metric, _ in ncu_metrics.FLOP_COUNTERS} <= requested
    assert set(ncu_metrics.STALLS.values()) <= requested
    assert "long_scoreboard" in ncu_metrics.STALLS
    assert ncu_metrics.metrics_for(None) == [*ncu_metrics.HARDWARE, *ncu_metrics.LAUNCH]


# -- the CSV -------------------------------------------------------------------------------------


def test_raw_csv_parses_every_launch_in_base_units():
    launches = ncu.parse_csv((FIXTURES / "raw_h100.csv").read_text())
    assert [launch.name.split("(")[0] for launch in launches] == [
        "void reduce_rows<256>",
        "void reduce_rows<256>",
        "matmul_tiled",
        "ns::scan_tail",
    ]
    first = launches[0].values
    assert first["gpu__time_duration.sum"] == 40_000.0  # thousands separators removed
    assert first["dram__bytes_read.sum"] == 100_000_000.0
    assert first["launch__registers_per_thread"] == 32.0
    assert (
        launches[2].values["sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active"] is None
    )
    assert launches[0].block == "(256, 1, 1)" and launches[2].grid == "(256, 256, 1)"


def test_details_csv_scales_auto_units_and_keeps_na_as_none():
    (launch,) = ncu.parse_csv((FIXTURES / "details_units.csv").read_text())
    assert launch.name.startswith("gelu_kernel")
    assert launch.values["gpu__time_duration.sum"] == pytest.approx(52_480.0)  # usecond
    assert launch.values["dram__bytes_read.sum"] == pytest.approx(67.11e6)  # Mbyte
    assert launch.values["gpc__cycles_elapsed.avg.per_second"] == pytest.approx(1.41e9)  # Ghz
    assert launch.values["gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed"] is None


def test_output_without_a_table_parses_to_nothing():
    assert ncu.parse_csv("==PROF== Disconnected\n==WARNING== No kernels were profiled.\n") == []
    assert ncu.to_number("n/a") is None and ncu.to_number("1,2,3") is None
    assert ncu.to_number("1.5", "msecond") == 1.5e6


def test_kernel_filter_matches_own_kernels_in_any_demangled_form():
    pattern = ncu.kernel_filter(["scan_tail", "reduce_rows"]).removeprefix("regex:")
    for name in (
        "reduce_rows",
        "reduce_rows(float *)",
        "void reduce_rows<256>(const float *)",
        "ns::scan_tail(int *, int)",
    ):
        assert re.search(pattern, name), name
    for name in (
        "reduce_rows2(float *)",
        "my_reduce_rows(float *)",
        "at::native::vectorized_elementwise_kernel<4>()",
    ):
        assert not re.search(pattern, name), name


def test_kernel_filter_fills_the_holes_of_a_name_python_formats():
    # `__global__ void scale_{T}_kernel(` in the source: the built kernel is `scale_float_kernel`
    pattern = ncu.kernel_filter(["scale_*_kernel"]).removeprefix("regex:")
    assert re.search(pattern, "void scale_float_kernel(const float *)")
    assert re.search(pattern, "scale_half2_kernel<4>(__half2 *)")
    assert not re.search(pattern, "scale_kernel_v2(float *)")
    assert not re.search(pattern, "at::native::vectorized_elementwise_kernel<4>()")


# -- roofline ------------------------------------------------------------------------------------


def _summaries() -> dict[str, dict]:
    launches = ncu.parse_csv((FIXTURES / "raw_h100.csv").read_text())
    return {s["kernel"]: s for s in roofline.summarize(launches, KERNELS, H100)}


def test_launches_of_one_kernel_combine_and_each_kernel_gets_its_class():
    by_name = _summaries()
    assert list(by_name) == ["matmul_tiled", "reduce_rows", "scan_tail"]  # slowest first
    rows = by_name["reduce_rows"]
    assert rows["launches"] == 2
    assert rows["duration_ms"] == pytest.approx(0.1)  # 40 + 60 us
    assert rows["memory_pct"] == pytest.approx((88 * 40 + 92 * 60) / 100)  # weighted by time
    assert rows["dram_bytes"] == pytest.approx(250e6 + 2 * 16_384)
    assert rows["achieved_tbps"] == pytest.approx(rows["dram_bytes"] / 1e-4 / 1e12)
    assert rows["bandwidth_pct_of_peak"] == pytest.approx(100 * rows["achieved_tbps"] / 3.35)
    assert rows["bound"] == "memory"
    matmul = by_name["matmul_tiled"]
    assert matmul["flops"]["fp32"] == pytest.approx(2 * 68_719_476_736)
    assert matmul["achieved_tflops"] == pytest.approx(2 * 68_719_476_736 / 2.5e-3 / 1e12)
    assert matmul["compute_pct_of_peak"] == pytest.approx(100 * matmul["achieved_tflops"] / 67)
    assert matmul["ridge_flop_per_byte"] == pytest.approx(67 / 3.35)
    assert matmul["bound"] == "compute"
    assert by_name["scan_tail"]["bound"] == "latency"


def test_classification_falls_back_to_the_sheet_shares():
    assert (
        roofline.classify({"compute_pct_of_peak": 80.0, "bandwidth_pct_of_peak": 10.0}) == "compute"
    )
    assert roofline.classify({"sm_pct": 20.0, "memory_pct": 30.0}) == "latency"
    assert roofline.classify({}) is None


def test_unknown_gpu_gives_rates_without_shares_of_peak():
    launches = ncu.parse_csv((FIXTURES / "raw_h100.csv").read_text())
    (matmul, *_) = roofline.summarize(launches, KERNELS, gpu_sheet("NVIDIA Future GPU"))
    assert matmul["achieved_tflops"] > 0
    assert matmul["compute_pct_of_peak"] is None and matmul["bandwidth_pct_of_peak"] is None


def test_judge_block_names_the_bottleneck_figures():
    block = roofline.judge_block(_summaries()["reduce_rows"])
    assert block["bound"].startswith("memory (SM 6%, memory 90%")
    assert "% of the sheet's peak" in block["dram"]
    assert block["top stalls"].startswith("long_scoreboard 64%")
    assert block["occupancy"] == "84% achieved, 100% theoretical"
    matmul = roofline.judge_block(_summaries()["matmul_tiled"])
    assert matmul["occupancy"] == "62% achieved, 67% theoretical (limited by registers)"
    assert block["global loads"].startswith("4 sectors/request (coalesced loads give 4 for 4-byte")
    assert "32 registers/thread" in block["launch"] and "1.02 KB shared/block" in block["launch"]
    scan = roofline.judge_block(_summaries()["scan_tail"])
    assert scan["top stalls"].startswith("barrier 70%")


# -- recorded on an H100 -------------------------------------------------------------------------
# ncu 2025.3.1 on the shipped 02_row_sum candidate (fixtures/ncu/README.md), read with the
# product's own code. What is expected comes from the problem, not from the recording: an
# 8192 x 4096 fp32 input read once as float4, one block of 256 threads per row, one fp32 out
# per row.

ROWS, COLS = 8192, 4096
INPUT_BYTES = ROWS * COLS * 4
OUTPUT_BYTES = ROWS * 4
SECTOR = 32  # bytes
WARP_FLOAT4_BYTES = 32 * 16  # one float4 load by a full warp


def _recorded(page: str) -> list[ncu.KernelLaunch]:
    return ncu.parse_csv((FIXTURES / f"h100_row_sum_{page}.csv").read_text())


def _recorded_summary() -> dict:
    (summary,) = roofline.summarize(_recorded("raw"), ["row_sum_kernel"], H100)
    return summary


def test_recorded_raw_page_holds_every_metric_requested_on_sm_90():
    text = (FIXTURES / "h100_row_sum_raw.csv").read_text()
    units, row = list(csv.DictReader(io.StringIO(text)))
    assert row["CC"] == "9.0" and not units["ID"]
    (launch,) = _recorded("raw")
    requested = ncu_metrics.metrics_for((9, 0))
    missing = [name for name in requested if name not in launch.values]
    unread = [name for name in requested if name in launch.values and launch.values[name] is None]
    assert missing == [] and unread == []  # not n/a, and parsed as a number


def test_recorded_row_sum_is_one_memory_bound_launch_reading_its_input_once():
    launches = _recorded("raw")
    assert len(launches) == 1
    assert re.search(r"(^|\s)row_sum_kernel<", launches[0].name)
    summary = _recorded_summary()
    assert summary["kernel"] == "row_sum_kernel" and summary["launches"] == 1
    assert summary["grid"] == f"({ROWS}, 1, 1)" and summary["block"] == "(256, 1, 1)"
    v = summary["metrics"]
    assert v[ncu_metrics.DRAM_READ] == pytest.approx(INPUT_BYTES, rel=0.03)
    # Writes: the output, plus whatever dirty lines L2 evicts meanwhile; far below the reads.
    assert OUTPUT_BYTES <= v[ncu_metrics.DRAM_WRITE] < 0.05 * INPUT_BYTES
    assert 30e3 < v[ncu_metrics.DURATION] < 80e3  # ns: ~47.5 us at ncu's clocks
    assert 0.030 < summary["duration_ms"] < 0.080
    assert 2.0 < summary["achieved_tbps"] < 3.4  # an H100's HBM3 peaks at 3.35 TB/s
    assert summary["bound"] == "memory"
    assert summary["memory_pct"] >= roofline.BUSY_PCT > summary["sm_pct"]
    # float4 loads: every sector of the input read once, 16 sectors per warp request.
    assert v["l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum"] == INPUT_BYTES // SECTOR
    assert v["l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum"] == INPUT_BYTES // WARP_FLOAT4_BYTES
    # Summing a row takes at least cols - 1 adds; the tree reduction adds some, not a second pass.
    assert summary["precision"] == "fp32"
    assert ROWS * (COLS - 1) <= summary["flops"]["fp32"] < 2 * ROWS * COLS


def test_recorded_row_sum_judge_block():
    block = roofline.judge_block(_recorded_summary())
    assert block["time"].endswith("over 1 launch")
    assert block["bound"].startswith("memory (")
    assert block["global loads"].startswith("16 sectors/request")
    assert "16 for 16-byte vectors" in block["global loads"]
    assert block["occupancy"].endswith("100% theoretical")  # 256 threads, few registers
    assert block["top stalls"].startswith("long_scoreboard")  # waiting on global loads


@pytest.mark.parametrize(
    "metric",
    [
        ncu_metrics.DURATION,  # us: ncu 2025.3's short spelling
        ncu_metrics.DRAM_READ,  # Mbyte
        ncu_metrics.DRAM_WRITE,
        ncu_metrics.SM_PCT,
        ncu_metrics.MEMORY_PCT,
        ncu_metrics.DRAM_PCT,
        "gpc__cycles_elapsed.avg.per_second",  # Ghz
        "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum",  # thousands separators
        "launch__registers_per_thread",
    ],
)
def test_recorded_details_page_gives_the_raw_pages_figures(metric):
    (raw,) = _recorded("raw")
    (details,) = _recorded("details")
    assert (details.name, details.block, details.grid) == (raw.name, raw.block, raw.grid)
    assert set(details.values) == set(ncu_metrics.metrics_for((9, 0)))
    # The details page rounds to two decimals in its auto unit.
    assert details.values[metric] == pytest.approx(raw.values[metric], rel=5e-3, abs=0.01)


# -- the ncu process -----------------------------------------------------------------------------


@pytest.fixture
def fake_ncu(tmp_path, monkeypatch):
    """Install a fake ncu in MODE; returns a reader of the argument lists it was called with."""
    monkeypatch.setenv("KERNELWRIGHT_HOME", str(tmp_path / "home"))
    prof.reset_unavailable()
    (tmp_path / "log").mkdir()
    arglog = tmp_path / "log" / "ncu-calls.jsonl"
    # The fake ncu runs inside the worker's sandbox: only its log's folder is opened to it.
    real_worker = prof.Worker

    def worker_that_may_log(*args, writable=(), **kwargs):
        return real_worker(*args, writable=[*writable, arglog.parent], **kwargs)

    monkeypatch.setattr(prof, "Worker", worker_that_may_log)

    def install(mode: str) -> callable:
        wrapper = tmp_path / f"ncu-{mode}"
        wrapper.write_text(
            f'#!/bin/sh\nexec "{sys.executable}" "{FIXTURES / "fake_ncu.py"}" {mode} '
            f'"{FIXTURES / "raw_h100.csv"}" "{arglog}" "$@"\n'
        )
        wrapper.chmod(0o755)
        monkeypatch.setenv(ncu.NCU_ENV, str(wrapper))

        def calls() -> list[dict]:
            if not arglog.exists():
                return []
            return [json.loads(line) for line in arglog.read_text().splitlines()]

        return calls

    yield install
    prof.reset_unavailable()


CANDIDATE = '''
import torch
from torch.utils.cpp_extension import load_inline
src = r"""
template <int B> __global__ void reduce_rows(const float* x, float* y, int r, int c) {}
__global__ void matmul_tiled(const float* a, const float* b, float* c, int n) {}
namespace ns { __global__ void scan_tail(int* x, int n) {} }
"""
class ModelNew(torch.nn.Module):
    def forward(self, x):
        return x
'''


def _files(tmp_path: Path) -> tuple[Path, Path]:
    problem = Path(__file__).parent.parent / "core" / "suite" / "problems" / "02_row_sum.py"
    candidate = tmp_path / "cand.py"
    candidate.write_text(CANDIDATE)
    return problem, candidate


def test_profile_runs_ncu_on_the_candidates_own_kernels_and_summarises(fake_ncu, tmp_path):
    calls = fake_ncu("ok")
    problem, candidate = _files(tmp_path)
    keep = tmp_path / "kept" / "cand.ncu-rep"
    result = prof.profile_candidate(problem, candidate, capability=(9, 0), keep_report=keep)
    assert result.ok, result.message + result.log
    assert result.device_name == "NVIDIA H100 80GB HBM3"
    assert [k["kernel"] for k in result.kernels] == ["matmul_tiled", "reduce_rows", "scan_tail"]
    assert result.report == str(keep) and keep.read_bytes() == b"fake report"
    (call,) = calls()
    args = call["args"]
    assert args[args.index("--profile-from-start") + 1] == "off"
    assert args[args.index("--kernel-name") + 1] == ncu.kernel_filter(KERNELS)
    requested = args[args.index("--metrics") + 1].split(",")
    assert requested == ncu_metrics.metrics_for((9, 0))
    assert "sm__ops_path_tensor_src_fp16.sum" in requested
    assert args[-3:-1] == ["-m", "kernelwright.verifier.profile_target"]  # the target, isolated
    assert Path(call["cwd"]).parent == Path(os.environ["KERNELWRIGHT_HOME"]) / "scratch"
    judge = result.judge_metrics()
    assert judge is not None and judge["reduce_rows"]["bound"].startswith("memory")


def test_counters_not_permitted_is_unavailable_with_the_driver_fix_and_not_retried(
    fake_ncu, tmp_path
):
    calls = fake_ncu("perm")
    problem, candidate = _files(tmp_path)
    first = prof.profile_candidate(problem, candidate)
    assert first.status == "unavailable"
    assert "NVreg_RestrictProfilingToAdminUsers=0" in first.message
    assert "sudo" not in first.message
    second = prof.profile_candidate(problem, candidate)
    assert second.status == "unavailable" and second.message == first.message
    # the second candidate did not start ncu again (as root the first one tried twice: below)
    assert len(calls()) == (2 if _root_in_full_sandbox() else 1)


def _root_in_full_sandbox() -> bool:
    return os.geteuid() == 0 and sandbox().level in ("bwrap", "namespaces")


def test_root_profiles_again_with_its_capabilities_when_counters_need_them(fake_ncu, tmp_path):
    if not _root_in_full_sandbox():
        pytest.skip("only root in the full sandbox gives up capabilities that ncu may need")
    calls = fake_ncu("perm_unless_capable")
    problem, candidate = _files(tmp_path)
    result = prof.profile_candidate(problem, candidate, capability=(9, 0))
    assert result.ok, result.message + result.log
    assert len(calls()) == 2  # refused without capabilities, then counted with them


def test_missing_ncu_is_unavailable_with_how_to_install(fake_ncu, tmp_path, monkeypatch):
    fake_ncu("ok")
    monkeypatch.setenv(ncu.NCU_ENV, str(tmp_path / "no-such-ncu"))
    problem, candidate = _files(tmp_path)
    result = prof.profile_candidate(problem, candidate)
    assert result.status == "unavailable"
    assert "KERNELWRIGHT_NCU" in result.message


def test_an_ncu_error_is_a_failed_profile_that_does_not_stop_later_ones(fake_ncu, tmp_path):
    calls = fake_ncu("error")
    problem, candidate = _files(tmp_path)
    result = prof.profile_candidate(problem, candidate)
    assert result.status == "failed"
    assert "An error was reported by the driver" in result.message
    prof.profile_candidate(problem, candidate)
    assert len(calls()) == 2


def test_a_hanging_profile_is_killed_at_its_time_limit(fake_ncu, tmp_path):
    fake_ncu("hang")
    problem, candidate = _files(tmp_path)
    started = time.monotonic()
    result = prof.profile_candidate(problem, candidate, timeout_s=3)
    assert time.monotonic() - started < 30
    assert result.status == "failed" and "did not finish within 3 s" in result.message


def test_the_real_target_runs_under_the_launcher_and_reports_back(fake_ncu, tmp_path):
    fake_ncu("target")  # the fake execs the target command kernelwright gave it
    problem, candidate = _files(tmp_path)
    result = prof.profile_candidate(problem, candidate, timeout_s=120)
    assert result.status == "failed"
    assert "the profiled run failed: the profiling worker sees no CUDA device" in result.message


def test_a_candidate_without_kernels_is_not_profiled(fake_ncu, tmp_path):
    calls = fake_ncu("ok")
    problem, candidate = _files(tmp_path)
    candidate.write_text("import torch\nclass ModelNew(torch.nn.Module):\n    pass\n")
    result = prof.profile_candidate(problem, candidate)
    assert result.status == "failed" and "no __global__ kernel" in result.message
    assert calls() == []


def test_a_fault_in_the_profiler_itself_is_a_failed_profile(fake_ncu, tmp_path, monkeypatch):
    fake_ncu("ok")
    monkeypatch.setattr(prof.ncu, "parse_csv", lambda text: 1 / 0)
    problem, candidate = _files(tmp_path)
    result = prof.profile_candidate(problem, candidate)
    assert result.status == "failed" and "ZeroDivisionError" in result.message


def test_diagnose_tells_lasting_failures_from_one_off_errors():
    permission = ncu.diagnose("==ERROR== ERR_NVGPUCTRPERM - The user does not have permission")
    assert permission == (ncu.PERMISSION_HELP, True)
    old_driver = ncu.diagnose("==ERROR== Profiling requires a newer driver version (>= 575)")
    assert old_driver is not None and old_driver[1] and "driver" in old_driver[0]
    gpu = ncu.diagnose("==ERROR== The GPU is not supported by this version of Nsight Compute")
    assert gpu is not None and gpu[1]
    one_off = ncu.diagnose("==PROF== Connected\n==ERROR== Failed to profile kernel in process 7")
    assert one_off == ("ncu failed: Failed to profile kernel in process 7", False)
    assert ncu.diagnose("==PROF== Report: /tmp/x.ncu-rep\n") is None
