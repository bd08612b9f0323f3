"""OpenAI's chat completions API, and any OpenAI-compatible server (vLLM, SGLang, Ollama)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kernelwright.agents.llm import Completion, Message, Usage
from kernelwright.agents.pricing import ModelInfo, cost
from kernelwright.agents.retry import call_with_retries


class OpenAIChat:
    provider = "openai"

    def __init__(
        self,
        model: str,
        info: ModelInfo,
        api_key: str,
        base_url: str | None = None,
        timeout_s: float = 600.0,
        reasoning_effort: str | None = None,
        http_client: Any = None,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        import openai

        self.model = model
        self.info = info
        self.reasoning_effort = reasoning_effort
        self._sleep = sleep
        self._client = openai.OpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout_s,
            max_retries=0,
            http_client=http_client,
        )

    def complete(
        self,
        messages: list[Message],
        *,
        role: str,
        problem: str | None = None,
        max_tokens: int = 8192,
    ) -> Completion:
        params: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_completion_tokens": max_tokens,
        }
        if self.info.temperature:
            params["temperature"] = 0.7
        if self.info.reasoning == "openai_effort" and self.reasoning_effort:
            params["reasoning_effort"] = self.reasoning_effort
        start = time.perf_counter()
        response, attempts = call_with_retries(
            lambda: self._client.chat.completions.create(**params),
            f"openai:{self.model} ({role})",
            self._sleep,
        )
        text = response.choices[0].message.content or "" if response.choices else ""
        usage = Usage(
            getattr(response.usage, "prompt_tokens", 0) or 0,
            getattr(response.usage, "completion_tokens", 0) or 0,
        )
        return Completion(
            text,
            usage,
            cost(self.info, usage),
            self.model,
            self.provider,
            time.perf_counter() - start,
            attempts,
        )
