"""Shared fakes for the loop tests: scripted coder and judge replies, and an evaluator that reads
the verdict a candidate carries in a `# RESULT:` line instead of building it."""

from __future__ import annotations

import json
from pathlib import Path

from kernelwright.records import EvaluationResult, Status


def coder(result: str, note: str = "Tried something.") -> dict[str, str]:
    """A coder reply whose candidate the fake evaluator scores by its RESULT line."""
    code = (
        "import torch\n\n\nclass ModelNew(torch.nn.Module):\n"
        "    def __init__(self, dim):\n        super().__init__()\n\n"
        "    def forward(self, x):\n        return x\n\n\n"
        f"# RESULT: {result}\n"
    )
    return {"role": "coder", "text": f"{note}\n```python\n{code}```\n"}


def judge(mode: str, text: str | None = None) -> dict[str, str]:
    if text is not None:
        return {"role": "judge", "text": text}
    body = (
        {"issue": "the launcher is undeclared", "fix": "declare it"}
        if mode == "repair"
        else {"bottleneck": "strided loads", "plan": "walk rows contiguously"}
    )
    return {"role": "judge", "text": json.dumps(body)}


def fake_evaluate(problem_path, candidate_path, options, device_lock=None) -> EvaluationResult:
    source = Path(candidate_path).read_text()
    result = source.rsplit("# RESULT: ", 1)[1].split()
    common = dict(
        target=options.target,
        problem=str(problem_path),
        problem_hash="x",
        candidate=str(candidate_path),
        trials=options.trials,
    )
    if result[0] == "correct":
        speedup = float(result[1])
        return EvaluationResult(
            status=Status.CORRECT,
            reason="all cases match",
            speedup=speedup,
            candidate_ms=1.0 / speedup,
            reference_ms=1.0,
            **common,
        )
    if result[0] == "crash":
        raise RuntimeError("a fault in the harness")
    status = Status(result[0])
    return EvaluationResult(
        status=status, reason=f"{status.value} here", log="error: x\n", **common
    )


# A pure-Python ModelNew for tests/fixtures/problems/scale_add.py (no build), as a template:
# `{extra}` is added to its output (a probe's verdict: 0 unless it reached what it must not).
SCALE_ADD_MODEL_NEW = """
import torch
import torch.nn as nn

class ModelNew(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.w = nn.Parameter(torch.randn(dim))
        self.b = nn.Parameter(torch.randn(dim))

    def forward(self, x):
        return x * self.w + self.b{extra}
"""
