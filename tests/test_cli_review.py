"""Reviewing what the agents said: `runs calls`, `calls show`, and the judge's verdict and the
coder's summary in `candidates show`. In-process (typer's CliRunner) on a history written the
way the loop writes it: each candidate committed with the coder call that wrote it, each judge
call tied to the candidate it judged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kernelwright.agents.parsing import extract_candidate
from kernelwright.cli import app
from kernelwright.records import EvaluationResult, Status
from kernelwright.store import repo
from kernelwright.store.db import open_engine
from typer.testing import CliRunner

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PROBLEM = {"content_hash": "h" * 64, "name": "scale_add", "path": "scale_add.py", "source": "x"}

CODER_1 = "I fuse the scale and the add into one loop.\n```python\nclass ModelNew: pass\n```\n"
JUDGE_1 = '{"issue": "the build fails: `out` is undeclared", "fix": "declare out [rows, cols]"}'
CODER_2 = "Declared `out`; the loop is unchanged.\n```python\nclass ModelNew: pass  # v2\n```\n"
JUDGE_2 = (
    '```json\n{"bottleneck": "strided reads of w[c]", "plan": "load w into [shared] memory"}\n```'
)


def _result(status: Status, speedup: float | None) -> EvaluationResult:
    return EvaluationResult(
        status=status,
        reason="" if speedup else "does not build",
        target="cpu",
        problem="scale_add.py",
        problem_hash="h",
        candidate="c",
        trials=3,
        speedup=speedup,
    )


def _call(role: str, reply: str, **extra: object) -> dict[str, object]:
    return {
        "role": role,
        "problem": "scale_add",
        "provider": "replay",
        "model": "demo.jsonl",
        "prompt": f"### system\nyou are the {role}\n### user\nsee [the reference]\n",
        "reply": reply,
        "tokens_in": 100,
        "tokens_out": 20,
        "cost_usd": 0.0125,
        "latency_s": 1.25,
        **extra,
    }


def _propose(engine, run: str, reply: str, round_index: int, parents: list[str]) -> str:
    """As the loop records a proposal: the pending candidate, then the coder call that wrote it."""
    source = extract_candidate(reply) or ""
    cid = repo.add_pending_candidate(
        engine, run, PROBLEM, source, repo.source_hash(source), parents, round_index
    )
    repo.add_llm_call(engine, run, candidate_id=cid, **_call("coder", reply))
    return cid


@pytest.fixture
def history(tmp_path) -> dict[str, object]:
    """Three rounds: a candidate that does not build, the judge's repair, a correct one, the
    judge's optimize verdict on it, and a coder call that failed."""
    db = f"sqlite:///{tmp_path / 'h.db'}"
    engine = open_engine(db)
    run = repo.start_run(engine, "optimize", "cpu", {})
    c1 = _propose(engine, run, CODER_1, 1, [])
    repo.record_result(engine, c1, _result(Status.COMPILE_ERROR, None))
    repo.add_llm_call(engine, run, candidate_id=c1, **_call("judge", JUDGE_1))
    c2 = _propose(engine, run, CODER_2, 2, [c1])
    repo.record_result(engine, c2, _result(Status.CORRECT, 1.5))
    repo.add_llm_call(engine, run, candidate_id=c2, **_call("judge", JUDGE_2))
    failed = _call("coder", "", error="provider said [429] too many requests", tokens_in=0)
    repo.add_llm_call(engine, run, candidate_id=None, **failed)
    repo.finish_run(engine, run)
    other = repo.start_run(engine, "evaluate", "cpu", {})  # a run with no calls at all
    engine.dispose()
    return {"db": db, "run": run, "c1": c1, "c2": c2, "other": other}


@pytest.fixture
def kw():
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


