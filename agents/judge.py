"""The judge: reads one evaluated candidate and names the one thing to change next.

Repair mode (the candidate failed: compile, runtime, timeout, wrong, rejected or no code) reads
the log, the reference and the candidate, and returns one critical issue and a minimal fix.
Optimize mode (the candidate is correct) reads the reference, the candidate, its timings, its
profile when there is one and the hardware sheet, and returns one bottleneck and one plan. The
code and the metrics it reads are always those of the same candidate. A reply that does not parse
is passed on as free text; a failed call gives no verdict. Neither ends the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kernelwright.agents.calls import Call, ask
from kernelwright.agents.llm import ChatModel
from kernelwright.agents.parsing import Verdict, parse_verdict
from kernelwright.agents.pricing import Budget
from kernelwright.agents.prompting import messages


@dataclass(frozen=True)
class Review:
    mode: str  # repair | optimize
    verdict: Verdict | None  # None: the call failed
    call: Call


def mode_for(status: str) -> str:
    return "optimize" if status == "correct" else "repair"


def review(
    model: ChatModel,
    budget: Budget,
    *,
    problem_name: str,
    reference: str,
    target: str,
    sheet: dict[str, Any],
    candidate: dict[str, Any],
    history: list[dict[str, Any]],
) -> Review:
    mode = mode_for(candidate["status"])
    if mode == "repair":
        prompt = messages(
            "judge_system.j2",
            "judge_repair.j2",
            problem_name=problem_name,
            reference=reference,
            target=target,
            candidate=candidate,
            history=history,
        )
    else:
        prompt = messages(
            "judge_system.j2",
            "judge_optimize.j2",
            problem_name=problem_name,
            reference=reference,
            target=target,
            sheet=sheet,
            candidate=candidate,
            metrics=candidate.get("metrics"),
            history=history,
        )
    completion, call = ask(model, prompt, role="judge", problem=problem_name, budget=budget)
    verdict = parse_verdict(completion.text, mode) if completion is not None else None
    return Review(mode, verdict, call)
