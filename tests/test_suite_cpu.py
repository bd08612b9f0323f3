"""The shipped C++ CPU candidates evaluate correct end to end (built, verified, timed)."""

from __future__ import annotations

import json

import pytest
from kernelwright.problem import load_problem_dir
from kernelwright.suite import builtin_dir, candidates_for

pytestmark = pytest.mark.slow

WITH_CPU = [
    pytest.param(p.path, candidates_for(p.path)["cpu"], id=p.name)
    for p in load_problem_dir(builtin_dir())
    if "cpu" in candidates_for(p.path)
]


def test_at_least_three_cpu_candidates_ship():
    assert len(WITH_CPU) >= 3


@pytest.mark.parametrize(("problem", "candidate"), WITH_CPU)
def test_shipped_cpu_candidate_is_correct(cli, problem, candidate):
    args = ("--target", "cpu", "--json", "--trials", "2")
    proc = cli("evaluate", str(problem), str(candidate), *args)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "correct", result["reason"] + result["log"][-2000:]
    assert all(case["ok"] for case in result["cases"]) and len(result["cases"]) >= 3
    assert result["candidate_ms"] > 0 and result["reference_ms"] > 0
