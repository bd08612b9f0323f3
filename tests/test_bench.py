"""`kernelwright bench` over shipped problems with a replay model (real C++ builds on the cpu
target), locally and on a local Ray cluster; problem selection; the summary figures. Bench runs
in a fresh process; bad input and reviewing its run, in-process (`cli_in_process`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kernelwright.bench import select_problems
from kernelwright.errors import BadInput
from kernelwright.metrics import fast_p, fast_p_table, geomean
from kernelwright.store import repo
from kernelwright.store.db import open_engine

ROOT = Path(__file__).resolve().parent.parent
CPU = ROOT / "core" / "suite" / "cpu"


def _fenced(code: str) -> str:
    return f"Here is the kernel.\n```python\n{code}```\n"


def _replay(tmp_path: Path) -> Path:
    optimize = json.dumps({"bottleneck": "one thread", "plan": "vectorize the inner loop"})
    lines = []
    for name in ("01_gelu", "02_row_sum"):
        lines += [
            {"role": "coder", "problem": name, "text": _fenced((CPU / f"{name}.py").read_text())},
            {"role": "judge", "problem": name, "text": optimize},
            {"role": "coder", "problem": name, "text": "I have no better idea."},
        ]
    lines += [{"role": "coder", "problem": "03_softmax", "text": "No code from me."}] * 2
    path = tmp_path / "bench.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _check_summary(data: dict, url: str) -> None:
    assert data["status"] == "finished"
    by_name = {p["name"]: p for p in data["problems"]}
    assert set(by_name) == {"01_gelu", "02_row_sum", "03_softmax"}
    assert by_name["01_gelu"]["correct"] == 1 and by_name["02_row_sum"]["correct"] == 1
    assert (
        by_name["03_softmax"]["best_speedup"] is None and by_name["03_softmax"]["candidates"] == 2
    )
    assert data["fast_p"]["fast_0"] == pytest.approx(2 / 3)
    assert data["solved"] == 2 and data["total"] == 3
    speedups = [by_name[n]["best_speedup"] for n in ("01_gelu", "02_row_sum")]
    assert data["geomean_speedup"] == pytest.approx(geomean(speedups))
    assert all(by_name[n]["tokens_in"] > 0 for n in by_name)  # calls are counted per problem
    # Wall time per problem: its builds and timings (seconds) against a few replayed calls.
    assert by_name["01_gelu"]["seconds"] > 1 and 0 <= by_name["03_softmax"]["seconds"] < 30
    engine = open_engine(url)
    run = repo.show_run(engine, data["run_id"])
    assert run["kind"] == "bench" and len(run["candidates"]) == 6


@pytest.mark.slow
def test_bench_over_three_shipped_problems_locally(cli, cli_in_process, tmp_path):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    replay = _replay(tmp_path)
    args = ["bench", "builtin", "--problems", "1-3", "--model", f"replay:{replay}"]
    args += ["--rounds", "2", "--target", "cpu", "--json", "--db", url]
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    _check_summary(data, url)
    shown = cli_in_process("runs", "show", data["run_id"], "--db", url)
    assert shown.returncode == 0 and "fast_0=0.67" in shown.stdout, shown.stdout
    page = tmp_path / "report.html"
    made = cli_in_process("report", data["run_id"], "--out", str(page), "--db", url)
    assert made.returncode == 0, made.stderr
    assert "02_row_sum" in page.read_text() and "<svg" in page.read_text()


@pytest.mark.slow
def test_bench_on_a_local_ray_cluster(cli, tmp_path):
    pytest.importorskip("ray")
    url = f"sqlite:///{tmp_path / 'h.db'}"
    replay = _replay(tmp_path)
    args = ["bench", "builtin", "--problems", "1-3", "--model", f"replay:{replay}"]
    args += ["--rounds", "2", "--target", "cpu", "--executor", "ray", "--json", "--db", url]
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    _check_summary(json.loads(result.stdout), url)


def test_problem_selection():
    names = [p.stem for p in select_problems("builtin", None, "1-3,12")]
    assert names == ["01_gelu", "02_row_sum", "03_softmax", "12_cumsum"]
    with pytest.raises(BadInput, match="no level folders"):
        select_problems("builtin", "1", None)
    with pytest.raises(BadInput, match="numbers and ranges"):
        select_problems("builtin", None, "one")
    with pytest.raises(BadInput, match="matches"):
        select_problems("builtin", None, "99")
    with pytest.raises(BadInput, match="neither"):
        select_problems("/no/such/folder", None, None)


def test_problem_selection_by_level(tmp_path):
    source = (ROOT / "tests" / "fixtures" / "problems" / "scale_add.py").read_text()
    for level, name in ((1, "1_a.py"), (1, "2_b.py"), (2, "1_c.py")):
        folder = tmp_path / f"level{level}"
        folder.mkdir(exist_ok=True)
        (folder / name).write_text(source)
    assert [p.name for p in select_problems(str(tmp_path), "2", None)] == ["1_c.py"]
    assert [p.name for p in select_problems(str(tmp_path), "1", "2")] == ["2_b.py"]


def test_fast_p_counts_unsolved_problems_against_the_share():
    best = {"a": 2.5, "b": 0.9, "c": None}
    assert fast_p(best, 0.0) == pytest.approx(2 / 3)
    assert fast_p(best, 1.0) == pytest.approx(1 / 3)
    assert fast_p_table(best)["fast_2"] == pytest.approx(1 / 3)
    assert fast_p({}, 1.0) == 0.0
    assert geomean([2.0, 8.0]) == pytest.approx(4.0) and geomean([]) is None


def test_bench_bad_input(cli_in_process, tmp_path):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    for args, needle in [
        (["bench"], "name a SUITE"),
        (["bench", "builtin"], "needs a model: --model"),
        (["bench", "builtin", "--model", "replay:x.jsonl", "--problems", "99"], "matches"),
        (["bench", "builtin", "--model", "replay:x.jsonl", "--executor", "slurm"], "executor"),
        (["bench", "--resume", "nope"], "no run 'nope'"),
        (["bench", "builtin", "--model", "replay:x.jsonl", "--budget-usd", "-2"], "--budget-usd"),
    ]:
        result = cli_in_process(*args, "--db", url)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("error:") and needle in result.stderr, result.stderr
    assert repo.list_runs(open_engine(url)) == []


def test_bench_bad_input_found_with_the_problems_loaded_leaves_no_run(cli_in_process, tmp_path):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    for name in ("level1", "level2"):  # one file name in two levels
        (tmp_path / "kb" / name).mkdir(parents=True)
        problem = ROOT / "tests" / "fixtures" / "problems" / "scale_add.py"
        (tmp_path / "kb" / name / "1_sa.py").write_text(problem.read_text())
    replay = tmp_path / "r.jsonl"
    replay.write_text('{"role": "coder", "text": "unused"}\n')  # not empty: that is its own error
    for args, needle in [
        ([str(tmp_path / "kb"), "--model", f"replay:{replay}"], "both named '1_sa'"),
        (
            ["builtin", "--problems", "1", "--model", "openai:my-local", "--budget-usd", "1"],
            "no price for model 'my-local'",
        ),
    ]:
        result = cli_in_process("bench", *args, "--target", "cpu", "--db", url,
                                env_extra={"OPENAI_API_KEY": "sk-test"})  # fmt: skip
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("error:") and needle in result.stderr, result.stderr
    assert repo.list_runs(open_engine(url)) == []


def test_bench_resume_goes_on_per_problem(tmp_path, monkeypatch):
    """Two problems in one bench run (evaluation faked); a resumed run keeps each problem's own
    candidates and replies apart and only runs what is left."""
    from fakes import coder, fake_evaluate, judge
    from kernelwright import executors
    from kernelwright.agents.providers.replay import ReplayModel
    from kernelwright.bench import Bench
    from kernelwright.executors import LocalExecutor
    from kernelwright.loop_config import OptimizeConfig

    monkeypatch.setattr(executors, "evaluate", fake_evaluate)
    monkeypatch.setattr(executors, "check_reference", lambda *args, **kwargs: None)
    source = (ROOT / "tests" / "fixtures" / "problems" / "scale_add.py").read_text()
    problems = []
    for name in ("1_alpha.py", "2_beta.py"):
        (tmp_path / name).write_text(source + f"\n# {name}\n" + f"_NAME = {name!r}\n")
        problems.append(tmp_path / name)
    lines = []
    for stem, speedups in (("1_alpha", ("0.5", "1.5")), ("2_beta", ("2.0", "3.0"))):
        lines += [
            {**coder(f"correct {speedups[0]}"), "problem": stem},
            {**judge("optimize"), "problem": stem},
            {**coder(f"correct {speedups[1]}"), "problem": stem},
        ]
    replay = tmp_path / "r.jsonl"
    replay.write_text("".join(json.dumps(line) + "\n" for line in lines))
    engine = open_engine(f"sqlite:///{tmp_path / 'h.db'}")
    settings = OptimizeConfig(
        problem="", target="cpu", coder_model="replay:r", judge_model="replay:r", rounds=1
    )

    def bench(resume=None, rounds=1):
        model = ReplayModel(replay)
        config = OptimizeConfig.from_json(settings.to_json(), rounds=rounds)
        return Bench(
            engine, config, problems, model, model, LocalExecutor("cpu"), 2, str(tmp_path),
            resume=resume,
        )  # fmt: skip

    first = bench().run()
    assert {p["name"]: p["best_speedup"] for p in first["problems"]} == {
        "1_alpha": 0.5,
        "2_beta": 2.0,
    }
    second = bench(resume=first["run_id"], rounds=2).run()
    assert second["run_id"] == first["run_id"] and second["status"] == "finished"
    assert {p["name"]: p["best_speedup"] for p in second["problems"]} == {
        "1_alpha": 1.5,
        "2_beta": 3.0,
    }
    assert all(p["candidates"] == 2 for p in second["problems"])
    assert second["fast_p"]["fast_1"] == 1.0 and second["geomean_speedup"] == pytest.approx(
        (1.5 * 3.0) ** 0.5
    )
