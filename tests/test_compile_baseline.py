"""`--compile-baseline`: the reference also timed under torch.compile, and the figures against it.

The end-to-end tests compile small problems with inductor's C++ backend (g++), in the
reference-side worker (and, `gpu`-marked, with Triton on CUDA); the summary math is checked on a
run recorded by hand with known numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kernelwright import report
from kernelwright.bench import bench_summary
from kernelwright.cli.bench import render_summary
from kernelwright.executors import result_from_json
from kernelwright.records import (
    CompiledReference,
    EvaluationResult,
    SampleStats,
    Status,
    TimingReport,
    compiled_text,
    to_jsonable,
)
from kernelwright.store import repo
from kernelwright.store.db import open_engine
from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
CPU = ROOT / "core" / "suite" / "cpu"


def _stats(median_ms: float) -> SampleStats:
    return SampleStats(median_ms, median_ms, median_ms, median_ms, median_ms, median_ms, 10)


def _timing(candidate_ms: float, compiled: CompiledReference | None) -> TimingReport:
    return TimingReport(
        method="perf_counter_cold_cache",
        reference=_stats(1.0),
        candidate=_stats(candidate_ms),
        speedup=1.0 / candidate_ms,
        round_ratios=[1.0 / candidate_ms],
        host_reference_ms=1.0,
        host_candidate_ms=candidate_ms,
        flush_bytes=1 << 20,
        settings={},
        compiled_reference=compiled.for_candidate(candidate_ms) if compiled else None,
    )


def _result(candidate_ms: float | None, compiled: CompiledReference | None) -> EvaluationResult:
    timing = _timing(candidate_ms, compiled) if candidate_ms is not None else None
    return EvaluationResult(
        status=Status.CORRECT if timing else Status.INCORRECT,
        reason="" if timing else "wrong",
        target="cpu",
        problem="/p.py",
        problem_hash="h",
        candidate="c.py",
        trials=1,
        speedup=timing.speedup if timing else None,
        candidate_ms=candidate_ms,
        reference_ms=1.0 if timing else None,
        timing=timing,
    )


def _compiled(ms: float) -> CompiledReference:
    return CompiledReference("default", _stats(ms), _stats(1.0), 1.0 / ms, compile_s=4.0)


FAILED = CompiledReference("default", note="torch.compile failed: InvalidCxxCompiler: no g++")


def _recorded_bench(tmp_path: Path, compile_baseline: bool) -> tuple[object, str]:
    """Four level-1 problems: a (2x over torch.compile), b (0.5x), c (torch.compile failed),
    d (no correct kernel); a also has a slower correct candidate."""
    engine = open_engine(f"sqlite:///{tmp_path / 'h.db'}")
    names = ["a", "b", "c", "d"]
    config = {
        "problems": [f"/suite/level1/{n}.py" for n in names],
        "settings": {"compile_baseline": compile_baseline},
    }
    run = repo.start_run(engine, "bench", "cpu", config)
    recorded = [
        ("a", _result(0.8, _compiled(1.0))),  # 1.25x over eager, 1.25x over compiled
        ("a", _result(0.5, _compiled(1.0))),  # best: 2x over eager, 2x over compiled
        ("b", _result(0.5, _compiled(0.25))),  # 2x over eager, 0.5x over compiled
        ("c", _result(0.25, FAILED)),  # 4x over eager, no compiled time
        ("d", _result(None, None)),
    ]
    for i, (name, result) in enumerate(recorded):
        problem = {"content_hash": name * 64, "name": name, "path": f"/{name}.py", "source": "x"}
        repo.add_candidate(engine, run, problem, f"src {i}", str(i), result)
    repo.finish_run(engine, run)
    return engine, run


def test_summary_against_torch_compile_from_recorded_numbers(tmp_path):
    engine, run = _recorded_bench(tmp_path, compile_baseline=True)
    s = bench_summary(engine, run)
    by_name = {p["name"]: p for p in s["problems"]}
    assert by_name["a"]["best_speedup"] == pytest.approx(2.0)
    assert by_name["a"]["compiled_reference_ms"] == pytest.approx(1.0)
    assert by_name["a"]["best_speedup_vs_compile"] == pytest.approx(2.0)
    assert by_name["b"]["best_speedup_vs_compile"] == pytest.approx(0.5)
    assert by_name["c"]["best_speedup_vs_compile"] is None
    assert by_name["c"]["compile_note"].startswith("torch.compile failed: InvalidCxxCompiler")
    assert by_name["d"]["compiled_reference_ms"] is None and by_name["d"]["compile_note"] is None
    vs = s["vs_torch_compile"]
    # over all four problems: a and b have a compiled time; c (failed) and d (unsolved) do not
    assert vs["measured"] == 2
    assert vs["fast_p"]["fast_0"] == pytest.approx(2 / 4)
    assert vs["fast_p"]["fast_1"] == pytest.approx(1 / 4)
    assert vs["fast_p"]["fast_2"] == pytest.approx(0.0)  # strictly more than 2x
    assert vs["geomean_speedup"] == pytest.approx(1.0)  # sqrt(2 * 0.5)
    assert s["levels"]["1"]["vs_torch_compile"] == vs
    # the eager figures are as without the flag
    assert s["fast_p"]["fast_1"] == pytest.approx(3 / 4) and s["solved"] == 3

    console = Console(record=True, width=200)
    render_summary(console, s)
    text = console.export_text()
    assert "compiled ms" in text and "vs compiled" in text  # the reference under torch.compile
    assert "against torch.compile (2 problems" in text and "fast_1=0.25" in text
    assert "c: no torch.compile time: torch.compile failed: InvalidCxxCompiler" in text

    page = report.render_report(engine, run)
    assert "speedup vs torch.compile" in page and "2x" in page
    assert "torch.compile reference not timed: torch.compile failed" in page


def test_summary_without_the_flag_is_unchanged(tmp_path):
    engine, run = _recorded_bench(tmp_path, compile_baseline=False)
    s = bench_summary(engine, run)
    assert "vs_torch_compile" not in s and "vs_torch_compile" not in s["levels"]["1"]
    assert not any("compiled_reference_ms" in p for p in s["problems"])
    console = Console(record=True, width=200)
    render_summary(console, s)
    assert "torch.compile" not in console.export_text()


def test_compiled_reference_json_round_trip():
    plain = to_jsonable(_timing(0.5, None))
    assert "compiled_reference" not in plain  # timings without the flag read as before
    result = _result(0.5, _compiled(1.0))
    data = to_jsonable(result)
    stored = data["timing"]["compiled_reference"]
    assert stored["median_ms"] == 1.0 and stored["speedup"] == pytest.approx(2.0)
    assert stored["eager_median_ms"] == 1.0 and stored["compile_s"] == 4.0
    assert result_from_json(data) == result  # the Ray executor's way back
    assert compiled_text(data["timing"]) == "1 ms, speedup over it 2x"
    failed = to_jsonable(_timing(0.5, FAILED))
    assert failed["compiled_reference"] == {"mode": "default", "note": FAILED.note}
    assert compiled_text(failed).startswith("not timed: torch.compile failed")


@pytest.mark.slow
def test_bench_with_compile_baseline_records_and_reports_it(cli, tmp_path):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    code = (CPU / "01_gelu.py").read_text()
    replies = [
        {"role": "coder", "problem": "01_gelu", "text": f"A kernel.\n```python\n{code}```\n"},
        {"role": "judge", "problem": "01_gelu", "text": '{"bottleneck": "x", "plan": "y"}'},
    ]
    replay = tmp_path / "r.jsonl"
    replay.write_text("".join(json.dumps(r) + "\n" for r in replies))
    args = ["bench", "builtin", "--problems", "1", "--model", f"replay:{replay}", "--rounds", "1"]
    args += ["--target", "cpu", "--trials", "1", "--compile-baseline", "--json", "--db", url]
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    s = json.loads(result.stdout)
    (gelu,) = s["problems"]
    assert gelu["correct"] == 1, s
    assert gelu["compiled_reference_ms"] > 0 and gelu["compile_note"] is None
    engine = open_engine(url)
    evaluation = repo.get_candidate(engine, gelu["best_candidate_id"])["evaluation"]
    compiled = evaluation["timing"]["compiled_reference"]
    assert compiled["mode"] == "default" and compiled["compile_s"] > 0
    assert compiled["samples"] >= 15 and compiled["eager_median_ms"] > 0
    assert gelu["best_speedup_vs_compile"] == pytest.approx(
        compiled["median_ms"] / evaluation["candidate_ms"]
    )
    assert s["vs_torch_compile"]["measured"] == 1
    assert s["vs_torch_compile"]["geomean_speedup"] == pytest.approx(
        gelu["best_speedup_vs_compile"]
    )
    # the flag is part of the run's settings, which --resume reads back
    assert repo.show_run(engine, s["run_id"])["config"]["settings"]["compile_baseline"] is True
    shown = cli("runs", "show", s["run_id"], "--db", url)
    assert shown.returncode == 0 and "against torch.compile" in shown.stdout, shown.stdout


@pytest.mark.slow
def test_problem_that_torch_compile_cannot_build_still_evaluates(cli, fixtures_dir, tmp_path):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    problem = fixtures_dir / "problems" / "scale_add_no_compile.py"
    candidate = fixtures_dir / "candidates" / "scale_add_ok.py"
    args = ["evaluate", str(problem), str(candidate), "--target", "cpu", "--trials", "1"]
    result = cli(*args, "--compile-baseline", "--save", "--db", url)
    assert result.returncode == 0, result.stderr
    assert "status" in result.stdout and "correct" in result.stdout
    assert "not timed: torch.compile failed" in " ".join(result.stdout.split())
    engine = open_engine(url)
    (run,) = repo.list_runs(engine)
    (row,) = repo.candidate_rows(engine, run["id"])
    assert row.status == "correct" and row.speedup is not None
    timing = repo.get_candidate(engine, row.id)["evaluation"]["timing"]
    note = timing["compiled_reference"]["note"]
    assert "median_ms" not in timing["compiled_reference"]
    assert note.startswith("torch.compile failed:") and "InvalidCxxCompiler" in note
    assert "\n" not in note


def test_bench_resume_keeps_the_flag(tmp_path):
    """The flag is stored with the run's settings; `bench --resume RUN` evaluates with it."""
    from kernelwright import settings
    from kernelwright.cli.bench import BenchRequest, build_bench

    (tmp_path / "suite").mkdir()
    source = (ROOT / "tests" / "fixtures" / "problems" / "scale_add.py").read_text()
    (tmp_path / "suite" / "1_scale_add.py").write_text(source)
    replay = tmp_path / "r.jsonl"
    replay.write_text('{"role": "coder", "text": "unused"}\n')  # an empty one is bad input
    db = f"sqlite:///{tmp_path / 'h.db'}"
    request = BenchRequest(str(tmp_path / "suite"), db=db)

    def flags(**values):
        return settings.load(settings.from_flags(**values))

    model = f"replay:{replay}"
    first = build_bench(request, flags(model=model, target="cpu", compile_baseline=True))
    assert [loop.options.compile_baseline for loop in first.loops] == [True]
    first.lock.release()  # as its process would on ending; a run is resumed by one at a time
    resumed = build_bench(BenchRequest(None, resume=first.run_id, db=db), flags())
    assert [loop.options.compile_baseline for loop in resumed.loops] == [True]
    plain = build_bench(request, flags(model=model, target="cpu", compile_baseline=False))
    assert [loop.options.compile_baseline for loop in plain.loops] == [False]