def test_runs_calls_lists_every_call_with_its_round_role_and_candidate(kw, history):
    proc = kw("runs", "calls", history["run"], "--db", history["db"], "--json")
    assert proc.exit_code == 0, proc.output
    calls = json.loads(proc.stdout)
    assert [(c["round"], c["role"], c["candidate_id"], c["candidate_relation"]) for c in calls] == [
        (1, "coder", history["c1"], "wrote"),
        (2, "judge", history["c1"], "judged"),  # judged in the round its child was written
        (2, "coder", history["c2"], "wrote"),
        (None, "judge", history["c2"], "judged"),  # the run ended before a child: no round
        (None, "coder", None, None),
    ]
    assert calls[0]["tokens_in"] == 100 and calls[0]["cost_usd"] == 0.0125
    assert calls[0]["latency_s"] == 1.25 and calls[0]["model"] == "demo.jsonl"
    assert calls[4]["error"] == "provider said [429] too many requests"
    assert "prompt" not in calls[0] and "reply" not in calls[0]  # the list stays small

    table = kw("runs", "calls", history["run"], "--db", history["db"])
    assert table.exit_code == 0
    assert history["c1"] in table.stdout and history["c2"] in table.stdout  # never cut
    assert "5 LLM calls, tokens in/out 400/100, $0.0625; model replay:demo.jsonl" in table.stdout
    rows = [line.split() for line in table.stdout.splitlines()]
    rows = [row for row in rows if len(row) == 8 and row[0].isdigit()]
    assert rows[1] == ["2", "2", "judge", history["c1"], "100/20", "$0.0125", "1.2", "ok"]
    assert rows[4] == ["5", "-", "coder", "-", "0/20", "$0.0125", "1.2", "failed"]
    # an error in full, under the table, its brackets surviving rich
    assert "call 5 failed: provider said [429] too many requests" in table.stdout
    assert "kernelwright calls show CALL" in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 80


def test_runs_calls_of_a_run_without_calls(kw, history):
    proc = kw("runs", "calls", history["other"], "--db", history["db"])
    assert proc.exit_code == 0 and "no LLM calls" in proc.stdout
    assert (
        json.loads(kw("runs", "calls", history["other"], "--db", history["db"], "--json").stdout)
        == []
    )


def test_calls_show_prints_the_prompt_and_reply_whole(kw, history):
    calls = json.loads(kw("runs", "calls", history["run"], "--db", history["db"], "--json").stdout)
    judge = str(calls[1]["id"])
    shown = kw("calls", "show", judge, "--db", history["db"])
    assert shown.exit_code == 0, shown.output
    assert f"judged candidate {history['c1']}" in shown.stdout and "round 2" in shown.stdout
    assert "see [the reference]" in shown.stdout  # model text is never read as markup
    assert JUDGE_1 in shown.stdout
    assert shown.stdout.index("--- prompt ---") < shown.stdout.index("--- reply ---")

    assert kw("calls", "show", judge, "--db", history["db"], "--reply").stdout == JUDGE_1 + "\n"
    prompt = kw("calls", "show", judge, "--db", history["db"], "--prompt").stdout
    assert prompt == "### system\nyou are the judge\n### user\nsee [the reference]\n"
    both = kw("calls", "show", judge, "--db", history["db"], "--prompt", "--reply").stdout
    assert both == prompt + JUDGE_1 + "\n"

    data = json.loads(kw("calls", "show", judge, "--db", history["db"], "--json").stdout)
    assert data["reply"] == JUDGE_1 and data["prompt"] == prompt and data["round"] == 2

    failed = kw("calls", "show", str(calls[4]["id"]), "--db", history["db"])
    assert "error: provider said [429] too many requests" in failed.stdout


@pytest.mark.parametrize(
    ("call", "phrase"),
    [("999", "no LLM call 999 in the history"), ("abc", "call id 'abc' is not a number")],
)
def test_calls_show_of_an_unknown_or_malformed_id(kw, history, call, phrase):
    proc = kw("calls", "show", call, "--db", history["db"])
    assert proc.exit_code == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and phrase in lines[0]
    assert "kernelwright runs calls RUN" in lines[0]


