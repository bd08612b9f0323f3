"""`runs delete` asks first (unless --yes); an empty or unusable replay file is bad input, one
line and exit 2, with no run started. In-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kernelwright.cli import app
from kernelwright.records import EvaluationResult, Status
from kernelwright.store import repo
from kernelwright.store.db import open_engine
from typer.testing import CliRunner

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PROBLEM = FIXTURES / "problems" / "scale_add.py"


@pytest.fixture
def kw():
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, list(args), input=input, catch_exceptions=False)

    return invoke


def _one_line(proc, code: int = 2) -> str:
    assert proc.exit_code == code, proc.output
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.fixture
def one_run(tmp_path) -> dict[str, str]:
    db = f"sqlite:///{tmp_path / 'h.db'}"
    engine = open_engine(db)
    run = repo.start_run(engine, "evaluate", "cpu", {})
    result = EvaluationResult(
        status=Status.CORRECT,
        reason="",
        target="cpu",
        problem=str(PROBLEM),
        problem_hash="x",
        candidate="c",
        trials=1,
        speedup=1.0,
    )
    problem = {"content_hash": "x" * 64, "name": "scale_add", "path": str(PROBLEM), "source": ""}
    repo.add_candidate(engine, run, problem, "class ModelNew: pass\n", "s", result)
    repo.finish_run(engine, run)
    engine.dispose()
    return {"db": db, "run": run}


def _runs(kw, db: str) -> list[str]:
    return [r["id"] for r in json.loads(kw("runs", "list", "--db", db, "--json").stdout)]


@pytest.mark.parametrize("answer", ["n\n", "\n", ""])  # no, the default, and no stdin at all
def test_runs_delete_keeps_the_run_unless_confirmed(kw, one_run, answer):
    proc = kw("runs", "delete", one_run["run"], "--db", one_run["db"], input=answer)
    assert proc.exit_code == 1, proc.output
    assert f"delete run {one_run['run']} (evaluate, 1 candidate" in proc.stderr  # the question
    assert "? [y/N]" in proc.stderr
    # on a line of its own, even when no answer came
    assert f"\nrun {one_run['run']} kept; add --yes to delete without asking\n" in proc.stderr
    assert "deleted" not in proc.stdout
    assert _runs(kw, one_run["db"]) == [one_run["run"]]


@pytest.mark.parametrize(("args", "answer"), [((), "y\n"), (("--yes",), None), (("-y",), None)])
def test_runs_delete_deletes_when_confirmed(kw, one_run, args, answer):
    proc = kw("runs", "delete", one_run["run"], "--db", one_run["db"], *args, input=answer)
    assert proc.exit_code == 0, proc.output
    assert f"deleted run {one_run['run']} (1 candidate" in proc.stdout
    if answer is None:
        assert "delete run" not in proc.stderr  # --yes asks nothing
    assert _runs(kw, one_run["db"]) == []


@pytest.mark.parametrize(
    ("lines", "phrase"),
    [
        ([], "holds no replies"),
        (["", "   "], "holds no replies"),
        ([{"role": "judge", "text": "{}"}], "has no coder reply for problem 'scale_add'"),
        (
            [{"role": "coder", "text": "x", "problem": "02_row_sum"}],
            "has no coder reply for problem 'scale_add'",
        ),
    ],
)
def test_an_empty_or_unusable_replay_file_is_bad_input(kw, tmp_path, lines, phrase):
    replay = tmp_path / "replies.jsonl"
    replay.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines))
    db = tmp_path / "h.db"
    proc = kw(
        "optimize",
        str(PROBLEM),
        "--model",
        f"replay:{replay}",
        "--target",
        "cpu",
        "--db",
        f"sqlite:///{db}",
    )
    line = _one_line(proc)
    assert phrase in line and str(replay) in line, line
    assert not db.exists() or _runs(kw, f"sqlite:///{db}") == []  # no run was started


def test_only_the_coders_replay_file_must_hold_a_coder_reply(kw, tmp_path):
    """A judge file with judge replies alone is usable; the coder's file is the one named."""
    judge = tmp_path / "judge.jsonl"
    judge.write_text(json.dumps({"role": "judge", "text": "{}"}) + "\n")
    coder = tmp_path / "coder.jsonl"
    coder.write_text(json.dumps({"role": "judge", "text": "{}"}) + "\n")
    proc = kw(
        "optimize",
        str(PROBLEM),
        "--model",
        f"replay:{coder}",
        "--judge-model",
        f"replay:{judge}",
        "--target",
        "cpu",
        "--db",
        f"sqlite:///{tmp_path / 'h.db'}",
    )
    line = _one_line(proc)
    assert f"replay file {coder} has no coder reply" in line and str(judge) not in line
