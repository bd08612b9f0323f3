"""The model table (models.toml) and what calls cost; the per-run budget.

The budget is checked *before* a call, against a worst case (the prompt's estimated tokens at the
input price plus `max_tokens` at the output price), so a run never starts a call that could take
it past `--budget-usd`.
"""

from __future__ import annotations

import threading
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from kernelwright.agents.llm import BudgetExceeded, Usage
from kernelwright.errors import BadInput


@dataclass(frozen=True)
class ModelInfo:
    name: str
    provider: str
    context: int
    input_per_mtok: float | None
    output_per_mtok: float | None
    temperature: bool
    reasoning: str


@cache
def _table() -> dict[str, dict[str, object]]:
    text = resources.files("kernelwright.agents").joinpath("models.toml").read_text()
    return tomllib.loads(text)["models"]


def model_info(provider: str, name: str) -> ModelInfo:
    """The table's row for `name` (exact, else the longest key that prefixes `name-`)."""
    table = _table()
    key = (
        name
        if name in table
        else max((k for k in table if name.startswith(k + "-")), key=len, default=None)
    )
    row = table.get(key, {}) if key else {}
    return ModelInfo(
        name=name,
        provider=str(row.get("provider", provider)),
        context=int(row.get("context", 128000)),  # type: ignore[arg-type]
        input_per_mtok=row.get("input_per_mtok"),  # type: ignore[arg-type]
        output_per_mtok=row.get("output_per_mtok"),  # type: ignore[arg-type]
        temperature=bool(row.get("temperature", True)),
        reasoning=str(row.get("reasoning", "none")),
    )


def cost(info: ModelInfo, usage: Usage) -> float | None:
    if info.input_per_mtok is None or info.output_per_mtok is None:
        return None
    return (
        usage.input_tokens * info.input_per_mtok + usage.output_tokens * info.output_per_mtok
    ) / 1e6


def estimate_tokens(text: str) -> int:
    """A deliberately high estimate (3 characters per token) for the budget check."""
    return len(text) // 3 + 1


class Budget:
    """Spend so far against `--budget-usd`. Safe to share between threads: concurrent calls
    reserve their worst case first, so K calls at once cannot together pass the limit."""

    def __init__(self, limit_usd: float | None, spent_usd: float = 0.0) -> None:
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self._reserved = 0.0
        self._lock = threading.Lock()

    def reserve(self, info: ModelInfo | None, prompt: str, max_tokens: int) -> float:
        """Check and hold a call's worst case; pair with `settle`. `info` None: a free model."""
        if info is None or self.limit_usd is None:
            return 0.0
        worst = cost(info, Usage(estimate_tokens(prompt), max_tokens))
        with self._lock:
            self.spent_usd += self._reserved  # check against what is spent and held
            try:
                self.check(info, prompt, max_tokens)
            finally:
                self.spent_usd -= self._reserved
            self._reserved += worst or 0.0
        return worst or 0.0

    def settle(self, reserved: float, actual: float | None) -> None:
        with self._lock:
            self._reserved -= reserved
            self.spent_usd += actual or 0.0

    def check(self, info: ModelInfo, prompt: str, max_tokens: int) -> None:
        """Raise BudgetExceeded if a call with this prompt could pass the limit."""
        if self.limit_usd is None:
            return
        worst = cost(info, Usage(estimate_tokens(prompt), max_tokens))
        if worst is None:
            raise BadInput(
                f"no price for model {info.name!r} in models.toml; "
                "add it there or omit --budget-usd"
            )
        if self.spent_usd + worst > self.limit_usd:
            raise BudgetExceeded(
                f"the next call could cost up to ${worst:.4f}; ${self.spent_usd:.4f} of "
                f"${self.limit_usd:.2f} is spent"
            )

    def add(self, amount: float | None) -> None:
        self.spent_usd += amount or 0.0
