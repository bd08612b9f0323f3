"""What every chat model offers the coder and the judge, and the records of one call.

A provider adapts one API to `ChatModel.complete(messages, role=..., problem=...)`, returning a
`Completion` with the text, token usage and cost. Provider faults are `ProviderError`s (with
`retryable`), a missing key is `MissingKey` (bad input: one line naming the variable), an exhausted
replay file is `RepliesExhausted` (the run ends cleanly, as if its budget were spent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from kernelwright.errors import BadInput, KernelwrightError


@dataclass(frozen=True)
class Message:
    role: str  # system | user | assistant
    content: str


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens
        )


@dataclass(frozen=True)
class Completion:
    text: str
    usage: Usage
    cost_usd: float | None  # None: the model has no price in models.toml
    model: str
    provider: str
    latency_s: float
    attempts: int = 1


class ChatModel(Protocol):
    provider: str
    model: str

    def complete(
        self,
        messages: list[Message],
        *,
        role: str,
        problem: str | None = None,
        max_tokens: int = 8192,
    ) -> Completion: ...


class ProviderError(KernelwrightError):
    def __init__(self, message: str, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class MissingKey(BadInput):
    """The provider's API key variable is not set."""


class RepliesExhausted(KernelwrightError):
    """A replay model has no more replies for this role and problem."""


class BudgetExceeded(KernelwrightError):
    """The next call could take the run past its --budget-usd."""
