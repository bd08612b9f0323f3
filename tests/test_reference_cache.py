"""The reference's outputs are computed once per problem and settings (core/reference_cache.py)."""

from __future__ import annotations

import threading
import time
from contextlib import nullcontext
from pathlib import Path

import pytest
from kernelwright import reference_cache
from kernelwright.evaluate import EvaluateOptions, evaluate
from kernelwright.verifier import session

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def calls(monkeypatch):
    """Stand in for the reference worker: writes one output file, counts the runs."""
    made: list[tuple[str, int]] = []

    def fake(problem, target, trials, seed, scratch, timeout_s, env_extra=None):
        time.sleep(0.05)  # long enough for concurrent callers to meet
        made.append((str(problem), seed))
        if "broken" in str(problem):
            raise RuntimeError("the problem failed")
        out = scratch / "reference"
        out.mkdir(parents=True)
        (out / "case0.pt").write_bytes(b"x")
        size = 10 << 30 if "huge" in str(problem) else 1
        return session.ReferenceOutputs([], {0: (out / "case0.pt", "sha")}, {0: [size]}, [])

    monkeypatch.setattr(session, "run_reference", fake)
    return made


def _options(seed: int = 42) -> EvaluateOptions:
    return EvaluateOptions(target="cpu", trials=2, seed=seed)


def _use(cache, name: str, seed: int = 42):
    outputs = cache.acquire(Path(name), f"hash-{name}", _options(seed), nullcontext(), None)
    cache.release(f"hash-{name}", _options(seed))
    return outputs


def test_one_computation_per_problem_and_settings(calls):
    cache = reference_cache.ReferenceCache()
    first = _use(cache, "a.py")
    assert _use(cache, "a.py") is first and len(calls) == 1
    assert first.files[0][0].exists()
    _use(cache, "a.py", seed=7)  # other inputs: computed again
    _use(cache, "b.py")
    assert calls == [("a.py", 42), ("a.py", 7), ("b.py", 42)]
    cache.clear()
    assert len(cache) == 0 and not first.files[0][0].exists()


def test_concurrent_evaluations_of_one_problem_wait_for_one_computation(calls):
    cache = reference_cache.ReferenceCache()
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(_use(cache, "a.py"))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and all(r is results[0] for r in results)


def test_a_failure_is_not_kept_and_the_next_evaluation_tries_again(calls):
    cache = reference_cache.ReferenceCache()
    for _ in range(2):
        with pytest.raises(RuntimeError):
            _use(cache, "broken.py")
    assert len(calls) == 2 and len(cache) == 0


def test_too_big_is_not_kept(calls):
    cache = reference_cache.ReferenceCache()
    outputs = _use(cache, "huge.py")
    assert len(cache) == 0 and not outputs.files[0][0].exists()


def test_beyond_keep_the_oldest_idle_entry_goes_never_one_in_use(calls):
    cache = reference_cache.ReferenceCache()
    held = cache.acquire(Path("held.py"), "hash-held.py", _options(), nullcontext(), None)
    for i in range(reference_cache.KEEP + 1):
        _use(cache, f"p{i}.py")
    assert len(cache) == reference_cache.KEEP
    assert held.files[0][0].exists()  # in use: kept although it is the oldest
    assert not any("p0.py" in k for k in cache._entries)
    cache.release("hash-held.py", _options())


@pytest.mark.slow
def test_a_second_evaluation_of_the_problem_skips_the_reference_worker():
    problem = FIXTURES / "problems" / "scale_add.py"
    candidate = FIXTURES / "candidates" / "scale_add_ok.py"
    first = evaluate(problem, candidate, EvaluateOptions(target="cpu", trials=2, seed=5))
    second = evaluate(problem, candidate, EvaluateOptions(target="cpu", trials=2, seed=5))
    assert first.status.value == second.status.value == "correct", second.reason
    assert first.phases_s["reference_s"] > 0.5  # a worker started and imported torch
    assert second.phases_s["reference_s"] < 0.1
    assert [c.label for c in first.cases] == [c.label for c in second.cases]
