"""Problems and candidates that are legitimate but unusual evaluate `correct` on the CPU target
(found by a false-positive hunt: each of these used to fail because of kernelwright itself)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kernelwright.evaluate import EvaluateOptions, evaluate
from kernelwright.records import Status

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OK = FIXTURES / "candidates" / "scale_add_ok.py"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("problem", "candidate"),
    [
        ("scale_add_requires_grad.py", OK),  # the timed inputs are leaves that require grad
        ("scale_add_expanded.py", OK),  # a stride-0 input cannot be written in place
        ("scale_add_forward_global.py", OK),  # forward reads a global EXTRA_SHAPES overrides
        ("scale_add.py", FIXTURES / "candidates" / "scale_add_custom_op.py"),  # imports dynamo
        ("scale_add_cached_bias.py", OK),  # the reference rebinds a global cache of its own
        ("sibling/scale_add_sibling.py", OK),  # imports a module beside it
        ("scale_add_compiled.py", OK),  # torch.compile's pool, started by the timed reference
        # rounds once where eager bfloat16 rounds twice: right by the float64 run (verifier/wide)
        ("bf16_exp_shift.py", FIXTURES / "candidates" / "bf16_exp_shift_fused.py"),
    ],
    ids=[
        "requires_grad",
        "expanded",
        "forward_global",
        "custom_op",
        "own_cache",
        "sibling",
        "compiled_reference",
        "bf16_rounds_once",
    ],
)
def test_unusual_but_legitimate_evaluates_correct(problem, candidate):
    result = evaluate(
        FIXTURES / "problems" / problem, candidate, EvaluateOptions(target="cpu", trials=1)
    )
    assert result.status is Status.CORRECT, result.reason + result.log[-2000:]
    assert result.timing.input_refresh["refreshed"] > 0
