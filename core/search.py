"""The search policy: which candidates the next round starts from (a beam over the history).

Each round has `width` slots. Each slot starts from a parent (a candidate to repair or to speed
up) or from the reference alone (None). The policy:

- Failed candidates that nobody has tried to fix yet come first, newest first, as long as their
  chain of consecutive failures is at most MAX_REPAIR_CHAIN long: a failure usually sits one
  small fix away from a working kernel, and its log says where. While a correct candidate
  exists, repairs take at most half the slots (rounded up).
- The other slots go to correct candidates, fastest first, cycling when there are fewer of them
  than slots. The beam always continues from the best, never merely from the latest.
- With no correct candidate and nothing left to repair, a slot starts over from the reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kernelwright.agents.parsing import Verdict

MAX_REPAIR_CHAIN = 2
LOG_TAIL_LINES = 150
LOG_TAIL_CHARS = 12_000
NOT_REPAIRABLE = ("pending", "no_code", "correct")


@dataclass
class Entry:
    """One candidate as the loop knows it."""

    id: str
    round: int
    parents: list[str]
    source: str
    status: str = "pending"
    reason: str = ""
    summary: str = ""  # what the coder said it tried
    speedup: float | None = None
    candidate_ms: float | None = None
    reference_ms: float | None = None
    log: str = ""
    speedup_p20: float | None = None  # the speedup's spread (kernelwright.spread)
    speedup_p80: float | None = None
    metrics: dict[str, Any] | None = None
    verdict: Verdict | None = None
    reviewed: bool = False

    @property
    def parent(self) -> str | None:
        return self.parents[0] if self.parents else None

    @property
    def correct(self) -> bool:
        return self.status == "correct" and self.speedup is not None

    def view(self) -> dict[str, Any]:
        """What the prompts see of this candidate."""
        return {
            "id": self.id,
            "round": self.round,
            "status": self.status,
            "reason": self.reason,
            "source": self.source,
            "log": log_tail(self.log),
            "speedup": self.speedup,
            "candidate_ms": self.candidate_ms,
            "reference_ms": self.reference_ms,
            "metrics": self.metrics,
        }

    def history_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "round": self.round,
            "parent": self.parent,
            "status": self.status,
            "speedup": self.speedup if self.correct else None,
            "tried": self.summary,
        }


def log_tail(log: str) -> str:
    lines = log.rstrip().splitlines()[-LOG_TAIL_LINES:]
    text = "\n".join(lines)
    return text[-LOG_TAIL_CHARS:]


def best(entries: list[Entry]) -> Entry | None:
    return max((e for e in entries if e.correct), key=lambda e: e.speedup or 0.0, default=None)


def _failure_chain(entry: Entry, by_id: dict[str, Entry]) -> int:
    """How many failed candidates in a row end at `entry` (itself included)."""
    length, current = 0, entry
    while current is not None and not current.correct:
        length += 1
        current = by_id.get(current.parent) if current.parent else None
    return length


def choose_parents(entries: list[Entry], width: int) -> list[Entry | None]:
    by_id = {e.id: e for e in entries}
    tried = {e.parent for e in entries if e.parent and e.status != "no_code"}
    repairs = [
        e
        for e in entries
        if e.status not in NOT_REPAIRABLE
        and e.source
        and e.id not in tried
        and _failure_chain(e, by_id) <= MAX_REPAIR_CHAIN
    ]
    repairs.sort(key=lambda e: e.round, reverse=True)  # stable: newest round first
    correct = sorted((e for e in entries if e.correct), key=lambda e: -(e.speedup or 0.0))
    if correct:
        slots: list[Entry | None] = list(repairs[: math.ceil(width / 2)])
        return slots + [correct[i % len(correct)] for i in range(width - len(slots))]
    slots = list(repairs[:width])
    return slots + [None] * (width - len(slots))
