"""Parent side of timing: two workers, one clock the candidate cannot reach, outputs read from
outside.

The reference is timed in its own worker, which never loads candidate code, and the candidate in
its own; this process interleaves their blocks (alternating which side goes first each round,
as `profiler.timing` describes) on the same device, and the speedup is the median of per-round
ratios of medians. For every sample this process sends `Prepare` (the cache flush) and waits for
`Ready`, then sends `Go` with an input seed it drew and waits for `Done`, reading its own clock
around each exchange. The worker draws the new input values only on `Go`, inside that window, so
no work on them can be done before the window opens.

- On `cpu` the reference's own times are its figure (no candidate code runs in its process).
  The candidate's own times count only as far as the parent's clock confirms them: per block,
  they are lifted until their median is no less than the median outside window less the
  harness's own overhead (drawing the inputs, two pipe hops), measured on the reference's worker
  as the median of its windows less its own times. So a candidate whose clock lies gets the
  parent's figure, and an honest one keeps its precise in-process figure (medians keep the
  pipe's noise out). A gross disagreement is `rejected` (`clock_mismatch`).
- On `cuda` the device events measured in the worker stay the figure (the GPU's own clock), and
  they are checked against the window: events longer than the window cannot be honest
  (`clock_mismatch`), and a window much longer than the reference's for the same events means
  work off the timed stream or on the host (`hidden_work`).

Two more things are observed, not asked: the CPU time of the candidate's whole process tree over
the timing, from /proc (on `cpu`: threads or processes working beside the timed calls,
`hidden_work`), and the outputs of a random sample of timed calls. Which calls are read is
decided after each call returned, with a probability that falls as calls go on (every call among
the first `spots`, then `spots / calls so far`), so no call can tell it will not be read. On
`cpu` the bytes are read straight from the worker's memory while it is stopped (`runner.observe`):
no code of the worker runs, so pages computed lazily on first touch, or outputs finished after
`Done`, come back unreadable or wrong (`spot_check`). On `cuda` the worker copies the chosen
outputs aside on the device (`Keep`) and writes them after timing. Each output read is compared
with the reference's output for the same seed.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from kernelwright.profiler.stats import median, quantile, summarize
from kernelwright.profiler.timing import TimingSettings, block_full
from kernelwright.records import TimingReport
from kernelwright.runner import observe
from kernelwright.runner.isolation import Worker
from kernelwright.verifier import protocol
from kernelwright.verifier.check_names import Check

MAX_SPOT_READS = 16


class ChannelFault(Exception):
    """A worker said something the protocol does not allow at this point."""

    def __init__(self, side: str, what: str) -> None:
        super().__init__(f"{what} (the {side}'s worker, while timing)")
        self.side = side


class SideReported(Exception):
    """The candidate's harness reported a check that fired or an exception, mid-timing."""

    def __init__(self, record: protocol.Rejected | protocol.RuntimeFailure) -> None:
        super().__init__(record.message)
        self.record = record


class SideEnded(Exception):
    """A worker closed its pipe (it exited, or crashed) in the middle of the timing."""


