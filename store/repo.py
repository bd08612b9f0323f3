"""What the rest of kernelwright asks of the history: record, look up, summarise, delete.

Every write is one transaction, committed before the call returns: a finished candidate (with its
evaluation) is never lost to a crash that comes after it. Unknown ids raise `NotFound`, whose
message says how to list the ids that exist.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from kernelwright import __version__
from kernelwright.errors import BadInput
from kernelwright.records import EvaluationResult, speedup_spread_fields, to_jsonable
from kernelwright.store import profiles
from kernelwright.store.schema import Candidate, Evaluation, LlmCall, Problem, Run, now
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session


class NotFound(BadInput):
    """An id that is not in the history."""


def new_id() -> str:
    return uuid.uuid4().hex[:12]


@contextmanager
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as s, s.begin():
        yield s


def start_run(
    engine: Engine,
    kind: str,
    target: str,
    config: dict[str, Any],
    models: dict[str, Any] | None = None,
) -> str:
    run_id = new_id()
    with session(engine) as s:
        s.add(
            Run(
                id=run_id,
                kind=kind,
                status="running",
                target=target,
                models=models or {},
                config=config,
                environment={},
                harness_version=__version__,
            )
        )
    return run_id


def finish_run(
    engine: Engine,
    run_id: str,
    status: str = "finished",
    environment: dict[str, Any] | None = None,
    stop_reason: str = "",
) -> None:
    with session(engine) as s:
        run = _run(s, run_id)
        run.status = status
        run.finished_at = now()
        run.stop_reason = stop_reason
        if environment:
            run.environment = environment


def run_facts(engine: Engine, run_id: str) -> dict[str, Any]:
    """A run's stored facts, for --resume to check before anything is changed."""
    with session(engine) as s:
        run = _run(s, run_id)
        return {
            "id": run.id,
            "kind": run.kind,
            "status": run.status,
            "target": run.target,
            "models": dict(run.models),
            "config": dict(run.config),
            "cost_usd": run.cost_usd,
            "tokens_in": run.tokens_in,
            "tokens_out": run.tokens_out,
        }


def mark_running(engine: Engine, run_id: str) -> None:
    """A resumed run is running again: its stop reason and finish time are cleared."""
    with session(engine) as s:
        run = _run(s, run_id)
        run.status = "running"
        run.finished_at = None
        run.stop_reason = ""


def problem_id(s: Session, content_hash: str, name: str, path: str, source: str) -> int:
    found = s.scalar(sa.select(Problem.id).where(Problem.content_hash == content_hash))
    if found is not None:
        return found
    problem = Problem(content_hash=content_hash, name=name, path=path, source=source)
    s.add(problem)
    s.flush()
    return problem.id


def add_candidate(
    engine: Engine,
    run_id: str,
    problem: dict[str, str],
    source: str,
    source_hash: str,
    result: EvaluationResult,
    parents: list[str] | None = None,
    round_index: int = 0,
) -> str:
    """Record one finished candidate and its evaluation, in one transaction."""
    with session(engine) as s:
        candidate_id = _new_candidate(
            s, run_id, problem, source, source_hash, parents, round_index, "pending", ""
        )
        _attach_result(s, candidate_id, result)
    return candidate_id


def add_pending_candidate(
    engine: Engine,
    run_id: str,
    problem: dict[str, str],
    source: str,
    source_hash: str,
    parents: list[str] | None = None,
    round_index: int = 0,
    status: str = "pending",
    reason: str = "",
    candidate_id: str | None = None,
) -> str:
    """Record a candidate before it is evaluated (its code is paid for; keep it), or one that
    ends without an evaluation (`no_code`)."""
    with session(engine) as s:
        return _new_candidate(
            s, run_id, problem, source, source_hash, parents, round_index, status, reason,
            candidate_id,
        )  # fmt: skip


def record_result(engine: Engine, candidate_id: str, result: EvaluationResult) -> None:
    """Attach an evaluation to a pending candidate and set its status, in one transaction."""
    with session(engine) as s:
        _attach_result(s, candidate_id, result)


def _new_candidate(
    s: Session,
    run_id: str,
    problem: dict[str, str],
    source: str,
    source_hash: str,
    parents: list[str] | None,
    round_index: int,
    status: str,
    reason: str,
    candidate_id: str | None = None,
) -> str:
    candidate_id = candidate_id or new_id()
    _run(s, run_id)
    pid = problem_id(
        s, problem["content_hash"], problem["name"], problem["path"], problem["source"]
    )
    s.add(
        Candidate(
            id=candidate_id,
            run_id=run_id,
            problem_id=pid,
            parent_id=(parents or [None])[0],
            parents=parents or [],
            round=round_index,
            source=source,
            source_hash=source_hash,
            status=status,
            reason=reason,
            build={},
            warnings=[],
        )
    )
    s.flush()
    return candidate_id


