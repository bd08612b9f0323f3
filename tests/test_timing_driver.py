"""The parent's timing of two workers (verifier/timing_driver.py): the figure comes from its own
clock (cpu) or is checked against it (cuda), and what a worker says about itself is checked
against what the parent observes. Simulated workers: no process, no torch call timed."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from kernelwright.profiler.timing import TimingSettings
from kernelwright.verifier import protocol, timing_driver
from kernelwright.verifier.timing_driver import Refused, TimedSide, time_pair


@dataclass
class Behaviour:
    call_s: float  # how long a call really takes (the parent sees it)
    prep_s: float = 0.0005
    claims: float = 1.0  # what the worker says of its call, as a share of the truth
    extra_ms: float = 0.0  # added to its claim (events longer than the window: cuda)
    overhead_s: float = 0.0  # time in the window beyond the call (cuda: off the events)


class _Proc:
    pid = 2**22 + 4242


class FakeClock:
    """The parent's clock, advanced by the simulated workers: no sleeping, no load."""

    now = 100.0

    @classmethod
    def perf_counter(cls) -> float:
        return cls.now

    @classmethod
    def sleep(cls, seconds: float) -> None:
        cls.now += seconds + 0.0001  # each exchange: a pipe hop's worth of overhead


class SimWorker:
    """Answers the timing commands as a worker would, spending simulated time on the work."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.b = behaviour
        self.replies: list[bytes] = []
        self.proc = _Proc()

    def send_line(self, line: bytes) -> None:
        command = protocol.decode(line)
        if isinstance(command, protocol.Warmup):
            reply: protocol.Record = protocol.Warm()
        elif isinstance(command, protocol.Prepare):
            FakeClock.sleep(self.b.prep_s)
            reply = protocol.Ready()
        elif isinstance(command, protocol.Go):
            FakeClock.sleep(self.b.call_s + self.b.overhead_s)
            reply = protocol.Done(ms=self.b.call_s * 1e3 * self.b.claims + self.b.extra_ms)
        elif isinstance(command, protocol.Keep):
            reply = protocol.Kept()
        else:
            raise AssertionError(command)
        self.replies.append(protocol.dumps(reply))

    def recv_line(self) -> bytes | None:
        return self.replies.pop(0) if self.replies else None


SETTINGS = TimingSettings(
    rounds=3, warmup_calls=0, warmup_s=0.0, min_samples=4, max_samples=4, min_block_s=0.0
)


@pytest.fixture(autouse=True)
def _no_process(monkeypatch):
    monkeypatch.setattr(timing_driver.observe, "cpu_seconds", lambda pid: 0.0)
    monkeypatch.setattr(timing_driver, "time", FakeClock)


def _time(reference: Behaviour, candidate: Behaviour, target: str = "cpu", spots: int = 0):
    ref = TimedSide(SimWorker(reference), "reference", None)  # type: ignore[arg-type]
    cand = TimedSide(SimWorker(candidate), "candidate", None)  # type: ignore[arg-type]
    return time_pair(ref, cand, target, SETTINGS, spots)


def test_on_cpu_the_parents_clock_is_the_figure():
    outcome = _time(Behaviour(0.004), Behaviour(0.002))
    report = outcome.report
    assert report.method == "bounded_by_outside_clock_cold_cache"
    assert report.speedup == pytest.approx(2.0, rel=0.01)  # the harness's overhead taken out
    # the window less the harness's overhead measured on the reference's side
    assert report.candidate.median_ms == pytest.approx(2.0, rel=0.01)
    assert len(report.round_ratios) == 3
    assert report.observed["candidate_outside_ms"] >= report.observed["candidate_inner_ms"]


def test_a_clock_that_says_a_little_less_gets_the_parents_figure():
    # below the clock_mismatch threshold: no rejection, but no gain either
    report = _time(Behaviour(0.004), Behaviour(0.004, claims=0.7)).report
    assert report.speedup == pytest.approx(1.0, rel=0.05)
    assert report.observed["candidate_lift_ms"] == pytest.approx(1.2, rel=0.1)


def test_a_worker_whose_clock_reports_less_is_rejected_on_cpu():
    with pytest.raises(Refused) as caught:
        _time(Behaviour(0.004), Behaviour(0.004, claims=0.2))  # the clock patched beneath
    assert caught.value.check == "clock_mismatch"


def test_the_inputs_arrive_with_go_inside_the_window():
    # Work on the next inputs cannot start before the clock does: their seed comes with `Go`.
    seen: list[protocol.Record] = []
    worker = SimWorker(Behaviour(0.001))
    original = worker.send_line

    def record(line: bytes) -> None:
        seen.append(protocol.decode(line))
        original(line)

    worker.send_line = record  # type: ignore[method-assign]
    ref = TimedSide(SimWorker(Behaviour(0.001)), "reference", None)  # type: ignore[arg-type]
    time_pair(ref, TimedSide(worker, "candidate", None), "cpu", SETTINGS, 0)  # type: ignore[arg-type]
    goes = [r for r in seen if isinstance(r, protocol.Go)]
    assert len(goes) == 12 and len({g.seed for g in goes}) == 12
    assert all(not hasattr(r, "seed") for r in seen if isinstance(r, protocol.Prepare))


def test_on_cuda_events_are_the_figure_and_are_checked_against_the_window():
    report = _time(Behaviour(0.003), Behaviour(0.001), target="cuda").report
    assert report.method == "cuda_events_cold_l2"
    assert report.speedup == pytest.approx(3.0)  # the events' own ratio
    with pytest.raises(Refused) as caught:  # events longer than the window around them
        _time(Behaviour(0.002), Behaviour(0.001, extra_ms=5.0), target="cuda")
    assert caught.value.check == "clock_mismatch"
    with pytest.raises(Refused) as caught:  # a window far longer than its events
        _time(Behaviour(0.002), Behaviour(0.001, overhead_s=0.01), target="cuda")
    assert caught.value.check == "hidden_work"


def test_cpu_used_beside_the_calls_is_hidden_work(monkeypatch):
    readings = iter([10.0, 15.0])  # 5 s of CPU during a timing of a few milliseconds
    monkeypatch.setattr(timing_driver.observe, "cpu_seconds", lambda pid: next(readings))
    with pytest.raises(Refused) as caught:
        _time(Behaviour(0.002), Behaviour(0.001))
    assert caught.value.check == "hidden_work" and "of CPU" in caught.value.message


def test_a_worker_that_answers_out_of_turn_is_a_channel_fault():
    ref = TimedSide(SimWorker(Behaviour(0.001)), "reference", None)  # type: ignore[arg-type]
    worker = SimWorker(Behaviour(0.001))
    worker.replies.append(protocol.dumps(protocol.Done(ms=0.0)))  # a forged line, early
    cand = TimedSide(worker, "candidate", None)  # type: ignore[arg-type]
    with pytest.raises(timing_driver.ChannelFault) as caught:
        time_pair(ref, cand, "cpu", SETTINGS, 0)
    assert caught.value.side == "candidate" and "`done` where `warm`" in str(caught.value)


def test_which_timed_calls_are_read_is_spread_over_all_of_them(monkeypatch):
    counts = [0] * 40
    for _ in range(300):
        picker = timing_driver._SpotPicker(2, "cpu")
        for call in range(40):
            if picker.wants():
                counts[call] += 1
    assert counts[0] == counts[1] == 300  # the first ones always
    later = counts[2:]
    # every later call is read now and then (about 2/n of the time), none never
    assert min(later) > 0 and sum(later) > 300


def test_a_cpu_output_is_read_from_memory_as_it_is(monkeypatch):
    import ctypes
    import os

    import torch

    monkeypatch.setattr(timing_driver.observe, "held_still", _no_stop)
    values = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    span = protocol.TensorSpan(
        address=values.data_ptr(), dtype="float32", shape=(4, 3), stride=(1, 4)
    )
    done = protocol.Done(ms=1.0, outputs=(span,))
    read = timing_driver.read_output(os.getpid(), 7, done)
    assert read.problem == "" and torch.equal(read.output, values.t())
    # a page the process protected comes back as a problem, not as bytes and not as a crash
    libc = ctypes.CDLL(None)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int]
    libc.mmap.argtypes += [ctypes.c_int, ctypes.c_long]
    page = libc.mmap(None, 4096, 0, 0x22, -1, 0)  # PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS
    hidden = protocol.TensorSpan(address=page, dtype="float32", shape=(4,), stride=(1,))
    read = timing_driver.read_output(os.getpid(), 7, protocol.Done(ms=1.0, outputs=(hidden,)))
    assert read.output is None and "could not be read" in read.problem
    odd = protocol.TensorSpan(address=page, dtype="float32", shape=(4,), stride=(-1,))
    bad = timing_driver.read_output(os.getpid(), 7, protocol.Done(ms=1.0, outputs=(odd,)))
    assert "negative" in bad.problem


class _no_stop:
    def __init__(self, pid: int) -> None:
        pass

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
