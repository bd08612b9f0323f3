"""What reviewing a run reads of its LLM calls: every call of a run, one call whole, and the
judge's and the coder's words about one candidate.

A call is tied to a candidate by `llm_calls.candidate_id`: a coder call to the candidate it wrote,
a judge call to the candidate it judged. Calls store no round; it is derived here (see
`_rounds`) and is None where the history cannot tell. Replies are read with the agents' own
parsers (`kernelwright.review_words.what_they_said`, in core: the store imports no agent),
so a review shows what the loop took from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from kernelwright.errors import BadInput
from kernelwright.store.repo import NotFound, _candidate, _run, session
from kernelwright.store.schema import Candidate, LlmCall
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

CALLS_HINT = "`kernelwright runs calls RUN` lists a run's calls"


def parse_call_id(text: str) -> int:
    """A call id as `runs calls` prints it: a number (the history numbers calls in order)."""
    stripped = text.strip().removeprefix("#")
    if not stripped.isdigit():
        raise BadInput(f"call id {text!r} is not a number; {CALLS_HINT}")
    return int(stripped)


def run_calls(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    """Every LLM call of a run, in the order they were made, without prompts and replies."""
    with session(engine) as s:
        _run(s, run_id)
        calls = list(
            s.scalars(sa.select(LlmCall).where(LlmCall.run_id == run_id).order_by(LlmCall.id))
        )
        rounds = _rounds(s, run_id, calls)
        return [_view(call, rounds.get(call.id), whole=False) for call in calls]


def get_call(engine: Engine, call_id: int) -> dict[str, Any]:
    """One LLM call with its prompt and reply."""
    with session(engine) as s:
        call = s.get(LlmCall, call_id)
        if call is None:
            raise NotFound(f"no LLM call {call_id} in the history; {CALLS_HINT}")
        same_run = list(
            s.scalars(sa.select(LlmCall).where(LlmCall.run_id == call.run_id).order_by(LlmCall.id))
        )
        return _view(call, _rounds(s, call.run_id, same_run).get(call.id), whole=True)


def candidate_words(engine: Engine, candidate_id: str) -> dict[str, Any]:
    """The raw replies about one candidate: the coder's that wrote it and the judge's latest
    answered review of it (None where there is none, e.g. a run that ended before the review)."""
    with session(engine) as s:
        _candidate(s, candidate_id)
        calls = s.scalars(
            sa.select(LlmCall)
            .where(LlmCall.candidate_id == candidate_id, LlmCall.error == "")
            .order_by(LlmCall.id)
        ).all()
        return _words(calls).get(candidate_id, {"coder": None, "judge": None})


def run_words(engine: Engine, run_id: str) -> dict[str, dict[str, Any]]:
    """`candidate_words` for every candidate of a run that has any, by candidate id."""
    with session(engine) as s:
        _run(s, run_id)
        calls = s.scalars(
            sa.select(LlmCall)
            .where(LlmCall.run_id == run_id, LlmCall.error == "")
            .where(LlmCall.candidate_id.is_not(None))
            .order_by(LlmCall.id)
        ).all()
        return _words(calls)


def _words(calls: Sequence[LlmCall]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for call in calls:  # in call order
        if call.candidate_id is None:
            continue
        words = found.setdefault(call.candidate_id, {"coder": None, "judge": None})
        entry = {"call": call.id, "reply": call.reply}
        if call.role == "coder" and words["coder"] is None:
            words["coder"] = entry
        elif call.role == "judge":
            # a failed review leaves the candidate unreviewed and it may be judged again: the
            # last answered one is the verdict its children were written from
            words["judge"] = entry
    return found


def _view(call: LlmCall, round_: int | None, whole: bool) -> dict[str, Any]:
    relation = None
    if call.candidate_id is not None:
        relation = "wrote" if call.role == "coder" else "judged"
    view: dict[str, Any] = {
        "id": call.id,
        "run_id": call.run_id,
        "round": round_,
        "role": call.role,
        "problem": call.problem,
        "provider": call.provider,
        "model": call.model,
        "candidate_id": call.candidate_id,
        "candidate_relation": relation,
        "tokens_in": call.tokens_in,
        "tokens_out": call.tokens_out,
        "cost_usd": call.cost_usd,
        "latency_s": call.latency_s,
        "error": call.error,
        "created_at": call.created_at.isoformat(timespec="seconds"),
    }
    if whole:
        view["prompt"], view["reply"] = call.prompt, call.reply
    return view


def _rounds(s: Session, run_id: str, calls: list[LlmCall]) -> dict[int, int]:
    """The round of each call where the history tells it.

    A coder call is in its candidate's round. A judge call is in the round of the first child
    of the judged candidate written after it: the loop reviews a parent right before writing
    its child, in the same round, and calls are numbered in the order they are recorded. A
    call with neither (a failed coder call, a review the run stopped after) has no round.
    """
    found = s.execute(
        sa.select(Candidate.id, Candidate.round, Candidate.parents).where(
            Candidate.run_id == run_id
        )
    ).all()
    round_of = {cid: r for cid, r, _ in found}
    parents_of = {cid: list(parents or []) for cid, _, parents in found}
    # per parent, the (call id, round) of each coder call that wrote a child of it, in call order
    children: dict[str, list[tuple[int, int]]] = {}
    for call in calls:
        if call.role == "coder" and call.candidate_id in round_of:
            for parent in parents_of[call.candidate_id]:
                children.setdefault(parent, []).append((call.id, round_of[call.candidate_id]))
    rounds: dict[int, int] = {}
    for call in calls:
        if call.candidate_id not in round_of:
            continue
        if call.role == "coder":
            rounds[call.id] = round_of[call.candidate_id]
            continue
        later = [r for cid, r in children.get(call.candidate_id, []) if cid > call.id]
        if later:
            rounds[call.id] = later[0]
    return rounds