def _attach_result(s: Session, candidate_id: str, result: EvaluationResult) -> None:
    data = to_jsonable(result)
    cand = _candidate(s, candidate_id)
    cand.status = data["status"]
    cand.reason = data["reason"]
    cand.build = {k: data[k] for k in ("compile_s", "cached", "kernels", "precheck_s")}
    cand.warnings = data["warnings"]
    s.add(
        Evaluation(
            candidate_id=candidate_id,
            status=data["status"],
            reason=data["reason"],
            speedup=data["speedup"],
            speedup_p20=data.get("speedup_p20"),
            speedup_p80=data.get("speedup_p80"),
            candidate_ms=data["candidate_ms"],
            reference_ms=data["reference_ms"],
            max_abs_error=data["max_abs_error"],
            max_rel_error=data["max_rel_error"],
            compile_s=data["compile_s"],
            cached=data["cached"],
            trials=data["trials"],
            cases=data["cases"],
            timing=data["timing"] or {},
            # where the evaluation's time went rides with the environment (no migration)
            environment={
                **profiles.with_outcome(data["environment"], data.get("profile")),
                **({"phases_s": data["phases_s"]} if data.get("phases_s") else {}),
            },
            log=data["log"],
        )
    )
    profiles.add_rows(s, candidate_id, data.get("profile"))


def add_llm_call(engine: Engine, run_id: str, **fields: Any) -> None:
    """Record one LLM call and add its tokens and cost to the run's totals."""
    with session(engine) as s:
        run = _run(s, run_id)
        call = LlmCall(run_id=run_id, **fields)
        s.add(call)
        run.tokens_in += int(fields.get("tokens_in", 0))
        run.tokens_out += int(fields.get("tokens_out", 0))
        run.cost_usd += float(fields.get("cost_usd", 0.0))


def _run(s: Session, run_id: str) -> Run:
    run = s.get(Run, run_id)
    if run is None:
        raise NotFound(f"no run {run_id!r} in the history; `kernelwright runs list` shows the runs")
    return run


def _candidate(s: Session, candidate_id: str) -> Candidate:
    cand = s.get(Candidate, candidate_id)
    if cand is None:
        raise NotFound(
            f"no candidate {candidate_id!r} in the history; `kernelwright runs tree RUN` lists "
            "a run's candidates"
        )
    return cand


@dataclass(frozen=True)
class CandidateRow:
    id: str
    parent_id: str | None
    round: int
    status: str
    reason: str
    speedup: float | None
    candidate_ms: float | None
    problem: str
    # the speedup's spread: p20 and p80 of the per-round ratios (kernelwright.spread)
    speedup_p20: float | None = None
    speedup_p80: float | None = None


def _rows(s: Session, run_id: str) -> list[CandidateRow]:
    query = (
        sa.select(
            Candidate,
            Evaluation.speedup,
            Evaluation.candidate_ms,
            Problem.name,
            Evaluation.speedup_p20,
            Evaluation.speedup_p80,
        )
        .join(Evaluation, Evaluation.candidate_id == Candidate.id, isouter=True)
        .join(Problem, Problem.id == Candidate.problem_id)
        .where(Candidate.run_id == run_id)
        .order_by(Candidate.round, Candidate.created_at)
    )
    return [
        CandidateRow(c.id, c.parent_id, c.round, c.status, c.reason, speedup, ms, name, p20, p80)
        for c, speedup, ms, name, p20, p80 in s.execute(query)
    ]


def _spread(row: Any) -> dict[str, Any]:
    """`speedup_p20`, `speedup_p80` and `within_noise` of a row or evaluation (Nones for None)."""
    low, high = getattr(row, "speedup_p20", None), getattr(row, "speedup_p80", None)
    return speedup_spread_fields(low, high)


def list_runs(engine: Engine) -> list[dict[str, Any]]:
    with session(engine) as s:
        runs = s.scalars(sa.select(Run).order_by(Run.started_at.desc())).all()
        out = []
        for run in runs:
            rows = _rows(s, run.id)
            best = max(
                (r for r in rows if r.status == "correct" and r.speedup),
                key=lambda r: r.speedup or 0.0,
                default=None,
            )
            out.append(
                {
                    "id": run.id,
                    "kind": run.kind,
                    "status": run.status,
                    "target": run.target,
                    "started_at": run.started_at.isoformat(timespec="seconds"),
                    "candidates": len(rows),
                    "correct": sum(r.status == "correct" for r in rows),
                    "best_speedup": best.speedup if best else None,
                    **_spread(best),
                    "problems": sorted({r.problem for r in rows}),
                    "cost_usd": run.cost_usd,
                }
            )
        return out


