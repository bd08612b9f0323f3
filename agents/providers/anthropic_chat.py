"""Anthropic's messages API (Claude), thinking as the model table says.

`--reasoning` is a thinking budget in tokens (digits) or an effort (`low` ... `max`). Models
marked `anthropic_thinking` get `thinking: enabled` with the budget (an effort alone means no
thinking there); models marked `anthropic_adaptive` (Claude 4.6 and later, which deprecate or
refuse budgets) get `thinking: adaptive`, with the effort in `output_config` when one is named.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kernelwright.agents.llm import Completion, Message, Usage
from kernelwright.agents.pricing import ModelInfo, cost
from kernelwright.agents.retry import call_with_retries

EFFORTS = ("low", "medium", "high", "xhigh", "max")


class AnthropicChat:
    provider = "anthropic"

    def __init__(
        self,
        model: str,
        info: ModelInfo,
        api_key: str,
        timeout_s: float = 600.0,
        thinking_tokens: int | None = None,
        effort: str | None = None,
        http_client: Any = None,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        import anthropic

        self.model = model
        self.info = info
        self.thinking_tokens = thinking_tokens
        self.effort = effort
        self._sleep = sleep
        self._client = anthropic.Anthropic(
            api_key=api_key, timeout=timeout_s, max_retries=0, http_client=http_client
        )

    def _mode(self) -> str:
        if self.info.reasoning == "anthropic_thinking" and self.thinking_tokens:
            return "enabled"
        if self.info.reasoning == "anthropic_adaptive" and (self.thinking_tokens or self.effort):
            return "adaptive"
        return ""

    def sent_max_tokens(self, max_tokens: int) -> int:
        """The max_tokens a call asks for: thinking counts toward it, so an explicit thinking
        budget comes on top of the answer's own `max_tokens` (a reasoning model's allowance,
        see calls.REASONING_MAX_TOKENS, already leaves room for adaptive thinking). The budget
        reserves this worst case."""
        return max_tokens + int(self.thinking_tokens or 0) if self._mode() else max_tokens

    def complete(
        self,
        messages: list[Message],
        *,
        role: str,
        problem: str | None = None,
        max_tokens: int = 8192,
    ) -> Completion:
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "messages": [
                {"role": m.role, "content": m.content} for m in messages if m.role != "system"
            ],
        }
        if system:
            params["system"] = system
        params["max_tokens"] = self.sent_max_tokens(max_tokens)
        if self._mode() == "enabled":
            params["thinking"] = {"type": "enabled", "budget_tokens": self.thinking_tokens}
        elif self._mode() == "adaptive":
            params["thinking"] = {"type": "adaptive"}
            if self.effort:
                params["output_config"] = {"effort": self.effort}
        elif self.info.temperature:
            # newer SDKs dropped the keyword; the API field still travels in the body
            params["extra_body"] = {"temperature": 0.7}
        start = time.perf_counter()
        response, attempts = call_with_retries(
            lambda: self._client.messages.create(**params),
            f"anthropic:{self.model} ({role})",
            self._sleep,
        )
        text = "".join(
            getattr(b, "text", "") for b in response.content if getattr(b, "type", "") == "text"
        )
        usage = Usage(response.usage.input_tokens or 0, response.usage.output_tokens or 0)
        return Completion(
            text,
            usage,
            cost(self.info, usage),
            self.model,
            self.provider,
            time.perf_counter() - start,
            attempts,
        )