@pytest.mark.gpu
def test_compile_baseline_on_cuda(cli, fixtures_dir):
    """torch.compile's CUDA backend (Triton) times the reference the same way."""
    problem = fixtures_dir / "problems" / "scale_add.py"
    candidate = fixtures_dir / "candidates" / "scale_add_cuda_ok.py"
    args = ["evaluate", str(problem), str(candidate), "--target", "cuda", "--trials", "1"]
    result = cli(*args, "--compile-baseline", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "correct", data["reason"] + data["log"][-3000:]
    compiled = data["timing"]["compiled_reference"]
    assert "note" not in compiled, compiled
    assert compiled["median_ms"] > 0 and compiled["samples"] >= 15 and compiled["compile_s"] > 0
    assert compiled["speedup"] == pytest.approx(compiled["median_ms"] / data["candidate_ms"])


def test_a_resumed_run_can_drop_profiling_but_cannot_add_the_baseline():
    from kernelwright.cli.optimize import resumed_settings
    from kernelwright.errors import BadInput

    assert resumed_settings({"compile_baseline": False}, "r1", False, None) == {}
    assert resumed_settings({"compile_baseline": True}, "r1", True, "none") == {"profile": "none"}
    with pytest.raises(BadInput, match="started without --compile-baseline"):
        resumed_settings({"compile_baseline": False}, "r1", True, None)
