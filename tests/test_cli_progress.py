"""Progress and tables of the long commands, in-process (typer's CliRunner), evaluation faked:
`optimize` prints one line per finished candidate (round, status, speedup with its spread), counts
the rounds a replay file really holds, ends a finished script as planned and prints a per-round
table; `kernelwright suite` never cuts a path."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from fakes import coder, fake_evaluate, judge
from kernelwright import executors as executors_module
from kernelwright.cli import app, out
from kernelwright.records import SampleStats, TimingReport
from typer.testing import CliRunner

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PROBLEM = FIXTURES / "problems" / "scale_add.py"
RATIOS = {1.5: [1.5, 1.45, 1.6, 1.52, 1.4], 1.1: [1.1, 0.9, 1.3, 1.0, 1.2]}


def timed_evaluate(problem_path, candidate_path, options, device_lock=None):
    """fake_evaluate, with the per-round ratios a real timing would have."""
    result = fake_evaluate(problem_path, candidate_path, options, device_lock)
    if result.speedup is None:
        return result
    stats = SampleStats(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 10)
    ratios = RATIOS[result.speedup]
    timing = TimingReport("fake", stats, stats, result.speedup, ratios, 1, 1, 0, {})
    return dataclasses.replace(result, timing=timing, speedup_p20=None, within_noise=None)


@pytest.fixture
def fake_eval(monkeypatch):
    monkeypatch.setattr(executors_module, "evaluate", timed_evaluate)
    monkeypatch.setattr(executors_module, "check_reference", lambda *args, **kwargs: None)


def test_optimize_prints_a_line_per_candidate_and_a_table_per_round(tmp_path, fake_eval):
    script = tmp_path / "script.jsonl"
    lines = [
        coder("compile_error"),
        judge("repair"),
        coder("correct 1.1"),
        judge("optimize"),
        coder("correct 1.5"),
    ]
    script.write_text("".join(json.dumps(line) + "\n" for line in lines))
    db = f"sqlite:///{tmp_path / 'h.db'}"
    args = ["optimize", str(PROBLEM), "--model", f"replay:{script}", "--target", "cpu"]
    result = CliRunner().invoke(app, [*args, "--db", db], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    progress = result.stderr
    # the counter counts the 3 rounds the script holds, not the default 10
    assert "round 1/3" in progress and "/10" not in progress
    finished = [
        line for line in progress.splitlines() if " · " in line and "candidates," not in line
    ]
    assert [line.split(" · ")[0] for line in finished] == ["round 1", "round 2", "round 3"]
    assert finished[0].split(" · ")[2].startswith("compile_error: compile_error here")
    assert finished[1].endswith("correct · 1.1x (p20-p80 0.98-1.22, within noise)")
    assert finished[2].endswith("correct · 1.5x (p20-p80 1.44-1.54)")
    summary = result.stdout
    flat = " ".join(summary.split())
    assert "the scripted replies of script.jsonl are all used (3 rounds)" in flat
    assert "no more" not in summary and "exhausted" not in summary
    assert "best 1.5x (p20-p80 1.44-1.54), candidate" in flat
    assert "how they ended" in summary and "1 compile_error" in summary
    assert max(len(line) for line in summary.splitlines()) <= 80

    data = json.loads(
        CliRunner()
        .invoke(
            app, ["runs", "show", flat.rsplit("runs show ", 1)[1].strip(), "--db", db, "--json"]
        )
        .stdout
    )
    assert [r["round"] for r in data["rounds"]] == [1, 2, 3]


def test_optimize_json_has_the_spread_and_the_rounds(tmp_path, fake_eval):
    script = tmp_path / "script.jsonl"
    script.write_text(json.dumps(coder("correct 1.1")) + "\n")
    db = f"sqlite:///{tmp_path / 'h.db'}"
    args = ["optimize", str(PROBLEM), "--model", f"replay:{script}", "--target", "cpu", "--json"]
    result = CliRunner().invoke(app, [*args, "--db", db], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["best_speedup"] == 1.1 and data["best_within_noise"] is True
    assert (data["best_speedup_p20"], data["best_speedup_p80"]) == pytest.approx((0.98, 1.22))
    assert data["per_round"][0]["statuses"] == {"correct": 1}


def test_suite_never_cuts_a_path(monkeypatch):
    monkeypatch.setattr(out, "width", 80)
    result = CliRunner().invoke(app, ["suite"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "…" not in text
    table = [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]
    assert table and max(len(line) for line in table) <= 80  # the paths are on lines of their own
    from kernelwright.suite import builtin_dir

    assert f"problems in {builtin_dir().resolve()}:" in text
    cpu = builtin_dir().resolve().parent / "cpu" / "01_gelu.py"
    assert f"kernelwright evaluate 01_gelu {cpu} --target cpu" in text


def test_bench_prints_a_line_per_candidate_with_its_problem(tmp_path, fake_eval):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "scale_add.py").write_text(PROBLEM.read_text())
    script = tmp_path / "script.jsonl"
    script.write_text(json.dumps({**coder("correct 1.5"), "problem": "scale_add"}) + "\n")
    db = f"sqlite:///{tmp_path / 'h.db'}"
    args = ["bench", str(suite), "--model", f"replay:{script}", "--target", "cpu", "--rounds", "1"]
    result = CliRunner().invoke(app, [*args, "--db", db], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert " · scale_add · correct · 1.5x (p20-p80 1.44-1.54)" in result.stderr
    assert "how they ended" in result.stdout and "1.5x" in result.stdout


def test_evaluate_prints_the_speedup_with_its_spread(tmp_path, monkeypatch):
    import kernelwright.evaluate as evaluate_module

    def fake(problem, candidate, options, device_lock=None, on_phase=None):
        on_phase("building the candidate")
        (tmp_path / "c.py").write_text("# RESULT: correct 1.1\n")  # what the fake scores
        return timed_evaluate(problem, tmp_path / "c.py", options)

    monkeypatch.setattr(evaluate_module, "evaluate", fake)
    monkeypatch.setattr(out, "width", 80)
    candidate = FIXTURES / "candidates" / "scale_add_ok.py"
    args = ["evaluate", str(PROBLEM), str(candidate), "--target", "cpu"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "speedup 1.1x (median of 5 rounds, p20-p80 0.98-1.22, within noise)" in text