class Refused(Exception):
    """An outside observation disagrees with the candidate: `rejected` by `check`."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check
        self.message = message


@dataclass
class Sample:
    seed: int
    prep_ms: float  # Prepare sent -> Ready read (the flush), by this process's clock
    outside_ms: float  # Go sent -> Done read (new inputs, the call), by this process's clock
    inner_ms: float  # the worker's own figure
    done: protocol.Done


class TimedSide:
    """One worker in its timing loop, seen from the parent."""

    def __init__(self, worker: Worker, name: str, pid: int | None) -> None:
        self.worker = worker
        self.name = name
        self.pid = pid  # the worker's host pid, found before any candidate code ran
        self.samples: list[Sample] = []
        self.warmup_ms = 0.0
        self.flush_bytes = 0

    def ask(self, command: protocol.Record, expect: type[protocol.Record]) -> protocol.Record:
        self.worker.send_line(protocol.dumps(command))
        return self.expect(expect)

    def expect(self, expect: type[protocol.Record]) -> protocol.Record:
        line = self.worker.recv_line()
        if line is None:
            raise SideEnded(self.name)
        record = protocol.decode(line)
        if self.name == "candidate" and isinstance(
            record, protocol.Rejected | protocol.RuntimeFailure
        ):
            raise SideReported(record)
        if isinstance(record, protocol.Fault):
            raise ChannelFault(self.name, record.reason)
        if not isinstance(record, expect):
            raise ChannelFault(self.name, f"a `{record.kind}` where `{expect.kind}` was due")
        return record

    def warmup(self, settings: TimingSettings) -> None:
        start = time.perf_counter()
        command = protocol.Warmup(calls=settings.warmup_calls, seconds=settings.warmup_s)
        warm = self.ask(command, protocol.Warm)
        assert isinstance(warm, protocol.Warm)
        self.flush_bytes = warm.flush_bytes
        self.warmup_ms += (time.perf_counter() - start) * 1e3

    def sample(self, seed: int) -> Sample:
        t0 = time.perf_counter()
        self.ask(protocol.Prepare(), protocol.Ready)
        t1 = time.perf_counter()
        done = self.ask(protocol.Go(seed=seed), protocol.Done)
        t2 = time.perf_counter()
        assert isinstance(done, protocol.Done)
        sample = Sample(seed, (t1 - t0) * 1e3, (t2 - t1) * 1e3, done.ms, done)
        self.samples.append(sample)
        return sample


@dataclass
class SpotRead:
    """A timed call of the candidate's whose output was read: its seed, and the output (cpu:
    read from memory as tensors; cuda: the index of the worker's kept copy)."""

    seed: int
    output: Any = None
    kept_index: int | None = None
    problem: str = ""  # why it could not be read (then it counts as wrong)


@dataclass
class TimingOutcome:
    report: TimingReport
    spots: list[SpotRead] = field(default_factory=list)


def time_pair(
    reference: TimedSide,
    candidate: TimedSide,
    target: str,
    settings: TimingSettings,
    spots: int,
) -> TimingOutcome:
    """Warm both sides, then interleaved rounds of blocks; then the outside checks, which raise
    `Refused`. Protocol faults raise `ChannelFault`, a side that ends `SideEnded`."""
    cpu_before = observe.cpu_seconds(candidate.worker.proc.pid) if target == "cpu" else 0.0
    started = time.perf_counter()
    reference.warmup(settings)
    candidate.warmup(settings)
    picker = _SpotPicker(spots, target)
    rounds: list[tuple[list[Sample], list[Sample]]] = []
    refresh_s = 0.0
    for round_index in range(settings.rounds):
        if round_index >= 2 and refresh_s >= settings.refresh_budget_s:
            break
        order = (reference, candidate) if round_index % 2 == 0 else (candidate, reference)
        blocks: dict[str, list[Sample]] = {}
        for side in order:
            blocks[side.name] = _block(side, settings, picker if side is candidate else None)
        rounds.append((blocks["reference"], blocks["candidate"]))
        # the inputs are drawn inside the window: their cost, per side, as the budget counts it
        refresh_s = max(_draw_s(blocks["reference"]), _draw_s(blocks["candidate"]), refresh_s)
    wall_s = time.perf_counter() - started
    cpu_used = (
        observe.cpu_seconds(candidate.worker.proc.pid) - cpu_before if target == "cpu" else None
    )
    floor = max(0.0, median([s.outside_ms - s.inner_ms for s in reference.samples]))

    def figures(block: list[Sample], trusted: bool) -> list[float]:
        """cuda: the device events. cpu: the worker's own times, trusted as they are for the
        reference; the candidate's lifted, per block, until their median is no less than the
        block's median outside window less the harness's overhead (its clock may lie; the
        parent's does not, and medians keep the pipe's noise out of an honest figure)."""
        inner = [s.inner_ms for s in block]
        if target == "cuda" or trusted:
            return inner
        outside = median([s.outside_ms for s in block]) - floor
        lift = max(0.0, outside - median(inner))
        lifts.append(lift)
        return [value + lift for value in inner]

    lifts: list[float] = []
    ref_figures: list[float] = []
    cand_figures: list[float] = []
    ratios = []
    for ref_block, cand_block in rounds:
        ref_fig, cand_fig = figures(ref_block, True), figures(cand_block, False)
        ref_figures += ref_fig
        cand_figures += cand_fig
        ratios.append(median(ref_fig) / max(median(cand_fig), 1e-9))
    observed = _observations(reference, candidate, cpu_used, wall_s, picker, floor)
    observed["candidate_lift_ms"] = round(max(lifts, default=0.0), 4)
    _outside_checks(observed, target)
    refresh = {
        "refreshed": len(reference.samples) + len(candidate.samples),
        "seconds": round(refresh_s, 3),
        "note": "",
    }
    if len(rounds) < settings.rounds:
        from kernelwright.verifier.fresh_inputs import slow_inputs_note

        refresh["note"] = slow_inputs_note(refresh_s, len(rounds), settings.rounds)
    report = TimingReport(
        method="bounded_by_outside_clock_cold_cache" if target == "cpu" else "cuda_events_cold_l2",
        reference=summarize(ref_figures),
        candidate=summarize(cand_figures),
        speedup=median(ratios),
        round_ratios=ratios,
        host_reference_ms=median([s.outside_ms for s in reference.samples]),
        host_candidate_ms=median([s.outside_ms for s in candidate.samples]),
        flush_bytes=reference.flush_bytes,  # the trusted side's word for both (same code)
        settings=asdict(settings),
        input_refresh=refresh,
        observed=observed,
    )
    return TimingOutcome(report, picker.reads)


