"""`optimize` and `bench` share their options, and each one reaches the settings the loop gets
(checked in-process: the loop and the bench are replaced by a stand-in that keeps its config);
`--dry-run` checks what a run would and writes nothing to the history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kernelwright.cli import app
from kernelwright.loop_config import OptimizeConfig
from kernelwright.store import repo
from kernelwright.store.db import open_engine
from typer.main import get_command

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "core" / "suite" / "demo" / "02_row_sum.jsonl"
FLAGS = [
    "--target",
    "cpu",
    "--model",
    f"replay:{DEMO}",
    "--judge-model",
    f"replay:{DEMO}",
    "--base-url",
    "http://localhost:1/v1",
    "--reasoning",
    "high",
    "--rounds",
    "3",
    "--width",
    "2",
    "--budget-usd",
    "1.5",
    "--target-speedup",
    "2",
    "--time-limit",
    "60",
    "--trials",
    "2",
    "--seed",
    "7",
    "--atol",
    "0.01",
    "--rtol",
    "0.02",
    "--timeout",
    "30",
    "--build-timeout",
    "40",
    "--compile-baseline",
    "--profile",
    "none",
]
EXPECTED = {
    "target": "cpu",
    "coder_model": f"replay:{DEMO}",
    "judge_model": f"replay:{DEMO}",
    "base_url": "http://localhost:1/v1",
    "reasoning": "high",
    "rounds": 3,
    "width": 2,
    "budget_usd": 1.5,
    "target_speedup": 2.0,
    "time_limit_s": 60.0,
    "trials": 2,
    "seed": 7,
    "atol": 0.01,
    "rtol": 0.02,
    "timeout_s": 30.0,
    "build_timeout_s": 40.0,
    "compile_baseline": True,
    "profile": "none",
}


class Captured(Exception):
    """Raised by the stand-ins with what they were given; the run itself never starts."""


def _options(name: str) -> set[str]:
    command = get_command(app).commands[name]
    found = {opt for p in command.params for opt in [*p.opts, *p.secondary_opts]}
    return {opt for opt in found if opt.startswith("--")}  # not the arguments


def test_bench_has_every_option_of_optimize_but_the_problem_ones():
    only_optimize = {"--inputs", "--get-inputs", "--init-args"}
    assert _options("optimize") - only_optimize <= _options("bench")
    for flag in ("--reasoning", "--time-limit", "--target-speedup", "--seed", "--timeout"):
        assert flag in _options("bench")
    assert {"--atol", "--rtol", "--dry-run"} <= _options("optimize")


def test_every_optimize_option_reaches_the_loop(cli_in_process, monkeypatch, tmp_path):
    def stand_in(engine, config, coder, judge, resume=None, **kw):
        raise Captured(config)

    monkeypatch.setattr("kernelwright.loop.Optimizer", stand_in)
    db = f"sqlite:///{tmp_path / 'h.db'}"
    with pytest.raises(Captured) as got:
        cli_in_process("optimize", "02_row_sum", *FLAGS, "--db", db)
    config: OptimizeConfig = got.value.args[0]
    assert {k: v for k, v in config.to_json().items() if k in EXPECTED} == EXPECTED
    assert config.problem.endswith("02_row_sum.py")


def test_every_bench_option_reaches_the_bench(cli_in_process, monkeypatch, tmp_path):
    def stand_in(engine, settings, problems, coder, judge, executor, workers, suite, **kw):
        raise Captured(settings, problems, workers)

    monkeypatch.setattr("kernelwright.bench.Bench", stand_in)
    db = f"sqlite:///{tmp_path / 'h.db'}"
    with pytest.raises(Captured) as got:
        cli_in_process("bench", "builtin", "--problems", "2", "--workers", "1", *FLAGS, "--db", db)
    config, problems, workers = got.value.args
    assert {k: v for k, v in config.to_json().items() if k in EXPECTED} == EXPECTED
    assert [p.stem for p in problems] == ["02_row_sum"] and workers == 1


def test_the_file_and_environment_reach_the_loop_and_flags_win(
    cli_in_process, monkeypatch, tmp_path
):
    def stand_in(engine, config, coder, judge, resume=None, **kw):
        raise Captured(config)

    monkeypatch.setattr("kernelwright.loop.Optimizer", stand_in)
    (tmp_path / "config.toml").write_text(
        f'model = "replay:{DEMO}"\ntarget = "cpu"\nrounds = 4\nwidth = 3\natol = 0.5\n'
    )
    env = {"KERNELWRIGHT_HOME": str(tmp_path), "KERNELWRIGHT_WIDTH": "2", "OPENAI_API_KEY": "k"}
    db = f"sqlite:///{tmp_path / 'h.db'}"
    with pytest.raises(Captured) as got:
        cli_in_process("optimize", "02_row_sum", "--rounds", "5", "--db", db, env_extra=env)
    config: OptimizeConfig = got.value.args[0]
    # the file's model wins over the key that is set (which would choose openai:gpt-5)
    assert config.coder_model == f"replay:{DEMO}" and config.target == "cpu"
    assert (config.rounds, config.width, config.atol) == (5, 2, 0.5)


def _one_line(proc, *fragments: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    text = " ".join(proc.stderr.split())
    assert text.startswith("error:") and "Traceback" not in proc.stderr, text
    for fragment in fragments:
        assert fragment in text, text


def test_a_resumed_run_refuses_flags_it_would_ignore(cli_in_process, tmp_path):
    db = f"sqlite:///{tmp_path / 'h.db'}"
    run = repo.start_run(open_engine(db), "optimize", "cpu", {"problem": "p.py"})
    _one_line(
        cli_in_process("optimize", "--resume", run, "--trials", "3", "--atol", "1", "--db", db),
        f"run {run} keeps its --trials, --atol",
        "drop the option or start a new run",
    )
    _one_line(
        cli_in_process("bench", "--resume", run, "--db", db), "is an optimize run, not a bench run"
    )
    measured = repo.start_run(open_engine(db), "optimize", "cpu", {"compile_baseline": True})
    _one_line(
        cli_in_process("optimize", "--resume", measured, "--no-compile-baseline", "--db", db),
        "measures the torch.compile baseline",
        "drop --no-compile-baseline",
    )


def test_dry_run_checks_and_writes_nothing(cli_in_process, fixtures_dir, tmp_path):
    history = tmp_path / "h.db"
    problem = str(fixtures_dir / "problems" / "scale_add.py")
    replay = tmp_path / "r.jsonl"
    replay.write_text('{"role": "coder", "text": "unused"}\n')
    args = ["--model", f"replay:{replay}", "--target", "cpu", "--db", f"sqlite:///{history}"]
    proc = cli_in_process("optimize", problem, *args, "--rounds", "2", "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["dry_run"] is True and data["would_run"].startswith("start an optimize run")
    assert data["config"]["rounds"] == 2 and data["config"]["target"] == "cpu"
    assert data["settings"]["rounds"] == {"value": 2, "origin": "flag"}
    assert data["checked"][-1] == "reference"
    text = cli_in_process("optimize", problem, *args, "--dry-run")
    assert text.returncode == 0 and "dry run: would start an optimize run" in text.stdout
    assert "(nothing written)" in text.stdout
    bench = cli_in_process("bench", "builtin", "--problems", "1-2", *args, "--dry-run", "--json")
    assert bench.returncode == 0, bench.stderr
    assert [Path(p).stem for p in json.loads(bench.stdout)["problems"]] == ["01_gelu", "02_row_sum"]
    assert not history.exists()


def test_dry_run_bad_input_is_one_line(cli_in_process, tmp_path):
    history = tmp_path / "h.db"
    db = ["--db", f"sqlite:///{history}", "--dry-run"]
    no_keys = {"OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": ""}
    _one_line(
        cli_in_process("optimize", "02_row_sum", "--model", "openai:gpt-5", *db, env_extra=no_keys),
        "OPENAI_API_KEY is not set",
    )
    _one_line(cli_in_process("optimize", "02_row_sm", *db), "did you mean 02_row_sum?")
    _one_line(
        cli_in_process("bench", "builtin", "--model", "openai:gpt-5", *db, env_extra=no_keys),
        "OPENAI_API_KEY is not set",
    )
    _one_line(
        cli_in_process("bench", "builtin", "--model", f"replay:{DEMO}", "--executor", "x", *db),
        "unknown executor 'x'",
    )
    assert not history.exists()
