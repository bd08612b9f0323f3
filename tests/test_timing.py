"""The timing protocol's bookkeeping, with a scripted clock (no real time involved)."""

from __future__ import annotations

import pytest
from kernelwright.profiler import timing
from kernelwright.profiler.environment import is_throttled
from kernelwright.profiler.stats import median, quantile, summarize


def test_quantiles():
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert median(values) == 3.0
    assert quantile(values, 0.2) == pytest.approx(1.8)
    assert quantile(values, 0.8) == pytest.approx(4.2)
    stats = summarize(values)
    assert (stats.min_ms, stats.max_ms, stats.samples, stats.mean_ms) == (1.0, 5.0, 5, 3.0)


class ScriptedClock:
    """Returns the duration each function declares, and records the order of calls."""

    method = "scripted"
    flush_bytes = 0

    def __init__(self) -> None:
        self.calls: list[str] = []

    def sync(self) -> None:
        pass

    def sample(self, fn):
        name, ms = fn()
        self.calls.append(name)
        return ms


def test_speedup_is_the_median_of_per_round_ratios():
    clock = ScriptedClock()
    per_round = [1.0, 2.0, 4.0, 0.5, 1.0]  # candidate ms in each round; reference is always 4 ms
    calls = {"cand": 0}

    def candidate():
        ms = per_round[min(calls["cand"] // 4, 4)]  # the host-time calls at the end reuse round 5
        calls["cand"] += 1
        return ("cand", ms)

    settings = timing.TimingSettings(
        rounds=5, warmup_calls=0, warmup_s=0.0, min_samples=4, max_samples=4, min_block_s=0.0
    )
    report = timing.measure(lambda: ("ref", 4.0), candidate, clock, settings)
    assert report.round_ratios == pytest.approx([4.0, 2.0, 1.0, 8.0, 4.0])
    assert report.speedup == pytest.approx(4.0)  # the median ratio, not the mean (3.8)
    assert report.reference.samples == 20 and report.candidate.samples == 20


def test_rounds_alternate_which_side_goes_first():
    clock = ScriptedClock()
    settings = timing.TimingSettings(rounds=4, min_samples=3, max_samples=3, min_block_s=0.0)
    timing.measure(lambda: ("ref", 1.0), lambda: ("cand", 1.0), clock, settings)
    firsts = [clock.calls[i * 6] for i in range(4)]
    assert firsts == ["ref", "cand", "ref", "cand"]


def test_drift_cancels_through_interleaving():
    clock = ScriptedClock()
    counter = {"n": 0}

    def drifting(name, base):
        def call():
            counter["n"] += 1
            return (name, base * (1 + counter["n"] / 10))  # the machine slows down steadily

        return call

    settings = timing.TimingSettings(rounds=5, min_samples=3, max_samples=3, min_block_s=0.0)
    report = timing.measure(drifting("ref", 2.0), drifting("cand", 1.0), clock, settings)
    assert report.speedup == pytest.approx(2.0, rel=0.1)


def test_blocks_are_bounded_by_time_and_count():
    clock = ScriptedClock()
    settings = timing.TimingSettings(
        min_samples=10, max_samples=50, min_block_s=0.0, max_block_s=0.0
    )
    samples = timing._block(clock, lambda: ("x", 1.0), settings, None)
    assert len(samples) == 3  # the time budget is spent at once: the floor of 3 samples holds
    settings = timing.TimingSettings(
        min_samples=10, max_samples=50, min_block_s=0.0, max_block_s=60.0
    )
    assert len(timing._block(clock, lambda: ("x", 1.0), settings, None)) == 10


def test_each_side_is_prepared_before_every_sample_and_host_call():
    clock = ScriptedClock()
    log: list[str] = []
    settings = timing.TimingSettings(
        rounds=2, warmup_calls=1, warmup_s=0.0, min_samples=3, max_samples=3, min_block_s=0.0
    )

    def side(name):
        def call():
            log.append(name)
            return (name, 1.0)

        return call

    timing.measure(
        side("ref"),
        side("cand"),
        clock,
        settings,
        prepare_reference=lambda: log.append("new ref inputs"),
        prepare_candidate=lambda: log.append("new cand inputs"),
    )
    timed = log[2:]  # after one warm-up call per side
    pairs = list(zip(timed[::2], timed[1::2], strict=True))
    assert pairs and all(prep == f"new {call} inputs" for prep, call in pairs)
    assert len(pairs) == 2 * 2 * 3 + 2 * settings.host_calls


def test_cpu_clock_measures_real_work():
    clock = timing.CpuClock()
    assert clock.flush_bytes >= 16 << 20
    assert clock.sample(lambda: sum(range(20000))) > 0


def test_throttle_rule():
    assert is_throttled(0x8, 1980, 1980)  # hardware slowdown bit
    assert is_throttled(0x0, 1000, 1980)  # busy but under 75 % of max clock
    assert not is_throttled(0x4, 1560, 1980)  # software power cap under load: normal
    assert not is_throttled(0x1, 345, 1980)  # idle GPU parks its clock
