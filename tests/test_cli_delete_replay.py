"""`runs delete` asks first (unless --yes); an empty or unusable replay file is bad input, one
line and exit 2, with no run started. In-process; `saved_run` is conftest's history of one
finished run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kernelwright.cli import app
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


def _runs(kw, db: str) -> list[str]:
    return [r["id"] for r in json.loads(kw("runs", "list", "--db", db, "--json").stdout)]


@pytest.mark.parametrize("answer", ["n\n", "\n", ""])  # no, the default, and no stdin at all
def test_runs_delete_keeps_the_run_unless_confirmed(kw, saved_run, answer):
    proc = kw("runs", "delete", saved_run["run"], "--db", saved_run["db"], input=answer)
    assert proc.exit_code == 1, proc.output
    assert f"delete run {saved_run['run']} (evaluate, 1 candidate" in proc.stderr  # the question
    assert "? [y/N]" in proc.stderr
    # on a line of its own, even when no answer came
    assert f"\nrun {saved_run['run']} kept; add --yes to delete without asking\n" in proc.stderr
    assert "deleted" not in proc.stdout
    assert _runs(kw, saved_run["db"]) == [saved_run["run"]]


@pytest.mark.parametrize(("args", "answer"), [((), "y\n"), (("--yes",), None), (("-y",), None)])
def test_runs_delete_deletes_when_confirmed(kw, saved_run, args, answer):
    proc = kw("runs", "delete", saved_run["run"], "--db", saved_run["db"], *args, input=answer)
    assert proc.exit_code == 0, proc.output
    assert f"deleted run {saved_run['run']} (1 candidate" in proc.stdout
    if answer is None:
        assert "delete run" not in proc.stderr  # --yes asks nothing
    assert _runs(kw, saved_run["db"]) == []


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
