"""The coder: writes the first candidate from the reference, then repairs or speeds one up.

It sees the reference, the candidate it starts from (with its result and log), the judge's
verdict, the best candidate so far and a compact history of every attempt. What it returns is
a `Proposal`: the candidate source (None when the reply held no code: `no_code`), a one-line
summary of what it tried (for later prompts' history), and the call record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kernelwright.agents.calls import Call, ask
from kernelwright.agents.llm import ChatModel
from kernelwright.agents.parsing import Verdict, extract_candidate
from kernelwright.agents.pricing import Budget
from kernelwright.agents.prompting import messages

SUMMARY_CHARS = 200


@dataclass(frozen=True)
class Proposal:
    source: str | None
    summary: str
    call: Call


def write_first(
    model: ChatModel,
    budget: Budget,
    *,
    problem_name: str,
    reference: str,
    target: str,
    sheet: dict[str, Any],
) -> Proposal:
    prompt = messages(
        "coder_system.j2",
        "coder_first.j2",
        problem_name=problem_name,
        reference=reference,
        target=target,
        sheet=sheet,
    )
    return _propose(model, budget, prompt, problem_name)


def write_next(
    model: ChatModel,
    budget: Budget,
    *,
    problem_name: str,
    reference: str,
    target: str,
    sheet: dict[str, Any],
    parent: dict[str, Any],
    verdict: Verdict | None,
    best: dict[str, Any] | None,
    history: list[dict[str, Any]],
) -> Proposal:
    prompt = messages(
        "coder_system.j2",
        "coder_next.j2",
        problem_name=problem_name,
        reference=reference,
        target=target,
        sheet=sheet,
        parent=parent,
        verdict=verdict,
        best=best,
        history=history,
    )
    return _propose(model, budget, prompt, problem_name)


def _propose(model: ChatModel, budget: Budget, prompt: list, problem_name: str) -> Proposal:
    completion, call = ask(model, prompt, role="coder", problem=problem_name, budget=budget)
    if completion is None:
        return Proposal(None, "", call)
    return Proposal(extract_candidate(completion.text), summarize(completion.text), call)


def summarize(reply: str) -> str:
    """The reply's prose before its first code block, as one short line."""
    prose = reply.split("```", 1)[0]
    line = re.sub(r"\s+", " ", prose).strip()
    return line if len(line) <= SUMMARY_CHARS else line[: SUMMARY_CHARS - 1].rstrip() + "…"