def _draw_s(samples: list[Sample]) -> float:
    """Seconds of a block's windows beyond its calls: mostly drawing the new inputs."""
    return sum(max(0.0, s.outside_ms - s.inner_ms) for s in samples) / 1e3


def _block(side: TimedSide, settings: TimingSettings, picker: _SpotPicker | None) -> list[Sample]:
    """Samples until `min_samples` and `min_block_s`, or `max_samples` or `max_block_s` (never
    fewer than 3), counted by this process's clock."""
    samples: list[Sample] = []
    start = time.perf_counter()
    while not block_full(len(samples), time.perf_counter() - start, settings):
        sample = side.sample(secrets.randbelow(1 << 62))
        samples.append(sample)
        if picker is not None and picker.wants():
            picker.read(side, sample)
    return samples


class _SpotPicker:
    """Decides after each timed call whether its output is read: always for the first `size`,
    then with probability size / calls so far, up to MAX_SPOT_READS reads."""

    def __init__(self, size: int, target: str) -> None:
        self.size = size
        self.target = target  # the parent's: never what a worker's record suggests
        self.calls = 0
        self.reads: list[SpotRead] = []

    def wants(self) -> bool:
        self.calls += 1
        if self.size <= 0 or len(self.reads) >= MAX_SPOT_READS:
            return False
        return self.calls <= self.size or secrets.randbelow(self.calls) < self.size

    def read(self, side: TimedSide, sample: Sample) -> None:
        if self.target == "cuda":
            side.ask(protocol.Keep(), protocol.Kept)
            kept = sum(1 for r in self.reads if r.kept_index is not None)
            self.reads.append(SpotRead(sample.seed, kept_index=kept))
            return
        spot = read_output(side.pid, sample.seed, sample.done)
        if spot.problem:  # at once: what the worker does next cannot make it readable after all
            raise Refused(Check.SPOT_CHECK, f"timed call {self.calls}: {spot.problem}")
        self.reads.append(spot)


def read_output(pid: int | None, seed: int, done: protocol.Done) -> SpotRead:
    """A CPU output read from the stopped worker's memory, as tensors; what went wrong if not."""
    import torch
    from kernelwright.verifier.sampler import READABLE_DTYPES

    if pid is None:
        return SpotRead(seed, problem="the worker's process could not be found to read from")
    if not done.outputs or done.structure not in ("tensor", "tuple", "list"):
        return SpotRead(seed, problem="its output is not a CPU tensor (or a tuple of them)")
    if done.structure == "tensor" and len(done.outputs) != 1:
        return SpotRead(seed, problem="a single tensor reported as several")
    tensors = []
    try:
        with observe.held_still(pid):
            for span in done.outputs:
                dtype = READABLE_DTYPES.get(span.dtype)
                if dtype is None or len(span.shape) != len(span.stride) or len(span.shape) > 16:
                    return SpotRead(seed, problem="an output described in a form no tensor has")
                if any(n < 0 for n in span.shape) or any(s < 0 for s in span.stride):
                    return SpotRead(seed, problem="an output with negative sizes or strides")
                numel = math.prod(span.shape)
                extent = (
                    0
                    if numel == 0
                    else 1 + sum((n - 1) * s for n, s in zip(span.shape, span.stride, strict=True))
                )
                size = extent * torch.empty((), dtype=dtype).element_size()
                raw = observe.read_memory(pid, span.address, size)
                flat = (
                    torch.frombuffer(bytearray(raw), dtype=dtype)
                    if size
                    else torch.empty(0, dtype=dtype)
                )
                tensors.append(flat.as_strided(span.shape, span.stride).clone())
    except observe.Unreadable as exc:
        return SpotRead(
            seed, problem=f"its output could not be read after the call returned: {exc}"
        )
    if done.structure == "tensor":
        return SpotRead(seed, output=tensors[0])
    return SpotRead(seed, output=tuple(tensors) if done.structure == "tuple" else tensors)