def show_run(engine: Engine, run_id: str) -> dict[str, Any]:
    with session(engine) as s:
        run = _run(s, run_id)
        rows = _rows(s, run_id)
        rounds: dict[int, dict[str, Any]] = {}
        for row in rows:
            entry = rounds.setdefault(
                row.round,
                {
                    "round": row.round,
                    "candidates": 0,
                    "correct": 0,
                    "best_speedup": None,
                    **_spread(None),
                    "statuses": {},
                },
            )
            entry["candidates"] += 1
            entry["statuses"][row.status] = entry["statuses"].get(row.status, 0) + 1
            if row.status == "correct":
                entry["correct"] += 1
                if row.speedup and (entry["best_speedup"] or 0) < row.speedup:
                    entry.update(best_speedup=row.speedup, **_spread(row))
        correct = [r for r in rows if r.status == "correct" and r.speedup is not None]
        best = max(correct, key=lambda r: r.speedup or 0.0, default=None)
        return {
            "id": run.id,
            "kind": run.kind,
            "status": run.status,
            "stop_reason": run.stop_reason,
            "target": run.target,
            "models": run.models,
            "config": run.config,
            "harness_version": run.harness_version,
            "started_at": run.started_at.isoformat(timespec="seconds"),
            "finished_at": run.finished_at.isoformat(timespec="seconds")
            if run.finished_at
            else None,
            "tokens_in": run.tokens_in,
            "tokens_out": run.tokens_out,
            "cost_usd": run.cost_usd,
            "best": {
                "candidate": best.id,
                "speedup": best.speedup,
                **_spread(best),
                "problem": best.problem,
            }
            if best
            else None,
            "rounds": [rounds[k] for k in sorted(rounds)],
            "candidates": [vars(r) for r in rows],
        }


def candidate_rows(engine: Engine, run_id: str) -> list[CandidateRow]:
    with session(engine) as s:
        _run(s, run_id)
        return _rows(s, run_id)


def get_candidate(engine: Engine, candidate_id: str) -> dict[str, Any]:
    with session(engine) as s:
        cand = _candidate(s, candidate_id)
        evaluation = _latest_evaluation(s, candidate_id)
        problem = s.get(Problem, cand.problem_id)
        assert problem is not None
        return {
            "id": cand.id,
            "run_id": cand.run_id,
            "parent_id": cand.parent_id,
            "round": cand.round,
            "status": cand.status,
            "reason": cand.reason,
            "source": cand.source,
            "warnings": cand.warnings,
            "build": cand.build,
            "problem": {
                "name": problem.name,
                "path": problem.path,
                "source": problem.source,
                "content_hash": problem.content_hash,
            },
            "evaluation": _evaluation_view(evaluation),
            "profiles": profiles.kernel_rows(s, candidate_id),
        }


def _latest_evaluation(s: Session, candidate_id: str) -> Evaluation | None:
    return s.scalar(
        sa.select(Evaluation)
        .where(Evaluation.candidate_id == candidate_id)
        .order_by(Evaluation.id.desc())
    )


def _evaluation_view(evaluation: Evaluation | None) -> dict[str, Any] | None:
    if evaluation is None:
        return None
    return {
        "speedup": evaluation.speedup,
        **_spread(evaluation),
        "candidate_ms": evaluation.candidate_ms,
        "reference_ms": evaluation.reference_ms,
        "max_abs_error": evaluation.max_abs_error,
        "timing": evaluation.timing,
        "environment": evaluation.environment,
        "log": evaluation.log,
        "cases": evaluation.cases,
    }


def best_candidate(engine: Engine, run_id: str) -> dict[str, Any]:
    rows = [r for r in candidate_rows(engine, run_id) if r.status == "correct"]
    if not rows:
        raise NotFound(f"run {run_id!r} has no correct candidate to export")
    best = max(rows, key=lambda r: r.speedup or 0.0)
    return get_candidate(engine, best.id)


def delete_run(engine: Engine, run_id: str) -> int:
    """Delete a run with its candidates, evaluations, profiles and LLM calls; return candidates."""
    from kernelwright.store.schema import Profile

    with session(engine) as s:
        _run(s, run_id)
        ids = list(s.scalars(sa.select(Candidate.id).where(Candidate.run_id == run_id)))
        if ids:
            s.execute(sa.delete(Evaluation).where(Evaluation.candidate_id.in_(ids)))
            s.execute(sa.delete(Profile).where(Profile.candidate_id.in_(ids)))
            s.execute(sa.update(Candidate).where(Candidate.id.in_(ids)).values(parent_id=None))
        s.execute(sa.delete(LlmCall).where(LlmCall.run_id == run_id))
        s.execute(sa.delete(Candidate).where(Candidate.run_id == run_id))
        s.execute(sa.delete(Run).where(Run.id == run_id))
        return len(ids)


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()
