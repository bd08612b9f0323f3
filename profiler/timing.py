"""Time the reference and the candidate, interleaved, following the protocol in the README.

Per sample on CUDA: device sync; flush L2 by zeroing a buffer of at least twice its size (outside
the timed window; it also keeps the GPU busy while the call is enqueued, so launch latency stays
out); start event; the call; end event; device-wide sync; read the events. On the CPU the same
with `perf_counter` and a buffer twice the last-level cache.

Warm-up comes first (at least 3 calls and 25 ms per side). Then `rounds` rounds; each round times
one block of the reference and one of the candidate, alternating which goes first. A block takes
samples until it has `min_samples` and `min_block_s`, or hits `max_samples` or `max_block_s`
(but never fewer than 3), so the sample count adapts to the kernel's length. Statistics are the
median with p20/p80 over all samples of a side; the speedup is the median over rounds of the
per-round ratio of medians, which cancels slow clock and temperature drift.

Each side may have a `prepare` callable, run before each of its samples and host calls (outside
the timed window, before the flush): the worker gives it new input values every time, so a
result cache keyed on the inputs never hits (verifier/fresh_inputs.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from kernelwright.profiler.stats import median, summarize
from kernelwright.records import TimingReport


@dataclass(frozen=True)
class TimingSettings:
    rounds: int = 5
    warmup_calls: int = 3
    warmup_s: float = 0.025
    min_samples: int = 10
    max_samples: int = 200
    min_block_s: float = 0.02
    max_block_s: float = 1.0
    host_calls: int = 5
    # per side: time spent making new inputs after which no more rounds start (past the first 2)
    refresh_budget_s: float = 20.0


class Clock(Protocol):
    method: str
    flush_bytes: int

    def sample(self, fn: Callable[[], Any]) -> float: ...

    def prepare(self) -> None: ...

    def run(self, fn: Callable[[], Any]) -> tuple[float, Any]: ...

    def sync(self) -> None: ...


class CudaClock:
    method = "cuda_events_cold_l2"

    def __init__(self, device: torch.device) -> None:
        self.device = device
        l2 = int(getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 0)
        self.flush_bytes = max(2 * l2, 64 << 20)
        self._flush = torch.empty(self.flush_bytes // 4, dtype=torch.int32, device=device)
        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)

    def sync(self) -> None:
        torch.cuda.synchronize(self.device)

    def prepare(self) -> None:
        """Before a sample timed from outside: the device idle (the flush is in `run`, so that
        it keeps the GPU busy while the call is enqueued)."""
        torch.cuda.synchronize(self.device)

    def run(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        """One sample: (event milliseconds, the call's output)."""
        self._flush.zero_()
        self._start.record()
        output = fn()
        self._end.record()
        torch.cuda.synchronize(self.device)  # device-wide: waits for every stream
        return float(self._start.elapsed_time(self._end)), output

    def sample(self, fn: Callable[[], Any]) -> float:
        torch.cuda.synchronize(self.device)
        self._flush.zero_()
        self._start.record()
        fn()
        self._end.record()
        torch.cuda.synchronize(self.device)  # device-wide: waits for every stream
        return float(self._start.elapsed_time(self._end))


class CpuClock:
    method = "perf_counter_cold_cache"

    def __init__(self) -> None:
        self.flush_bytes = max(2 * _last_level_cache_bytes(), 16 << 20)
        self._flush = torch.empty(self.flush_bytes // 4, dtype=torch.int32)

    def sync(self) -> None:
        pass

    def prepare(self) -> None:
        """Before a sample timed from outside: the caches flushed, outside the timed window."""
        self._flush.zero_()

    def run(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        """One sample: (this process's milliseconds, the call's output). Only a figure to check
        against the parent's own clock, which decides the time on the CPU."""
        start = time.perf_counter()
        output = fn()
        return (time.perf_counter() - start) * 1e3, output

    def sample(self, fn: Callable[[], Any]) -> float:
        self._flush.zero_()
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3


def _last_level_cache_bytes() -> int:
    best = 0
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip().upper()
        except OSError:
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            best = max(best, int(digits) * scale)
    return best or (32 << 20)


def make_clock(device: torch.device) -> Clock:
    return CudaClock(device) if device.type == "cuda" else CpuClock()


def _warmup(clock: Clock, fn: Callable[[], Any], settings: TimingSettings) -> None:
    start, calls = time.perf_counter(), 0
    while calls < settings.warmup_calls or time.perf_counter() - start < settings.warmup_s:
        fn()
        clock.sync()
        calls += 1


Prepare = Callable[[], None] | None


def block_full(count: int, elapsed_s: float, settings: TimingSettings) -> bool:
    """Whether a block of `count` samples taken in `elapsed_s` is done: `min_samples` and
    `min_block_s` reached, or `max_samples` or `max_block_s` (never fewer than 3 samples)."""
    if count >= settings.max_samples:
        return True
    enough = count >= settings.min_samples and elapsed_s >= settings.min_block_s
    return count >= 3 and (enough or elapsed_s >= settings.max_block_s)


def _block(
    clock: Clock, fn: Callable[[], Any], settings: TimingSettings, prepare: Prepare
) -> list[float]:
    samples: list[float] = []
    start = time.perf_counter()
    while not block_full(len(samples), time.perf_counter() - start, settings):
        if prepare is not None:
            prepare()
        samples.append(clock.sample(fn))
    return samples


def host_ms(clock: Clock, fn: Callable[[], Any], calls: int, prepare: Prepare = None) -> float:
    """Median host wall time of one synchronised call (launch overhead and all streams included)."""
    times = []
    for _ in range(calls):
        if prepare is not None:
            prepare()
        clock.sync()
        start = time.perf_counter()
        fn()
        clock.sync()
        times.append((time.perf_counter() - start) * 1e3)
    return median(times)


def measure(
    reference: Callable[[], Any],
    candidate: Callable[[], Any],
    clock: Clock,
    settings: TimingSettings | None = None,
    prepare_reference: Prepare = None,
    prepare_candidate: Prepare = None,
    another_round: Callable[[], bool] | None = None,
) -> TimingReport:
    """`another_round`: asked before each round past the first two (one in each order); False
    ends the timing there (a slow `prepare`)."""
    settings = settings or TimingSettings()
    _warmup(clock, reference, settings)
    _warmup(clock, candidate, settings)
    ref_all: list[float] = []
    cand_all: list[float] = []
    ratios: list[float] = []
    for round_index in range(settings.rounds):
        if round_index >= 2 and another_round is not None and not another_round():
            break
        if round_index % 2 == 0:
            ref_block = _block(clock, reference, settings, prepare_reference)
            cand_block = _block(clock, candidate, settings, prepare_candidate)
        else:
            cand_block = _block(clock, candidate, settings, prepare_candidate)
            ref_block = _block(clock, reference, settings, prepare_reference)
        ref_all += ref_block
        cand_all += cand_block
        ratios.append(median(ref_block) / max(median(cand_block), 1e-9))
    return TimingReport(
        method=clock.method,
        reference=summarize(ref_all),
        candidate=summarize(cand_all),
        speedup=median(ratios),
        round_ratios=ratios,
        host_reference_ms=host_ms(clock, reference, settings.host_calls, prepare_reference),
        host_candidate_ms=host_ms(clock, candidate, settings.host_calls, prepare_candidate),
        flush_bytes=clock.flush_bytes,
        settings=asdict(settings),
    )