def _observations(
    reference: TimedSide,
    candidate: TimedSide,
    cpu_used: float | None,
    wall_s: float,
    picker: _SpotPicker,
    floor: float,
) -> dict[str, Any]:
    def med(side: TimedSide, attr: str) -> float:
        return round(median([getattr(s, attr) for s in side.samples]), 4)

    def gaps(side: TimedSide) -> list[float]:
        return [s.outside_ms - s.inner_ms for s in side.samples]

    ref_gaps = gaps(reference)
    cand = candidate.samples
    active_s = (sum(s.prep_ms + s.outside_ms for s in cand) + candidate.warmup_ms) / 1e3
    return {
        "reference_inner_ms": med(reference, "inner_ms"),
        "reference_outside_ms": med(reference, "outside_ms"),
        "reference_prepare_ms": med(reference, "prep_ms"),
        "reference_gap_ms": round(median(ref_gaps), 4),
        "reference_gap_spread_ms": round(quantile(ref_gaps, 0.8) - quantile(ref_gaps, 0.2), 4),
        "harness_overhead_ms": round(floor, 4),
        "candidate_inner_ms": med(candidate, "inner_ms"),
        "candidate_outside_ms": med(candidate, "outside_ms"),
        "candidate_prepare_ms": med(candidate, "prep_ms"),
        "candidate_gap_ms": round(median(gaps(candidate)), 4),
        "candidate_cpu_s": None if cpu_used is None else round(cpu_used, 3),
        "candidate_active_s": round(active_s, 3),
        "timing_wall_s": round(wall_s, 3),
        "spot_reads": len(picker.reads),
        "timed_calls": picker.calls,
    }


def _outside_checks(seen: dict[str, Any], target: str) -> None:
    """Raise `Refused` where the candidate's worker says or does what honest code does not."""
    extra = seen["candidate_gap_ms"] - seen["reference_gap_ms"]
    noise = 0.1 + 2 * seen["reference_gap_spread_ms"]
    if target == "cuda":
        if seen["candidate_inner_ms"] > seen["candidate_outside_ms"] + 0.05:
            raise Refused(
                Check.CLOCK_MISMATCH,
                f"its device events report {seen['candidate_inner_ms']:.3f} ms for a call that "
                f"took {seen['candidate_outside_ms']:.3f} ms from request to answer",
            )
        if extra > 2 * seen["candidate_inner_ms"] + noise:
            raise Refused(
                Check.HIDDEN_WORK,
                f"a call takes {seen['candidate_outside_ms']:.3f} ms from request to answer but "
                f"only {seen['candidate_inner_ms']:.3f} ms between its stream's events "
                f"({extra:.3f} ms more than the reference's overhead): work runs on another "
                "stream or on the host",
            )
    else:
        timed = max(seen["candidate_outside_ms"] - seen["harness_overhead_ms"], 0.0)
        if extra > 0.5 * timed + noise:
            raise Refused(
                Check.CLOCK_MISMATCH,
                f"its own clock says {seen['candidate_inner_ms']:.3f} ms for a call that took "
                f"{seen['candidate_outside_ms']:.3f} ms by the parent's clock (the reference's "
                f"differ by {seen['reference_gap_ms']:.3f} ms): its clock does not tell the time",
            )
    used = seen["candidate_cpu_s"]
    if used is not None and used > 1.25 * seen["candidate_active_s"] + 0.2:
        raise Refused(
            Check.HIDDEN_WORK,
            f"its processes used {used:.2f} s of CPU while its calls and cache flushes took "
            f"{seen['candidate_active_s']:.2f} s: threads or processes work beside the timed "
            "calls",
        )
