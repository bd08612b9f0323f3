"""Turn a model spec (`openai:MODEL`, `anthropic:MODEL`, `replay:FILE.jsonl`) into a ChatModel.

API keys come only from the environment (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`); a missing key is
one line naming the variable. An OpenAI-compatible server given with `base_url` may run without a
key (local vLLM, SGLang and Ollama servers usually need none).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kernelwright.agents.llm import ChatModel, MissingKey
from kernelwright.agents.pricing import model_info
from kernelwright.errors import BadInput

KEY_VARIABLES = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


def _key(provider: str, optional: bool = False) -> str:
    variable = KEY_VARIABLES[provider]
    value = os.environ.get(variable, "").strip()
    if not value and not optional:
        raise MissingKey(f"{variable} is not set; export it to use {provider} models")
    return value or "not-needed"


def lasting_spec(spec: str | None) -> str | None:
    """`spec` as a run stores it: a replay file by its absolute path, so that the run resumes
    from any folder."""
    if spec is None or not spec.startswith("replay:") or len(spec) == len("replay:"):
        return spec
    return "replay:" + str(Path(spec.removeprefix("replay:")).expanduser().absolute())


def make_model(
    spec: str,
    *,
    base_url: str | None = None,
    timeout_s: float = 600.0,
    reasoning: str | None = None,
    **client: Any,
) -> ChatModel:
    """A ChatModel for `spec`. `reasoning`: an OpenAI effort ("low"/"medium"/"high") or, for
    Claude, a thinking budget in tokens (a string of digits) or an effort (see anthropic_chat)."""
    provider, sep, name = spec.partition(":")
    if not sep or not name:
        raise BadInput(
            f"model {spec!r} must look like openai:MODEL, anthropic:MODEL or replay:FILE"
        )
    if provider == "replay":
        from kernelwright.agents.providers.replay import ReplayModel

        return ReplayModel(name)
    if provider == "openai":
        from kernelwright.agents.providers.openai_chat import OpenAIChat

        return OpenAIChat(
            name,
            model_info("openai", name),
            _key("openai", optional=bool(base_url)),
            base_url=base_url,
            timeout_s=timeout_s,
            reasoning_effort=reasoning,
            **client,
        )
    if provider == "anthropic":
        from kernelwright.agents.providers.anthropic_chat import EFFORTS, AnthropicChat

        thinking = int(reasoning) if reasoning and reasoning.isdigit() else None
        effort = reasoning.lower() if reasoning and reasoning.lower() in EFFORTS else None
        if reasoning and thinking is None and effort is None:
            raise BadInput(
                f"--reasoning {reasoning!r} for Claude must be a thinking budget in tokens "
                f"(e.g. 8000) or an effort: {', '.join(EFFORTS)}"
            )
        return AnthropicChat(
            name,
            model_info("anthropic", name),
            _key("anthropic"),
            timeout_s=timeout_s,
            thinking_tokens=thinking,
            effort=effort,
            **client,
        )
    raise BadInput(f"unknown model provider {provider!r}; use openai, anthropic or replay")
