"""Out of the candidate's reach, end to end on the `cpu` target: pure-Python attacks (no build),
each run straight through the workers with the static checks out of the way, so that what is
shown is what the run-time design does. Each got through before the reference was timed in a
worker of its own and outputs were read from outside (see the closing notes of issue 20)."""

from __future__ import annotations

import json

import pytest
from fakes import SCALE_ADD_MODEL_NEW
from kernelwright.records import Status
from kernelwright.verifier import session
from kernelwright.verifier.tolerances import Tolerance
from typer.testing import CliRunner

PROBLEM_NAME = "scale_add.py"


@pytest.fixture(autouse=True)
def _pytorch_stand_ins(monkeypatch):
    """Candidates here compute with PyTorch as stand-ins for a kernel, to show another wall:
    the op record's verdict on that (tests/test_op_record.py) is out of the way."""
    monkeypatch.setattr("kernelwright.verifier.op_record.judge", lambda ops, work: None)


def _run(fixtures_dir, tmp_path, candidate):
    problem = fixtures_dir / "problems" / PROBLEM_NAME
    scratch = tmp_path / "scratch"
    reference = session.run_reference(problem, "cpu", 1, 42, scratch, 120)
    return session.run_candidate(problem, candidate, "cpu", reference, Tolerance(), scratch, 120)


def test_the_reference_is_timed_where_no_candidate_code_ran(fixtures_dir, tmp_path):
    # The candidate registers a sleeping CPU kernel for aten::add at import; the reference calls
    # add on every forward. Timed in the candidate's process it took 20 ms a call (68x).
    verdict = _run(fixtures_dir, tmp_path, fixtures_dir / "trust" / "aten_override.py")
    assert verdict.status is Status.CORRECT, verdict.reason
    assert verdict.timing is not None
    assert verdict.timing.reference.median_ms < 10.0, verdict.timing.reference
    assert verdict.timing.method == "bounded_by_outside_clock_cold_cache"


def test_a_clock_patched_beneath_python_does_not_decide_the_time(fixtures_dir, tmp_path):
    # libpython's GOT slot for clock_gettime points at the candidate's function, which takes 80 %
    # of each forward's 20 ms off the monotonic clock: time.perf_counter is the same object.
    verdict = _run(fixtures_dir, tmp_path, fixtures_dir / "trust" / "clock_got.py")
    if verdict.status is Status.REJECTED:
        assert verdict.reason.startswith("rejected by clock_mismatch:"), verdict.reason
        return
    assert verdict.status is Status.CORRECT and verdict.timing is not None, verdict.reason
    observed = verdict.timing.observed
    assert observed["candidate_inner_ms"] < 10.0, observed  # what its own clock said
    assert verdict.timing.candidate.median_ms > 15.0, verdict.timing.candidate  # the truth


def test_outputs_computed_when_first_read_are_rejected(fixtures_dir, tmp_path):
    # Output pages protected, a SIGSEGV handler does the work when this process touches them:
    # every in-process read (saving a checked output, an in-process spot check) sees it done.
    verdict = _run(fixtures_dir, tmp_path, fixtures_dir / "trust" / "lazy_pages.py")
    assert verdict.status is Status.REJECTED, verdict.reason
    assert verdict.reason.startswith("rejected by spot_check:"), verdict.reason
    assert "could not be read" in verdict.reason and verdict.timing is None


FORGER = """
import sys

# the result pipe's descriptor is the worker's first argument; {where!r}: which worker
if {where!r} in sys.modules["__main__"].__spec__.name:
    with open(int(sys.argv[1]), "wb", buffering=0, closefd=False) as pipe:
        pipe.write({line!r} + b"\\n")
""" + SCALE_ADD_MODEL_NEW.format(extra="").replace("{", "{{").replace("}", "}}")


def test_hostile_lines_on_the_result_pipe_are_a_verdict_not_a_crash(
    fixtures_dir, tmp_path, monkeypatch
):
    # Each of these ended `evaluate` (and a whole optimize run) with a traceback before.
    from kernelwright.cli import app

    monkeypatch.setattr("kernelwright.evaluate.check_candidate", lambda *args, **kw: [])
    problem = fixtures_dir / "problems" / PROBLEM_NAME
    nesting = b"[" * 50_000 + b"]" * 50_000
    lines = {
        "overflow": ("verifier", b'{"kind": "done", "ms": 1e999}', "result_channel"),
        "nesting": ("verifier", nesting, "result_channel"),
        "forged_end": ("verifier", b'{"kind": "timing_end", "environment": {}}', "result_channel"),
        "build_nesting": ("compiler", nesting, None),  # the build worker's pipe
    }
    for name, (where, line, check) in lines.items():
        candidate = tmp_path / f"forger_{name}.py"
        candidate.write_text(FORGER.format(line=line, where=where))
        result = CliRunner().invoke(
            app, ["evaluate", str(problem), str(candidate), "--target", "cpu", "--json"]
        )
        assert result.exit_code == 0, (name, result.output[-2000:])
        verdict = json.loads(result.stdout)
        if check is None:  # a build whose answer is not the build worker's is a failed build
            assert verdict["status"] == "compile_error", (name, verdict["reason"])
            continue
        assert verdict["status"] == "rejected", (name, verdict["reason"])
        assert verdict["reason"].startswith(f"rejected by {check}:"), verdict["reason"]
