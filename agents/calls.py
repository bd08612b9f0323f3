"""One LLM call as the loop makes it: budget first, then the call, then a record for the history.

`ask` never lets a provider fault escape: a call that failed after its retries comes back as a
`Call` with `error` set (the loop records it and goes on). What ends a run is raised:
`BudgetExceeded` before a call that could pass `--budget-usd`, `RepliesExhausted` from a replay.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from kernelwright.agents.llm import ChatModel, Completion, Message, ProviderError
from kernelwright.agents.pricing import Budget
from kernelwright.agents.prompting import as_text

MAX_TOKENS = {"coder": 16000, "judge": 4000}
REASONING_MAX_TOKENS = {"coder": 48000, "judge": 24000}  # thinking spends output tokens too


@dataclass(frozen=True)
class Call:
    role: str
    provider: str
    model: str
    prompt: str
    reply: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    latency_s: float
    error: str = ""

    def fields(self) -> dict[str, Any]:
        return asdict(self)


def max_tokens_for(model: ChatModel, role: str) -> int:
    info = getattr(model, "info", None)
    reasoning = info is not None and info.reasoning != "none"
    return (REASONING_MAX_TOKENS if reasoning else MAX_TOKENS)[role]


def ask(
    model: ChatModel,
    messages: list[Message],
    *,
    role: str,
    problem: str | None,
    budget: Budget,
) -> tuple[Completion | None, Call]:
    prompt = as_text(messages)
    limit = max_tokens_for(model, role)
    sent = getattr(model, "sent_max_tokens", None)  # thinking tokens on top of the answer's
    worst = sent(limit) if sent else limit
    reserved = budget.reserve(getattr(model, "info", None), prompt, worst)
    completion: Completion | None = None
    try:
        completion = model.complete(messages, role=role, problem=problem, max_tokens=limit)
    except ProviderError as exc:
        return None, Call(role, model.provider, model.model, prompt, "", 0, 0, 0.0, 0.0, str(exc))
    finally:
        budget.settle(reserved, completion.cost_usd if completion else 0.0)
    return completion, Call(
        role=role,
        provider=completion.provider,
        model=completion.model,
        prompt=prompt,
        reply=completion.text,
        tokens_in=completion.usage.input_tokens,
        tokens_out=completion.usage.output_tokens,
        cost_usd=completion.cost_usd or 0.0,
        latency_s=completion.latency_s,
    )
