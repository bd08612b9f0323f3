"""The candidate's worker is started ahead of its job (verifier/session.prestart_candidate)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kernelwright.compiler.build import start_build
from kernelwright.evaluate import EvaluateOptions, evaluate
from kernelwright.records import Status
from kernelwright.runner import isolation
from kernelwright.verifier import session
from kernelwright.verifier.tolerances import Tolerance

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PROBLEM = FIXTURES / "problems" / "scale_add.py"


def _live() -> int:
    with isolation._LIVE_LOCK:
        return len(isolation._LIVE)


@pytest.mark.slow
def test_a_prestarted_worker_that_died_is_replaced_not_blamed_on_the_candidate(tmp_path):
    candidate = FIXTURES / "candidates" / "scale_add_ok.py"
    assert start_build(candidate, "cpu").result().ok
    reference = session.run_reference(PROBLEM, "cpu", 1, 42, tmp_path, 120)
    ahead = session.prestart_candidate(tmp_path, candidate)
    ahead.kill()
    ahead.proc.wait()
    verdict = session.run_candidate(
        PROBLEM, candidate, "cpu", reference, Tolerance(None, None), tmp_path, 120, worker=ahead
    )
    assert verdict.status is Status.CORRECT, verdict.reason + verdict.log[-2000:]


def test_the_deadline_counts_from_the_job_not_from_the_start(tmp_path):
    ahead = session.prestart_candidate(tmp_path, FIXTURES / "candidates" / "scale_add_ok.py")
    with ahead:
        time.sleep(1.5)  # idle longer than the limit below
        ahead.restart_clock(1.0)
        started = time.monotonic()
        with pytest.raises(isolation.WorkerTimeout):  # it waits for a job that never comes
            ahead.recv()
        assert time.monotonic() - started >= 0.9  # a full second, not expired on arrival
    assert not ahead.alive()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["scale_add_ok.py", "scale_add_broken.py"])
def test_no_worker_is_left_behind_whether_or_not_the_candidate_ran(name):
    from kernelwright.evaluate import _timers

    _timers.clear()
    before = _live()
    result = evaluate(PROBLEM, FIXTURES / "candidates" / name, EvaluateOptions("cpu", trials=1))
    assert result.status is (Status.CORRECT if name.endswith("ok.py") else Status.COMPILE_ERROR)
    # but the reference's timer, idle for the problem's next candidate (verifier/timer_pool),
    # also where the build failed and it was never given a job
    from kernelwright.runner.isolation import sandbox
    from kernelwright.verifier.timer_pool import PID_PRIVATE

    assert _timers.idle() == (1 if sandbox().level in PID_PRIVATE else 0)
    assert _live() == before + _timers.idle()
    _timers.clear()
    assert _live() == before
