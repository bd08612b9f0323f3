"""Ids as people type them: any unique prefix of 4+ characters names a run or a candidate in
every command that takes one; an ambiguous or short one is one line, exit 2. In-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kernelwright import paths
from kernelwright.cli import app
from kernelwright.records import EvaluationResult, Status
from kernelwright.store import repo
from kernelwright.store.db import open_engine
from kernelwright.store.schema import Run
from typer.testing import CliRunner

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SOURCE = (FIXTURES / "candidates" / "scale_add_ok.py").read_text()
PROBLEM = {
    "content_hash": "p" * 64,
    "name": "scale_add",
    "path": str(FIXTURES / "problems" / "scale_add.py"),
    "source": (FIXTURES / "problems" / "scale_add.py").read_text(),
}
RUN_A, RUN_B, RUN_C = "abcd1111aaaa", "abcd2222bbbb", "ef012345cccc"
CAND_1, CAND_2, CAND_3 = "1234aaaa0000", "1234bbbb0000", "9876543210ab"


def _correct(speedup: float) -> EvaluationResult:
    return EvaluationResult(
        status=Status.CORRECT,
        reason="",
        target="cpu",
        problem=PROBLEM["path"],
        problem_hash="p",
        candidate="c",
        trials=3,
        speedup=speedup,
    )


@pytest.fixture
def db(tmp_path) -> str:
    """Runs and candidates whose ids share prefixes, one LLM call per candidate of run C."""
    url = f"sqlite:///{tmp_path / 'ids.db'}"
    engine = open_engine(url)
    with repo.session(engine) as s:
        for run in (RUN_A, RUN_B, RUN_C):
            s.add(Run(id=run, kind="optimize", status="finished", target="cpu",
                      harness_version="test"))  # fmt: skip
    for cid, parents, speedup in ((CAND_1, [], 1.2), (CAND_2, [CAND_1], 1.5), (CAND_3, [], 2.0)):
        source = SOURCE + f"# {cid}\n"
        repo.add_pending_candidate(
            engine, RUN_C, PROBLEM, source, repo.source_hash(source), parents, 1, candidate_id=cid
        )
        repo.record_result(engine, cid, _correct(speedup))
        repo.add_llm_call(engine, RUN_C, candidate_id=cid, role="coder", problem="scale_add",
                          provider="replay", model="r.jsonl", prompt="p", reply="r")  # fmt: skip
    repo.add_candidate(engine, RUN_A, PROBLEM, SOURCE, "s", _correct(1.1))
    engine.dispose()
    return url


@pytest.fixture
def kw():
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args), catch_exceptions=False)


def _one_line_exit_2(proc, *phrases: str) -> str:
    assert proc.exit_code == 2, proc.output
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]


def test_a_unique_prefix_names_the_run_in_every_runs_command(kw, db, tmp_path):
    assert json.loads(kw("runs", "show", "ef01", "--db", db, "--json").stdout)["id"] == RUN_C
    assert json.loads(kw("runs", "show", "abcd2", "--db", db, "--json").stdout)["id"] == RUN_B
    assert f"run {RUN_C}" in kw("runs", "tree", "ef012", "--db", db).stdout
    calls = json.loads(kw("runs", "calls", "ef01", "--db", db, "--json").stdout)
    assert [c["candidate_id"] for c in calls] == [CAND_1, CAND_2, CAND_3]
    compared = json.loads(kw("runs", "compare", "abcd1", "ef01", "--db", db, "--json").stdout)
    assert [{k: row[k] for k in ("problem", RUN_A, RUN_C)} for row in compared] == [
        {"problem": "scale_add", RUN_A: 1.1, RUN_C: 2.0}
    ]
    assert set(compared[0]["spread"]) == {RUN_A, RUN_C}  # each best speedup's p20-p80
    exported = kw("runs", "export", "ef01", "--db", db)
    assert exported.exit_code == 0 and f"# {CAND_3}" in exported.stdout  # the best: 2.0x
    report = tmp_path / "r.html"
    assert kw("report", "ef01", "--db", db, "--out", str(report)).exit_code == 0
    assert RUN_C in report.read_text()


def test_a_unique_prefix_names_the_candidate(kw, db):
    shown = kw("candidates", "show", "9876", "--db", db)
    assert shown.exit_code == 0 and f"candidate {CAND_3} of run {RUN_C}" in shown.stdout
    assert kw("candidates", "show", "1234b", "--db", db, "--code").stdout == SOURCE + (
        f"# {CAND_2}\n"
    )
    diff = kw("candidates", "diff", "1234a", "1234b", "--db", db).stdout
    assert f"--- {CAND_1}" in diff and f"+++ {CAND_2}" in diff and f"+# {CAND_2}" in diff


@pytest.mark.parametrize(
    "args",
    [
        ("runs", "show", "abcd"),
        ("runs", "calls", "abcd"),
        ("runs", "tree", "abcd"),
        ("runs", "export", "abcd"),
        ("runs", "delete", "abcd"),
        ("runs", "compare", "abcd", "ef01"),
        ("report", "abcd"),
        ("optimize", "--resume", "abcd"),
    ],
)
def test_an_ambiguous_run_prefix_lists_the_matches(kw, db, args):
    line = _one_line_exit_2(
        kw(*args, "--db", db), "run id 'abcd' is ambiguous", RUN_A, RUN_B, "give more of the id"
    )
    assert RUN_C not in line
    assert len(json.loads(kw("runs", "list", "--db", db, "--json").stdout)) == 3  # none deleted


def test_an_ambiguous_candidate_prefix_lists_the_matches(kw, db):
    for args in (("candidates", "show", "1234"), ("candidates", "diff", "9876", "1234")):
        _one_line_exit_2(kw(*args, "--db", db), "candidate id '1234' is ambiguous", CAND_1, CAND_2)


def test_short_unknown_and_wildcard_prefixes_are_refused(kw, db):
    _one_line_exit_2(kw("runs", "show", "abc", "--db", db), "at least 4 characters")
    _one_line_exit_2(kw("candidates", "show", "987", "--db", db), "at least 4 characters")
    _one_line_exit_2(kw("runs", "show", "ffff", "--db", db), "no run 'ffff'", "runs list")
    # SQL wildcards in a prefix are characters, not patterns
    _one_line_exit_2(kw("runs", "show", "abc%", "--db", db), "no run 'abc%'")
    _one_line_exit_2(kw("runs", "show", "abc_1111", "--db", db), "no run 'abc_1111'")
    _one_line_exit_2(
        kw("candidates", "show", "1234____0000", "--db", db), "no candidate", "runs tree RUN"
    )
    # the same run twice, by two prefixes
    _one_line_exit_2(kw("runs", "compare", "ef01", "ef0123", "--db", db), f"both are {RUN_C}")


def test_delete_by_prefix_removes_the_full_ids_run_and_folder(kw, db):
    folder = paths.home() / "runs" / RUN_C
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{CAND_3}.py").write_text(SOURCE)
    proc = kw("runs", "delete", "ef01", "--db", db, "--yes")
    assert proc.exit_code == 0 and f"deleted run {RUN_C} (3 candidates)" in proc.stdout
    assert not folder.exists()
    assert {r["id"] for r in json.loads(kw("runs", "list", "--db", db, "--json").stdout)} == {
        RUN_A,
        RUN_B,
    }
