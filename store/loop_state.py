"""What an optimize run reads back from the history to go on (`--resume`) and to report."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from kernelwright.store.repo import _evaluation_view, _latest_evaluation, _run, session
from kernelwright.store.schema import Candidate, LlmCall, Problem
from sqlalchemy.engine import Engine


def loop_state(
    engine: Engine, run_id: str, problem_hash: str | None = None, problem_name: str | None = None
) -> dict[str, Any]:
    """What an optimize loop needs to go on: every candidate with its latest evaluation, the
    judge's replies by the candidate they reviewed, and how many calls each role made. With a
    problem (a bench run holds many), only that problem's candidates and calls."""
    with session(engine) as s:
        _run(s, run_id)
        candidates = []
        query = (
            sa.select(Candidate)
            .where(Candidate.run_id == run_id)
            .order_by(Candidate.round, Candidate.created_at)
        )
        if problem_hash is not None:
            query = query.join(Problem, Problem.id == Candidate.problem_id).where(
                Problem.content_hash == problem_hash
            )
        for cand in s.scalars(query):
            candidates.append(
                {
                    "id": cand.id,
                    "round": cand.round,
                    "parents": list(cand.parents),
                    "source": cand.source,
                    "status": cand.status,
                    "reason": cand.reason,
                    "warnings": list(cand.warnings),
                    "evaluation": _evaluation_view(_latest_evaluation(s, cand.id)),
                }
            )
        calls = s.execute(
            sa.select(LlmCall.role, LlmCall.candidate_id, LlmCall.reply, LlmCall.error)
            .where(LlmCall.run_id == run_id)
            .where(LlmCall.problem == problem_name if problem_name is not None else sa.true())
            .order_by(LlmCall.id)
        ).all()
        coder_replies = {
            cid: reply for role, cid, reply, error in calls if role == "coder" and cid and not error
        }
        verdicts = {
            cid: reply for role, cid, reply, error in calls if role == "judge" and cid and not error
        }
        served: dict[str, int] = {}
        for role, _, _, error in calls:
            if not error:
                served[role] = served.get(role, 0) + 1
        return {
            "candidates": candidates,
            "verdicts": verdicts,
            "coder_replies": coder_replies,
            "served": served,
        }


def run_totals(engine: Engine, run_id: str) -> dict[str, Any]:
    with session(engine) as s:
        run = _run(s, run_id)
        return {"tokens_in": run.tokens_in, "tokens_out": run.tokens_out, "cost_usd": run.cost_usd}