def test_candidates_show_has_the_coders_summary_and_the_judges_verdict(kw, history):
    first = kw("candidates", "show", history["c1"], "--db", history["db"])
    assert first.exit_code == 0, first.output
    assert "coder said (call 1): I fuse the scale and the add into one loop." in first.stdout
    assert "issue: the build fails: `out` is undeclared" in first.stdout
    assert "fix: declare out [rows, cols]" in first.stdout  # brackets kept

    second = kw("candidates", "show", history["c2"], "--db", history["db"])
    assert "bottleneck: strided reads of w[c]" in second.stdout
    assert "plan: load w into [shared] memory" in second.stdout

    data = json.loads(
        kw("candidates", "show", history["c2"], "--db", history["db"], "--json").stdout
    )
    assert data["coder_summary"]["text"] == "Declared `out`; the loop is unchanged."
    assert data["judge_verdict"]["fields"] == {
        "bottleneck": "strided reads of w[c]",
        "plan": "load w into [shared] memory",
    }
    assert data["id"] == history["c2"] and data["status"] == "correct"


def test_candidates_show_of_an_unreviewed_candidate_and_free_text_verdict(kw, history, tmp_path):
    engine = open_engine(history["db"])
    run = repo.start_run(engine, "optimize", "cpu", {})
    cid = _propose(engine, run, CODER_1, 1, [])
    engine.dispose()
    shown = kw("candidates", "show", cid, "--db", history["db"])
    assert "judge: not reviewed" in shown.stdout
    engine = open_engine(history["db"])
    repo.add_llm_call(engine, run, candidate_id=cid, **_call("judge", "It looks [fine]\nto me."))
    engine.dispose()
    shown = kw("candidates", "show", cid, "--db", history["db"])
    assert "not JSON): It looks [fine] to me." in shown.stdout


def test_the_report_shows_what_the_agents_said_escaped_and_the_diff_collapsed(
    kw, history, tmp_path
):
    engine = open_engine(history["db"])
    hostile = (
        "Tried <script>alert(1)</script> & more.\n```python\nclass ModelNew: pass  # v3\n```\n"
    )
    c3 = _propose(engine, history["run"], hostile, 3, [history["c2"]])
    judge = '{"issue": "<img src=x onerror=alert(1)>", "fix": "a < b && c > d"}'
    repo.add_llm_call(engine, history["run"], candidate_id=c3, **_call("judge", judge))
    engine.dispose()
    page = tmp_path / "report.html"
    proc = kw("report", history["run"], "--db", history["db"], "--out", str(page))
    assert proc.exit_code == 0, proc.output
    html = page.read_text()
    assert "coder said:</span> I fuse the scale and the add into one loop." in html
    assert "<dt>issue</dt><dd>the build fails: `out` is undeclared</dd>" in html
    assert "<dt>plan</dt><dd>load w into [shared] memory</dd>" in html
    # recorded text is escaped, never markup
    assert "<script>" not in html and "<img" not in html
    assert "Tried &lt;script&gt;alert(1)&lt;/script&gt; &amp; more." in html
    assert "<dd>&lt;img src=x onerror=alert(1)&gt;</dd>" in html
    assert "<dd>a &lt; b &amp;&amp; c &gt; d</dd>" in html
    # the diff from the parent, collapsed (a closed <details>), one per candidate with a parent
    opener = f"<details><summary>diff from parent {history['c1']} (2 lines changed)</summary>"
    assert opener in html
    diff = html.split(opener, 1)[1].split("</details>", 1)[0]
    assert "-class ModelNew: pass\n" in diff and "+class ModelNew: pass  # v2\n" in diff
    assert html.count("<summary>diff from parent") == 2  # c2 and c3; c1 has no parent
    assert "<details open" not in html
