"""On a CUDA GPU: shipped candidates are correct; faulting and endless kernels are contained.

Run where a GPU is visible: `python -m pytest -m gpu`. Elsewhere these tests skip.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from kernelwright.compiler.build import start_build
from kernelwright.problem import load_problem_dir
from kernelwright.suite import builtin_dir, candidates_for

pytestmark = pytest.mark.gpu

GPU_CHEATS = {
    "cuda_stale_output.py": ("incorrect", None),
    "cuda_side_stream.py": ("rejected", "hidden_work"),
    "cuda_aten_instead.py": ("rejected", "own_kernels_not_launched"),
    "cuda_host_compute.py": ("rejected", "output_type"),
}

SHIPPED = [
    pytest.param(p.path, candidates_for(p.path)["cuda"], id=p.name)
    for p in load_problem_dir(builtin_dir())
]


@pytest.fixture(scope="module")
def prebuilt(kw_home, fixtures_dir):
    """Build every CUDA candidate used below at once, so each test starts from the cache."""
    import os

    os.environ["KERNELWRIGHT_HOME"] = str(kw_home)
    sources = (
        [p.values[1] for p in SHIPPED]
        + [fixtures_dir / "candidates" / f"scale_add_cuda_{n}.py" for n in ("ok", "oob", "hang")]
        + [fixtures_dir / "cheats" / name for name in GPU_CHEATS]
    )
    with ThreadPoolExecutor(max_workers=8) as pool:
        builds = list(pool.map(lambda s: start_build(s, "cuda").result(), sources))
    return {str(s): b for s, b in zip(sources, builds, strict=True)}


def _evaluate(cli, problem, candidate, *extra):
    proc = cli("evaluate", str(problem), str(candidate), "--target", "cuda", "--json", *extra)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize(("problem", "candidate"), SHIPPED)
def test_shipped_cuda_candidate_is_correct(cli, prebuilt, problem, candidate):
    assert prebuilt[str(candidate)].ok, prebuilt[str(candidate)].log[-3000:]
    result = _evaluate(cli, problem, candidate, "--trials", "3")
    assert result["status"] == "correct", result["reason"] + result["log"][-3000:]
    assert result["cached"] is True
    env = result["environment"]
    assert env["gpu"] and env["torch_cuda"]
    assert result["timing"]["method"] == "cuda_events_cold_l2"
    assert result["timing"]["flush_bytes"] >= 2 * (env["l2_bytes"] or 0)
    assert result["speedup"] > 0
    # every timed call got new input values, made on the GPU fast enough to stay in budget
    refresh = result["timing"]["input_refresh"]
    assert refresh["refreshed"] > 0 and refresh["note"] == "", refresh
    # timed against a reference in its own worker; timed calls' outputs kept and compared
    observed = result["timing"]["observed"]
    assert observed["reference_inner_ms"] > 0 and observed["spot_reads"] >= 3, observed
    assert observed["candidate_inner_ms"] <= observed["candidate_outside_ms"] + 0.05, observed


def test_the_full_sandbox_runs_cuda_candidates(cli, prebuilt, fixtures_dir):
    """The namespaces, read-only filesystem and dropped capabilities leave CUDA working: where
    this fails, the machine's isolation note says why and workers ran less isolated."""
    problem, candidate = SHIPPED[0].values
    result = _evaluate(cli, problem, candidate, "--trials", "1")
    env = result["environment"]
    assert env["isolation"] == "namespaces", env.get("isolation_note")
    assert "isolation_note" not in env
    assert result["status"] == "correct", result["reason"] + result["log"][-3000:]


def test_illegal_address_then_endless_kernel_then_a_good_one(cli, prebuilt, fixtures_dir):
    problem = fixtures_dir / "problems" / "scale_add.py"
    cands = fixtures_dir / "candidates"

    oob = _evaluate(
        cli, problem, cands / "scale_add_cuda_oob.py", "--trials", "1", "--timeout", "60"
    )
    assert oob["status"] == "runtime_error", oob
    assert "illegal" in (oob["reason"] + oob["log"]).lower()

    start = time.monotonic()
    hang = _evaluate(
        cli, problem, cands / "scale_add_cuda_hang.py", "--trials", "1", "--timeout", "20"
    )
    assert hang["status"] == "timeout", hang
    assert time.monotonic() - start < 60

    good = _evaluate(cli, problem, cands / "scale_add_cuda_ok.py", "--trials", "2")
    assert good["status"] == "correct", good["reason"] + good["log"][-2000:]


