"""`kernelwright optimize` as a user runs it: the shipped demo end to end (real C++ builds on the
cpu target), --width 2, and bad input answered with one line and exit code 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kernelwright.store import repo
from kernelwright.store.db import open_engine

ROOT = Path(__file__).resolve().parent.parent
NO_KEYS = {"OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": ""}


def _one_line_error(result, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr
    text = " ".join(result.stderr.split())
    for needle in needles:
        assert needle in text, result.stderr


@pytest.mark.slow
def test_the_shipped_demo_runs_the_whole_loop_without_a_key(cli, tmp_path):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    result = cli("optimize", "02_row_sum", "--json", "--db", url, env_extra=NO_KEYS)
    assert result.returncode == 0, result.stderr
    assert "running the shipped demo" in result.stderr
    data = json.loads(result.stdout)
    for key in ("run_id", "best_candidate_id", "best_speedup", "status", "rounds", "tokens"):
        assert key in data
    assert data["status"] == "finished" and "are all used (3 rounds)" in data["stop_reason"]
    assert data["cost_usd"] == 0.0 and data["tokens"]["input"] > 0
    engine = open_engine(url)
    rows = repo.candidate_rows(engine, data["run_id"])
    assert [(r.round, r.status) for r in rows] == [
        (1, "compile_error"),
        (2, "correct"),
        (3, "correct"),
    ]
    assert rows[2].speedup > 2 * rows[1].speedup  # the demo's third kernel is much faster
    assert data["best_candidate_id"] == rows[2].id and data["best_speedup"] == rows[2].speedup
    assert data["rounds"] == 3
    exported = tmp_path / "kernel.py"
    result = cli("runs", "export", data["run_id"], "--out", str(exported), "--db", url)
    assert result.returncode == 0, result.stderr
    assert "class ModelNew" in exported.read_text()


@pytest.mark.slow
def test_width_two_proposes_two_candidates_a_round_and_keeps_the_best(cli, tmp_path):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    replay = ROOT / "tests" / "fixtures" / "replay" / "row_sum_width2.jsonl"
    result = cli(
        "optimize",
        "02_row_sum",
        "--model",
        f"replay:{replay}",
        "--width",
        "2",
        "--target",
        "cpu",
        "--json",
        "--db",
        url,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    rows = repo.candidate_rows(open_engine(url), data["run_id"])
    assert sorted((r.round, r.status) for r in rows) == [
        (1, "compile_error"),
        (1, "compile_error"),
        (2, "correct"),
        (2, "correct"),
        (3, "correct"),
        (3, "correct"),
    ]
    best = max((r for r in rows if r.status == "correct"), key=lambda r: r.speedup)
    assert best.round == 3 and data["best_candidate_id"] == best.id


def test_bad_input_is_one_line_and_exit_two(cli, tmp_path):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    scale_add = str(ROOT / "tests" / "fixtures" / "problems" / "scale_add.py")
    cases = [
        (["optimize"], ["name a PROBLEM"]),
        (["optimize", "--resume", "nope"], ["no run 'nope'"]),
        (["optimize", "02_row_sum", "--width", "0"], ["--width must be at least 1"]),
        (["optimize", "02_row_sum", "--budget-usd", "nan"], ["--budget-usd must be a finite"]),
        (["optimize", "02_row_sum", "--timeout", "0"], ["--timeout must be a finite number"]),
        (["optimize", "02_row_sum", "--time-limit", "-1"], ["--time-limit must be a finite"]),
        (["optimize", "02_row_sum", "--target", "gpu"], ["unknown target 'gpu'"]),
        (["optimize", "no_such_problem"], ["kernelwright suite"]),
        (["optimize", scale_add], ["no model", "OPENAI_API_KEY"]),
        (["optimize", "02_row_sum", "--model", "replay:/nowhere.jsonl"], ["not found"]),
        (["optimize", "02_row_sum", "--model", "openai:gpt-5"], ["OPENAI_API_KEY is not set"]),
    ]
    for args, needles in cases:
        _one_line_error(cli(*args, "--db", url, env_extra=NO_KEYS), *needles)
    priced = cli(
        "optimize",
        "02_row_sum",
        "--model",
        "openai:mystery-model",
        "--budget-usd",
        "1",
        "--db",
        url,
        env_extra={"OPENAI_API_KEY": "sk-test"},
    )
    _one_line_error(priced, "no price")
    assert repo.list_runs(open_engine(url)) == []  # nothing half-written


def test_resume_of_an_evaluate_run_is_refused(cli, tmp_path):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    run_id = repo.start_run(open_engine(url), "evaluate", "cpu", {})
    _one_line_error(cli("optimize", "--resume", run_id, "--db", url), "only optimize runs")


def test_resume_refuses_options_it_would_ignore(cli, tmp_path):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    run_id = repo.start_run(open_engine(url), "optimize", "cpu", {})
    for args, needle in [
        (["03_softmax", "--resume", run_id], "drop PROBLEM"),
        (["--resume", run_id, "--target", "cuda"], "keeps its target"),
    ]:
        _one_line_error(cli("optimize", *args, "--db", url), needle)


def _default_signals() -> None:
    # As from a terminal: started in the background of a script (`nohup ... &`, as CI runners
    # may), these tests would pass on SIGINT ignored, and Python then never raises
    # KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _start_demo(url: str, home: Path) -> subprocess.Popen[str]:
    env = {**os.environ, **NO_KEYS, "KERNELWRIGHT_HOME": str(home)}
    return subprocess.Popen(
        [sys.executable, "-m", "kernelwright.cli", "optimize", "02_row_sum", "--db", url],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_signals,
    )


def _wait_for(proc: subprocess.Popen[str], needle: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if needle in line:
            return
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"never saw {needle!r}")


def _workers_under(home: Path) -> list[int]:
    """Processes whose working directory is inside `home` (every worker runs in a scratch
    folder there)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(home) in os.readlink(entry / "cwd"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _interrupt_demo(url: str, kw_home, sig: int) -> dict:
    """Start the demo run, send `sig` while it builds: it must stop like Ctrl-C. Its run."""
    proc = _start_demo(url, kw_home)
    _wait_for(proc, "building and checking")
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == 130
    assert "resume with: kernelwright optimize --resume" in proc.stderr.read()
    time.sleep(0.5)
    assert _workers_under(kw_home / "scratch") == []  # no worker outlives the run
    (run,) = repo.list_runs(open_engine(url))
    assert run["status"] == "interrupted"
    return run


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_kill_minus_nine_loses_nothing_committed(cli, kw_home, tmp_path):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    run = _interrupt_demo(url, kw_home, signal.SIGINT)
    engine = open_engine(url)
    assert [r.status for r in repo.candidate_rows(engine, run["id"])] == ["pending"]

    proc = _start_demo(url, kw_home)  # a second run, killed without a chance to clean up
    _wait_for(proc, "building and checking")
    proc.kill()
    proc.wait(timeout=60)
    second = next(r for r in repo.list_runs(engine) if r["id"] != run["id"])
    assert second["status"] == "running"
    assert [r.status for r in repo.candidate_rows(engine, second["id"])] == ["pending"]

    for run_id in (run["id"], second["id"]):
        result = cli("optimize", "--resume", run_id, "--json", "--db", url, env_extra=NO_KEYS)
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        rows = repo.candidate_rows(engine, run_id)
        assert [(r.round, r.status) for r in rows] == [
            (1, "compile_error"),
            (2, "correct"),
            (3, "correct"),
        ]
        assert data["run_id"] == run_id and data["best_candidate_id"] == rows[2].id
        assert repo.show_run(engine, run_id)["status"] == "finished"


@pytest.mark.slow
def test_sigterm_stops_a_run_as_ctrl_c_does(kw_home, tmp_path):
    # timeout(1), batch schedulers and `docker stop` send SIGTERM, not SIGINT
    url = f"sqlite:///{tmp_path / 'h.db'}"
    _interrupt_demo(url, kw_home, signal.SIGTERM)  # asserts it stops as Ctrl-C does


def test_a_broken_reference_is_refused_before_any_call_or_run(cli, tmp_path):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    problem = tmp_path / "broken.py"
    source = (ROOT / "tests" / "fixtures" / "problems" / "scale_add.py").read_text()
    problem.write_text(
        source.replace("return [torch.randn(rows, dim)]", 'raise RuntimeError("boom")')
    )
    replies = tmp_path / "r.jsonl"
    replies.write_text(json.dumps({"role": "coder", "text": "never asked for"}) + "\n")
    result = cli("optimize", str(problem), "--model", f"replay:{replies}", "--target", "cpu",
                 "--db", url)  # fmt: skip
    _one_line_error(result, "get_inputs() raised RuntimeError: boom")
    assert repo.list_runs(open_engine(url)) == []  # no run, no call recorded
