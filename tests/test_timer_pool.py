"""The reference's timing worker serves the same problem's next candidate (verifier/timer_pool).

Unit tests drive the pool's policy with stand-in workers; the slow ones evaluate real candidates
and check what the pool kept, and that a kept timer times the next candidate correctly."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from kernelwright import evaluate as evaluate_module
from kernelwright.evaluate import EvaluateOptions, evaluate
from kernelwright.problem import load_problem
from kernelwright.records import Status
from kernelwright.runner.isolation import sandbox
from kernelwright.verifier import timer_pool

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PROBLEM = FIXTURES / "problems" / "scale_add.py"
_ids = itertools.count()


class StandIn:
    """What the pool uses of a `Worker`: alive, restart_clock, __exit__, scratch."""

    def __init__(self, tmp: Path, alive: bool = True) -> None:
        self.scratch = tmp / f"timer-{next(_ids)}"
        self.scratch.mkdir()
        self.up = alive
        self.deadline_s = 0.0

    def alive(self) -> bool:
        return self.up

    def restart_clock(self, deadline_s: float) -> None:
        self.deadline_s = deadline_s

    def __exit__(self, *exc: object) -> None:
        self.up = False


@pytest.fixture
def pool(monkeypatch):
    monkeypatch.setattr(timer_pool, "_pid_private", lambda: True)
    monkeypatch.setattr(timer_pool, "REUSE", True)
    made = timer_pool.TimerPool()
    yield made
    made.clear()


def _lease(pool, key, worker, clean=True):
    return timer_pool.Lease(key, worker, clean=clean)


def test_a_clean_timer_is_kept_idle_and_lent_again_for_its_own_key_only(pool, tmp_path):
    timer = StandIn(tmp_path)
    pool.give_back(_lease(pool, "a", timer))
    assert pool.idle() == 1 and timer.alive()
    assert timer.deadline_s == timer_pool.IDLE_S  # no deadline while it waits
    lent = pool.take("a", None)
    assert lent.worker is timer and not lent.clean and pool.reused == 1 and pool.idle() == 0


@pytest.mark.parametrize(
    "why", ["not clean", "reuse off", "weak isolation", "dead"], ids=lambda w: w.replace(" ", "_")
)
def test_a_timer_is_ended_not_kept(pool, tmp_path, monkeypatch, why):
    timer = StandIn(tmp_path)
    if why == "reuse off":
        monkeypatch.setattr(timer_pool, "REUSE", False)
    if why == "weak isolation":  # a candidate could see and write into a process it outlives
        monkeypatch.setattr(timer_pool, "_pid_private", lambda: False)
    if why == "dead":
        timer.up = False
    pool.give_back(_lease(pool, "a", timer, clean=why != "not clean"))
    assert pool.idle() == 0 and not timer.alive()
    assert not timer.scratch.exists()  # its folder goes with it


def test_an_idle_timer_that_died_is_not_lent(pool, tmp_path, monkeypatch):
    dead = StandIn(tmp_path)
    pool.give_back(_lease(pool, "a", dead))
    dead.up = False
    fresh = StandIn(tmp_path)
    monkeypatch.setattr(timer_pool, "prestart", lambda folder, env: fresh)
    lent = pool.take("a", None)
    assert lent.worker is fresh and pool.reused == 0 and pool.started == 1


def test_the_pool_keeps_a_few_per_problem_and_a_few_in_all_oldest_out(pool, tmp_path):
    same = [StandIn(tmp_path) for _ in range(timer_pool.PER_KEY + 1)]
    for timer in same:
        pool.give_back(_lease(pool, "a", timer))
    assert pool.idle() == timer_pool.PER_KEY
    assert not same[0].alive() and all(t.alive() for t in same[1:])
    others = [StandIn(tmp_path) for _ in range(timer_pool.TOTAL)]
    for number, timer in enumerate(others):
        pool.give_back(_lease(pool, f"k{number}", timer))
    assert pool.idle() == timer_pool.TOTAL
    assert not any(t.alive() for t in same)  # the oldest went first
    assert all(t.alive() for t in others)
    pool.clear()
    assert pool.idle() == 0 and not any(t.alive() for t in others)


@pytest.mark.slow
def test_the_next_candidate_of_a_problem_is_timed_by_the_timer_the_last_one_left():
    pool = evaluate_module._timers
    pool.clear()
    key = timer_pool.key(load_problem(PROBLEM).content_hash, "cpu", None)
    options = EvaluateOptions("cpu", trials=1)
    reused = pool.reused
    first = evaluate(PROBLEM, FIXTURES / "candidates" / "scale_add_ok.py", options)
    assert first.status is Status.CORRECT and first.timing is not None, first.reason
    if sandbox().level not in timer_pool.PID_PRIVATE:
        assert pool.idle() == 0  # every timer serves one candidate where others could reach it
        return
    assert pool.idle() == 1
    (kept,) = [w for k, w in pool._idle.values() if k == key]
    second = evaluate(PROBLEM, FIXTURES / "candidates" / "scale_add_ok.py", options)
    assert second.status is Status.CORRECT and second.timing is not None, second.reason
    assert pool.reused == reused + 1
    assert [w for k, w in pool._idle.values() if k == key] == [kept]  # the same process
    assert kept.alive()
    # its reference times are the reference's, as from a fresh one: same order of magnitude
    ratio = second.timing.reference.median_ms / first.timing.reference.median_ms
    assert 0.2 < ratio < 5.0
    pool.clear()
    assert not kept.alive()


@pytest.mark.gpu
@pytest.mark.slow
def test_on_cuda_a_kept_timer_times_the_next_candidate_with_its_device_context():
    pool = evaluate_module._timers
    pool.clear()
    options = EvaluateOptions("cuda", trials=1)
    candidate = FIXTURES / "candidates" / "scale_add_cuda_ok.py"
    first = evaluate(PROBLEM, candidate, options)
    assert first.status is Status.CORRECT and first.timing is not None, first.reason
    reused = pool.reused
    second = evaluate(PROBLEM, candidate, options)
    assert second.status is Status.CORRECT and second.timing is not None, second.reason
    if sandbox().level in timer_pool.PID_PRIVATE:
        assert pool.reused == reused + 1 and pool.idle() == 1
    ratio = second.timing.reference.median_ms / first.timing.reference.median_ms
    assert 0.2 < ratio < 5.0
    pool.clear()