@pytest.mark.parametrize(("name", "expected"), sorted(GPU_CHEATS.items()))
def test_gpu_cheat_is_caught(cli, prebuilt, fixtures_dir, name, expected):
    status, check = expected
    problem = fixtures_dir / "problems" / "scale_add.py"
    result = _evaluate(cli, problem, fixtures_dir / "cheats" / name, "--trials", "2")
    assert result["status"] == status, (result["reason"], result["log"][-2000:])
    if check:
        assert f"rejected by {check}" in result["reason"]


@pytest.mark.gpu
def test_optimize_on_cuda_builds_the_fast_layout_and_reads_the_gpu_sheet(cli, tmp_path):
    """The loop on the cuda target: a replayed candidate in the layout the coder is asked for
    (kernel-only .cu, TORCH_LIBRARY binding) builds and is correct; the prompt names the GPU."""
    import sqlalchemy as sa
    from kernelwright.store import repo
    from kernelwright.store.db import open_engine
    from kernelwright.store.schema import LlmCall

    url = f"sqlite:///{tmp_path / 'h.db'}"
    replay = Path(__file__).parent / "fixtures" / "replay" / "row_sum_cuda.jsonl"
    result = cli(
        "optimize", "02_row_sum", "--model", f"replay:{replay}", "--target", "cuda",
        "--rounds", "1", "--json", "--db", url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    engine = open_engine(url)
    (row,) = repo.candidate_rows(engine, data["run_id"])
    details = repo.get_candidate(engine, row.id)
    assert row.status == "correct", (row.reason, details["evaluation"])
    print("fast layout build:", details["build"], "speedup:", row.speedup)
    with sa.orm.Session(engine) as s:
        prompt = s.scalars(sa.select(LlmCall.prompt)).first()
    hardware = [line for line in prompt.splitlines() if line.startswith("Hardware: ")]
    assert hardware and "CPU" not in hardware[0]
    print(hardware)


PROFILED = {  # shipped problem → (FLOP precision, M, K, N) of its matmul; None: memory-bound
    "02_row_sum": None,  # reads 128 MiB once
    "05_matmul_fp32": ("fp32", 4096, 512, 1024),  # FFMA: 2*M*N*K FLOPs
    "06_matmul_fp16": ("tensor_fp16_bf16", 4096, 4096, 4096),  # wmma: 2*M*N*K tensor ops
}


@pytest.mark.parametrize("name", sorted(PROFILED))
def test_profile_of_shipped_candidates_counts_what_the_kernel_does(cli, prebuilt, name, tmp_path):
    from kernelwright.profiler.ncu import find_ncu

    if find_ncu() is None:
        pytest.skip("ncu is not installed")
    problem = next(p.values[0] for p in SHIPPED if p.id == name)
    candidate = candidates_for(problem)["cuda"]
    proc = cli("profile", str(problem), str(candidate), "--json", "--report", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    print(f"\n{name}: ncu {data['seconds']:.1f} s on {data['device_name']}")
    for kernel in data["kernels"]:
        print(json.dumps({k: v for k, v in kernel.items() if k != "metrics"}, indent=1))
    main = max(data["kernels"], key=lambda k: k["duration_ms"])
    assert main["duration_ms"] > 0 and main["bound"] in ("memory", "compute", "latency")
    if PROFILED[name] is None:
        assert main["dram_bytes"] >= 0.9 * 8192 * 4096 * 4
        assert main["bound"] == "memory"
    else:
        precision, m, k, n = PROFILED[name]
        assert main["flops"][precision] == pytest.approx(2 * m * n * k, rel=0.05)
