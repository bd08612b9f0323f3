"""The optimize loop against a replay model, with evaluation faked (no builds): search, stops,
history, resume. The real builds run in test_cli_optimize.py."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from fakes import coder, fake_evaluate, judge
from kernelwright import executors as executors_module
from kernelwright.agents.llm import Completion, ProviderError, Usage
from kernelwright.agents.pricing import model_info
from kernelwright.agents.providers.replay import ReplayModel
from kernelwright.loop import Optimizer
from kernelwright.loop_config import OptimizeConfig
from kernelwright.store import repo
from kernelwright.store.db import open_engine
from kernelwright.store.schema import LlmCall, Profile

PROBLEM = Path(__file__).resolve().parent / "fixtures" / "problems" / "scale_add.py"


@pytest.fixture
def fake_eval(monkeypatch):
    monkeypatch.setattr(executors_module, "evaluate", fake_evaluate)
    monkeypatch.setattr(executors_module, "check_reference", lambda *args, **kwargs: None)


@pytest.fixture
def engine(tmp_path):
    return open_engine(f"sqlite:///{tmp_path / 'h.db'}")


def replay(tmp_path: Path, lines: list[dict[str, str]], name: str = "r.jsonl") -> ReplayModel:
    path = tmp_path / name
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return ReplayModel(path)


def make(engine, model, **config) -> Optimizer:
    settings = dict(
        problem=str(PROBLEM), target="cpu", coder_model="replay:r", judge_model="replay:r"
    )
    settings.update(config)
    return Optimizer(engine, OptimizeConfig(**settings), model, model)


def calls(engine, run_id):
    with sa.orm.Session(engine) as s:
        return s.scalars(
            sa.select(LlmCall).where(LlmCall.run_id == run_id).order_by(LlmCall.id)
        ).all()


def test_compile_error_then_correct_then_faster_is_stored_with_round_three_best(
    engine, tmp_path, fake_eval
):
    model = replay(
        tmp_path,
        [
            coder("compile_error", "First try."),
            judge("repair"),
            coder("correct 0.5", "Fixed the declaration."),
            judge("optimize"),
            coder("correct 1.7", "Walk rows contiguously."),
        ],
    )
    outcome = make(engine, model).run()
    rows = repo.candidate_rows(engine, outcome.run_id)
    assert [(r.round, r.status, r.speedup) for r in rows] == [
        (1, "compile_error", None),
        (2, "correct", 0.5),
        (3, "correct", 1.7),
    ]
    assert [r.parent_id for r in rows] == [None, rows[0].id, rows[1].id]
    assert outcome.best_candidate_id == rows[2].id and outcome.best_speedup == 1.7
    assert (
        outcome.status == "finished"
        and "scripted replies of r.jsonl are all used" in outcome.stop_reason
    )
    assert outcome.rounds == 3 and outcome.candidates == 3 and outcome.correct == 2
    run = repo.show_run(engine, outcome.run_id)
    assert run["status"] == "finished" and run["best"]["candidate"] == rows[2].id
    recorded = calls(engine, outcome.run_id)
    assert [c.role for c in recorded] == ["coder", "judge", "coder", "judge", "coder"]
    # each judge call is tied to the candidate it read, each coder call to what it wrote
    assert [c.candidate_id for c in recorded] == [
        rows[0].id,
        rows[0].id,
        rows[1].id,
        rows[1].id,
        rows[2].id,
    ]
    assert "Candidate " + rows[0].id in recorded[1].prompt and "compile_error" in recorded[1].prompt
    # the coder of round 3 saw the verdict and the history of what was tried
    assert "walk rows contiguously" in recorded[4].prompt
    assert "Fixed the declaration." in recorded[4].prompt
    assert run["tokens_in"] == sum(c.tokens_in for c in recorded) > 0


def test_width_two_runs_two_slots_per_round_and_picks_the_best(engine, tmp_path, fake_eval):
    model = replay(
        tmp_path,
        [coder("compile_error"), coder("runtime_error")]
        + [judge("repair"), judge("repair")]
        + [coder("correct 0.8"), coder("correct 0.6")]
        + [judge("optimize"), judge("optimize")]
        + [coder("correct 2.5"), coder("incorrect")],
    )
    outcome = make(engine, model, width=2).run()
    rows = repo.candidate_rows(engine, outcome.run_id)
    assert [r.round for r in rows] == [1, 1, 2, 2, 3, 3]
    best = max((r for r in rows if r.status == "correct"), key=lambda r: r.speedup)
    assert best.round == 3 and outcome.best_candidate_id == best.id
    # round 2 repaired both failures; round 3 started from both correct ones
    round1, round2 = {r.id for r in rows if r.round == 1}, {r.id for r in rows if r.round == 2}
    assert {r.parent_id for r in rows if r.round == 2} == round1
    assert {r.parent_id for r in rows if r.round == 3} == round2


def test_the_next_round_starts_from_the_best_and_the_judge_reads_that_one(
    engine, tmp_path, fake_eval
):
    model = replay(
        tmp_path,
        [
            coder("correct 2.0", "Good one."),
            judge("optimize"),
            coder("correct 1.2", "Worse one."),
            judge("optimize"),
            coder("correct 1.1"),
        ],
    )
    outcome = make(engine, model, rounds=3).run()
    rows = repo.candidate_rows(engine, outcome.run_id)
    assert rows[2].parent_id == rows[0].id  # not the latest (rows[1])
    judged = [c for c in calls(engine, outcome.run_id) if c.role == "judge"]
    assert [c.candidate_id for c in judged] == [rows[0].id]  # reviewed once, reused
    assert outcome.stop_reason == "all 3 rounds done"


def test_a_reply_without_code_is_no_code_and_an_unparsed_verdict_reaches_the_coder(
    engine, tmp_path, fake_eval
):
    model = replay(
        tmp_path,
        [
            {"role": "coder", "text": "I would rather not write code today."},
            coder("incorrect"),
            judge("repair", "The sign of the bias is flipped, I think."),
            coder("correct 1.1"),
        ],
    )
    outcome = make(engine, model, rounds=3).run()
    rows = repo.candidate_rows(engine, outcome.run_id)
    assert [r.status for r in rows] == ["no_code", "incorrect", "correct"]
    last_coder = [c for c in calls(engine, outcome.run_id) if c.role == "coder"][-1]
    assert "The sign of the bias is flipped, I think." in last_coder.prompt


def test_a_signature_that_does_not_match_is_a_compile_error(engine, tmp_path, fake_eval):
    bad = coder("correct 9.0")["text"].replace("def forward(self, x)", "def forward(self, a, b)")
    model = replay(tmp_path, [{"role": "coder", "text": bad}])
    outcome = make(engine, model, rounds=1).run()
    row = repo.candidate_rows(engine, outcome.run_id)[0]
    assert row.status == "compile_error" and "does not match" in row.reason


def test_target_speedup_stops_the_run(engine, tmp_path, fake_eval):
    model = replay(tmp_path, [coder("correct 3.0"), judge("optimize"), coder("correct 4.0")])
    outcome = make(engine, model, target_speedup=2.5).run()
    assert outcome.candidates == 1 and "target speedup 2.5x reached" in outcome.stop_reason


def test_time_limit_stops_before_any_call(engine, tmp_path, fake_eval):
    model = replay(tmp_path, [coder("correct 3.0")])
    outcome = make(engine, model, time_limit_s=0.0).run()
    assert outcome.candidates == 0 and "time limit" in outcome.stop_reason
    assert "time limit" in repo.show_run(engine, outcome.run_id)["stop_reason"]


class PricedModel:
    """A priced model that answers with a fixed candidate and reports real token counts."""

    provider = "openai"

    def __init__(self, reply: str, fail: bool = False) -> None:
        self.model = "gpt-4o"
        self.info = model_info("openai", "gpt-4o")
        self.reply = reply
        self.fail = fail
        self.calls = 0
        self.lock = threading.Lock()

    def complete(self, messages, *, role, problem=None, max_tokens=8192) -> Completion:
        with self.lock:
            self.calls += 1
        if self.fail:
            raise ProviderError("openai:gpt-4o (coder) failed after 1 attempt(s): HTTP 400", False)
        usage = Usage(20_000, 10_000)
        cost = (usage.input_tokens * 2.5 + usage.output_tokens * 10.0) / 1e6
        return Completion(self.reply, usage, cost, self.model, self.provider, 0.1)


def test_budget_stops_before_a_call_that_could_pass_it_and_keeps_results(
    engine, tmp_path, fake_eval
):
    model = PricedModel(coder("correct 1.5")["text"])
    outcome = make(engine, model, budget_usd=0.5, rounds=50).run()
    assert outcome.stop_reason.startswith("budget:")
    assert 0 < outcome.cost_usd <= 0.5
    assert outcome.candidates >= 1 and outcome.best_speedup == 1.5
    assert repo.show_run(engine, outcome.run_id)["cost_usd"] == pytest.approx(outcome.cost_usd)


def test_unpriced_model_with_a_budget_is_refused_before_the_run(engine, tmp_path):
    from kernelwright.errors import BadInput

    model = PricedModel("x")
    model.info = model_info("openai", "mystery-model")
    with pytest.raises(BadInput, match="no price"):
        make(engine, model, budget_usd=1.0)
    assert repo.list_runs(engine) == []


def test_failed_calls_are_recorded_and_end_the_run(engine, tmp_path, fake_eval):
    outcome = make(engine, PricedModel("", fail=True), rounds=5).run()
    assert "every LLM call of this round failed" in outcome.stop_reason
    assert "HTTP 400" in outcome.stop_reason and outcome.status == "failed"
    recorded = calls(engine, outcome.run_id)
    assert len(recorded) == 1 and "HTTP 400" in recorded[0].error


def test_a_harness_fault_marks_the_run_failed_and_is_raised(engine, tmp_path, fake_eval):
    model = replay(tmp_path, [coder("crash")])
    optimizer = make(engine, model)
    with pytest.raises(RuntimeError, match="a fault in the harness"):
        optimizer.run()
    run = repo.show_run(engine, optimizer.run_id)
    assert run["status"] == "failed"


def test_ctrl_c_leaves_a_resumable_run_that_goes_on_where_it_stopped(engine, tmp_path, fake_eval):
    lines = [
        coder("compile_error"),
        judge("repair"),
        coder("correct 0.9"),
        judge("optimize"),
        coder("correct 1.9"),
    ]
    first = make(engine, replay(tmp_path, lines))

    def interrupt(progress):
        if progress.pending:  # a candidate is written and waiting for its evaluation
            raise KeyboardInterrupt

    first.on_progress = interrupt
    outcome = first.run()
    assert outcome.status == "interrupted"
    assert [r.status for r in repo.candidate_rows(engine, first.run_id)] == ["pending"]
    assert repo.show_run(engine, first.run_id)["status"] == "interrupted"

    config = OptimizeConfig.from_json(repo.show_run(engine, first.run_id)["config"])
    model = replay(tmp_path, lines)  # a fresh replay: the run skips what it already used
    resumed = Optimizer(engine, config, model, model, resume=first.run_id).run()
    rows = repo.candidate_rows(engine, first.run_id)
    assert [(r.round, r.status, r.speedup) for r in rows] == [
        (1, "compile_error", None),
        (2, "correct", 0.9),
        (3, "correct", 1.9),
    ]
    assert resumed.run_id == first.run_id and resumed.best_candidate_id == rows[2].id
    assert resumed.status == "finished"
    assert [c.role for c in calls(engine, first.run_id)] == [
        "coder",
        "judge",
        "coder",
        "judge",
        "coder",
    ]


def test_resume_refuses_a_changed_problem(engine, tmp_path, fake_eval):
    from kernelwright.errors import BadInput

    problem = tmp_path / "p.py"
    problem.write_text(PROBLEM.read_text())
    model = replay(tmp_path, [coder("correct 1.0")])
    outcome = make(engine, model, problem=str(problem), rounds=1).run()
    problem.write_text(PROBLEM.read_text().replace("rows = 256", "rows = 300"))
    config = OptimizeConfig.from_json(repo.show_run(engine, outcome.run_id)["config"])
    with pytest.raises(BadInput, match="changed since run"):
        Optimizer(engine, config, model, model, resume=outcome.run_id)


def test_a_refused_resume_leaves_the_run_as_it_was(engine, tmp_path, fake_eval):
    from kernelwright.errors import BadInput

    problem = tmp_path / "p.py"
    problem.write_text(PROBLEM.read_text())
    model = replay(tmp_path, [coder("correct 1.0")])
    outcome = make(engine, model, problem=str(problem), rounds=1).run()
    before = repo.show_run(engine, outcome.run_id)
    problem.write_text(PROBLEM.read_text().replace("rows = 256", "rows = 300"))
    config = OptimizeConfig.from_json(before["config"])
    with pytest.raises(BadInput, match="changed since run"):
        Optimizer(engine, config, model, model, resume=outcome.run_id)
    after = repo.show_run(engine, outcome.run_id)
    assert after["status"] == "finished" and after["stop_reason"] == before["stop_reason"]
    assert after["finished_at"] == before["finished_at"]
    problem.write_text(PROBLEM.read_text())  # restored: the run can be resumed, not locked
    Optimizer(engine, config, model, model, resume=outcome.run_id).lock.release()


def test_a_run_in_progress_cannot_be_resumed_by_a_second_process(engine, tmp_path, fake_eval):
    from kernelwright.errors import BadInput
    from kernelwright.run_lock import RunLock

    model = replay(tmp_path, [coder("correct 1.0")])
    outcome = make(engine, model, rounds=1).run()
    config = OptimizeConfig.from_json(repo.show_run(engine, outcome.run_id)["config"])
    held = RunLock(outcome.run_id)  # flock: another open file description, as another process
    try:
        with pytest.raises(BadInput, match="in progress in another kernelwright process"):
            Optimizer(engine, config, model, model, resume=outcome.run_id)
        assert repo.show_run(engine, outcome.run_id)["status"] == "finished"
    finally:
        held.release()
    resumed = Optimizer(engine, dataclasses.replace(config, rounds=2), model, model,
                        resume=outcome.run_id)  # fmt: skip
    assert resumed.run().status == "finished"
    RunLock(outcome.run_id).release()  # the run released it when it ended


def test_the_judge_reads_the_profile_of_the_candidate_it_reviews_also_after_resume(
    engine, tmp_path, monkeypatch
):
    from kernelwright.profiler import ncu, roofline
    from kernelwright.profiler.sheets import gpu_sheet

    fixture = Path(__file__).resolve().parent / "fixtures" / "ncu" / "raw_h100.csv"
    launches = ncu.parse_csv(fixture.read_text())
    kernels = roofline.summarize(launches, ["reduce_rows"], gpu_sheet("NVIDIA H100 80GB HBM3"))
    for kernel in kernels:
        kernel["judge"] = roofline.judge_block(kernel)
    profile = {"status": "ok", "message": "", "kernels": kernels[1:2], "seconds": 4.0}

    def evaluate_with_profile(problem_path, candidate_path, options, device_lock=None):
        result = fake_evaluate(problem_path, candidate_path, options, device_lock)
        correct = result.status.value == "correct"
        return dataclasses.replace(result, profile=profile if correct else None)

    monkeypatch.setattr(executors_module, "evaluate", evaluate_with_profile)
    lines = [coder("correct 1.5"), judge("optimize"), coder("correct 1.7")]
    outcome = make(engine, replay(tmp_path, lines), rounds=2).run()
    (judged,) = [c for c in calls(engine, outcome.run_id) if c.role == "judge"]
    assert "Profile of this candidate's kernels" in judged.prompt
    assert "- reduce_rows\n  - time: 100.0 us over 2 launches\n  - bound: memory" in judged.prompt
    rows = repo.candidate_rows(engine, outcome.run_id)
    with sa.orm.Session(engine) as s:
        stored = s.scalars(sa.select(Profile).order_by(Profile.id)).all()
    assert [(p.candidate_id, p.bound) for p in stored] == [(r.id, "memory") for r in rows]
    shown = repo.get_candidate(engine, rows[0].id)["profiles"]
    assert [(k["kernel"], k["judge"]["bound"][:6]) for k in shown] == [("reduce_rows", "memory")]

    config = OptimizeConfig.from_json(repo.show_run(engine, outcome.run_id)["config"])
    model = replay(tmp_path, lines)
    resumed = Optimizer(engine, config, model, model, resume=outcome.run_id)
    first = next(e for e in resumed.entries if e.id == rows[0].id)
    assert first.metrics == {"reduce_rows": roofline.judge_block(kernels[1])}


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # 1.5x (no correct ancestor), 1.2x (slower than its parent), 1.7x (a new best)
        ("best", [(True, None), (True, 1 / 1.5), (True, 1 / 1.5)]),
        ("all", [(True, None)] * 3),
        ("none", [(False, None)] * 3),
    ],
)
def test_the_profile_policy_asks_for_a_profile_where_the_judge_will_read_it(
    policy, expected, engine, tmp_path, monkeypatch
):
    asked: list[tuple[bool, float | None]] = []

    def recording(problem_path, candidate_path, options, device_lock=None):
        asked.append((options.profile, options.profile_below_ms))
        return fake_evaluate(problem_path, candidate_path, options, device_lock)

    monkeypatch.setattr(executors_module, "evaluate", recording)
    monkeypatch.setattr(executors_module, "check_reference", lambda *args, **kwargs: None)
    lines = [coder("correct 1.5"), judge("optimize"), coder("correct 1.2")]
    lines += [judge("optimize"), coder("correct 1.7")]
    outcome = make(engine, replay(tmp_path, lines), rounds=3, profile=policy).run()
    assert outcome.candidates == 3
    assert [(p, None if b is None else pytest.approx(b)) for p, b in asked] == expected


def test_runs_stored_with_the_profile_flag_resume_with_its_meaning():
    base = {"problem": "p.py", "target": "cuda", "coder_model": "a", "judge_model": "b"}
    assert OptimizeConfig.from_json({**base, "profile": True}).profile == "all"
    assert OptimizeConfig.from_json({**base, "profile": False}).profile == "none"
    assert OptimizeConfig(**base).profile == "best"
