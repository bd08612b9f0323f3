"""Parent side of one candidate's run: a small state machine over the worker's records.

The parent owns the conversation. It names every case and output file, decides when timing
starts and how many samples and spot checks there are (`timing_driver`), and accepts from the
candidate's worker only the record kinds its current phase allows, each once and in order:

- `verifying`: one `CaseOutput` per checked case, in order, then `OutputsDone`;
- `timing`: driven by `timing_driver` (`Ready`, `Warm`, `Ready`/`Done` per sample, `Kept`);
- `closing`: one `RecheckOutput` per re-check, in order, the kept outputs (`SpotOutput`, cuda)
  as asked, then `TimingEnd`.

`Rejected` and `RuntimeFailure` (the harness's own reports of a check or an exception) are
allowed in every phase. Anything else, a line that does not decode, or a record out of its
phase is `rejected` by `result_channel`; nothing a worker sends raises here. Whatever the worker
does, the result is a `CandidateVerdict`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from kernelwright import paths
from kernelwright.profiler.timing import TimingSettings
from kernelwright.records import CaseResult, Status, TimingReport
from kernelwright.runner import observe
from kernelwright.runner.isolation import Worker, WorkerOverLimit, WorkerTimeout
from kernelwright.runner.snapshot import snapshot
from kernelwright.verifier import op_record, protocol, timing_driver
from kernelwright.verifier.compare import compare
from kernelwright.verifier.session import (
    WORKER,
    WORKER_START_S,
    CandidateVerdict,
    ReferenceOutputs,
    _check_case,
    _log,
    _read_output,
)
from kernelwright.verifier.static_checks import candidate_kernels
from kernelwright.verifier.tolerances import Tolerance

if TYPE_CHECKING:
    from kernelwright.verifier.timer_pool import Lease

# How many timed calls' outputs are read at least (more as the calls go on: timing_driver).
SPOT_CHECKS = 3


class _Verdict(Exception):
    """Ends the conversation with this verdict."""

    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class _Job:
    problem: Path
    candidate: Path
    target: str
    reference: ReferenceOutputs
    tolerance: Tolerance
    scratch: Path
    timeout_s: float
    timing: TimingSettings
    env_extra: dict[str, str] | None
    judge_ops: bool = True  # whether PyTorch doing the work is a verdict (`op_record`)


@dataclass
class _State:
    phase: str = "verifying"
    progress: str = "before any case finished"
    results: list[CaseResult] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)  # checked cases still due, in order
    rechecks: list[int] = field(default_factory=list)  # re-checks still due, in order
    kept_due: int = 0  # kept outputs (cuda) the worker still owes
    kept_paths: list[Path] = field(default_factory=list)
    report: TimingReport | None = None
    spots: list[timing_driver.SpotRead] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    traceback: str = ""
    timing_asked: bool = False


def run_candidate(
    problem: Path,
    candidate: Path,
    target: str,
    reference: ReferenceOutputs,
    tolerance: Tolerance,
    scratch: Path,
    timeout_s: float,
    timing_settings: dict[str, Any] | None = None,
    env_extra: dict[str, str] | None = None,
    worker: Worker | None = None,
    timer: Worker | None = None,
    judge_ops: bool = True,
    timer_lease: Lease | None = None,
) -> CandidateVerdict:
    """`worker`: from `session.prestart_candidate` (same scratch and env_extra), `timer`: a
    reference-timer worker started ahead; each used when still alive, its deadline counted from
    now, and ended here.
    `timer_lease`: a timer from `timer_pool` instead, left running: its `clean` is set when the
    timer finished its job as the protocol says, and the caller gives it back. `judge_ops=False`
    where PyTorch is meant to do most of the work (`apply`: the user's whole model with kernels
    swapped in, each of which passed as a candidate of its own problem)."""
    job = _Job(
        snapshot(problem),  # what runs is a read-only copy of what was read
        snapshot(candidate),
        target,
        reference,
        tolerance,
        scratch,
        timeout_s,
        TimingSettings(**(timing_settings or {})),
        env_extra,
        judge_ops,
    )
    if timer_lease is not None:
        timer = timer_lease.worker
    return _Run(job, worker, timer, timer_lease).run()


class _Run:
    def __init__(
        self, job: _Job, worker: Worker | None, timer: Worker | None, lease: Lease | None
    ) -> None:
        self.job = job
        self.lease = lease
        # where the reference's timer stands in its job: idle (none sent), busy, ended
        # (`TimingEnd` read), spots (its outputs asked for), finished (`Finished` read: ready
        # for the next candidate's job)
        self.timer_phase = "idle"
        self.out_dir = job.scratch / "candidate"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.worker = _ready(worker, job.timeout_s) or Worker(
            WORKER,
            self.out_dir,
            deadline_s=job.timeout_s,
            env_extra=job.env_extra,
            writable=[paths.shelf(job.candidate)],
            startup_s=WORKER_START_S,
        )
        self.timer = _ready(timer, job.timeout_s)
        self.state = _State()
        self.labels = {c.index: c.label for c in job.reference.cases}
        self.handlers: dict[type[protocol.Record], Callable[[Any], None]] = {
            protocol.CaseOutput: self.on_case,
            protocol.OutputsDone: self.on_outputs_done,
            protocol.RecheckOutput: self.on_recheck,
            protocol.SpotOutput: self.on_kept,
            protocol.TimingEnd: self.on_timing_end,
            protocol.Rejected: self.on_rejected,
            protocol.RuntimeFailure: self.on_runtime_failure,
        }
        self.allowed = {
            "verifying": {protocol.CaseOutput, protocol.OutputsDone},
            "closing": {protocol.RecheckOutput, protocol.SpotOutput, protocol.TimingEnd},
        }

    # -- the conversation ------------------------------------------------------------------

    def run(self) -> CandidateVerdict:
        job, state = self.job, self.state
        state.pending = [c.index for c in job.reference.cases if not c.after_timing]
        state.rechecks = [c.index for c in job.reference.cases if c.after_timing]
        # Found before the job is sent, while no candidate code has run in it.
        self.pid = observe.worker_pid(self.worker.proc.pid, WORKER)
        verdict: CandidateVerdict | None = None
        with self.worker:
            self.worker.send(self._request())
            try:
                while verdict is None:
                    line = self.worker.recv_line()
                    if line is None:
                        break
                    verdict = self._dispatch(protocol.decode(line))
            except _Verdict as stop:
                verdict = self._verdict(stop.status, stop.reason)
            except WorkerTimeout:
                reason = f"did not finish within {job.timeout_s:g} s ({state.progress})"
                verdict = self._verdict(Status.TIMEOUT, reason)
            except WorkerOverLimit as exc:
                reason = f"the candidate {exc} ({state.progress})"
                verdict = self._verdict(Status.RUNTIME_ERROR, reason)
            if verdict is not None and verdict.status is Status.INCORRECT:
                self.worker.send_line(protocol.dumps(protocol.Stop()))
            end = self.worker.finish()
        if verdict is None:
            reason = f"the evaluation worker ended without a result ({end.describe()}, "
            verdict = self._verdict(Status.RUNTIME_ERROR, reason + f"{state.progress})")
        verdict.log = _log(state.traceback, end)
        if verdict.status is Status.CORRECT:
            self._check_spots(verdict)
        self._close_timer()
        return verdict

    def _dispatch(self, record: protocol.Record | protocol.Fault) -> CandidateVerdict | None:
        if isinstance(record, protocol.Fault):
            raise _Verdict(Status.REJECTED, self._channel(record.reason))
        kind = type(record)
        always = kind in (protocol.Rejected, protocol.RuntimeFailure)
        if not always and kind not in self.allowed.get(self.state.phase, set()):
            raise _Verdict(Status.REJECTED, self._channel(f"an out-of-order `{record.kind}`"))
        self.handlers[kind](record)
        if self.state.phase == "done":
            return self._verdict(Status.CORRECT, "")
        return None

    def _channel(self, what: str) -> str:
        return f"rejected by result_channel: {what} ({self.state.progress})"

    def _verdict(self, status: Status, reason: str) -> CandidateVerdict:
        state = self.state
        timing = state.report if status is Status.CORRECT else None
        return CandidateVerdict(
            status,
            reason,
            state.results,
            timing,
            state.environment if status is Status.CORRECT else {},
            warnings=state.warnings if status is Status.CORRECT else [],
        )

    # -- handlers, one per record kind -------------------------------------------------------

    def on_case(self, record: protocol.CaseOutput) -> None:
        state = self.state
        self._expect_next(state.pending, record.index, record.path, "case")
        state.progress = f"after {self.labels.get(record.index, record.index)}"
        self._judge_ops(record)
        state.results.append(self._check(record.index))

    def _judge_ops(self, record: protocol.CaseOutput) -> None:
        """What ran during the case's call: PyTorch doing the main work is `rejected`; some
        PyTorch beside the kernel is one warning (the first case that shows it)."""
        if not self.job.judge_ops:
            return
        ops = [op_record.OpCount(op.name, op.calls, op.work) for op in record.ops]
        judgement = op_record.judge(ops, self.job.reference.work.get(record.index, 0.0))
        if judgement is None:
            return
        if judgement.severity == "reject":
            raise _Verdict(Status.REJECTED, f"rejected by {judgement.check}: {judgement.message}")
        if not any(w["check"] == judgement.check for w in self.state.warnings):
            warning = {"check": judgement.check, "severity": "warn", "message": judgement.message}
            self.state.warnings.append(warning)

    def on_outputs_done(self, record: protocol.OutputsDone) -> None:
        state = self.state
        if state.pending:
            raise _Verdict(Status.REJECTED, self._channel("`outputs_done` before every case"))
        failed = [r for r in state.results if not r.ok]
        if failed:
            first = failed[0]
            reason = (
                f"{len(failed)} of {len(state.results)} cases wrong; {first.label}: {first.reason}"
            )
            raise _Verdict(Status.INCORRECT, reason)
        state.progress = "timing"
        state.timing_asked = True
        self._time()
        state.phase = "closing"
        state.progress = "after timing"

    def on_recheck(self, record: protocol.RecheckOutput) -> None:
        self._expect_next(self.state.rechecks, record.index, record.path, "recheck")
        recheck = self._check(record.index)
        self.state.results.append(recheck)
        if not recheck.ok:
            raise _Verdict(
                Status.REJECTED,
                "rejected by recheck_after_timing: correct before timing, wrong after the timed "
                "inputs got new values (a result cache, or a forward whose output depends on "
                f"earlier calls?); {recheck.reason}",
            )

    def on_kept(self, record: protocol.SpotOutput) -> None:
        state = self.state
        number = len(state.kept_paths)
        path = self.out_dir / f"spot_{number}.pt"
        if state.rechecks or number >= state.kept_due:
            raise _Verdict(Status.REJECTED, self._channel("an out-of-order `spot`"))
        if record.index != number or record.path != str(path):
            raise _Verdict(Status.REJECTED, self._channel("a `spot` for another call or file"))
        state.kept_paths.append(path)

    def on_timing_end(self, record: protocol.TimingEnd) -> None:
        state = self.state
        if state.rechecks or len(state.kept_paths) < state.kept_due:
            raise _Verdict(Status.REJECTED, self._channel("`timing_end` before its re-checks"))
        state.environment = dict(record.environment)
        state.warnings += [
            {"check": n.check, "severity": n.severity, "message": n.message[:500]}
            for n in record.warnings
        ]
        state.phase = "done"

    def on_rejected(self, record: protocol.Rejected) -> None:
        reason = f"rejected by {record.check}: {record.message} ({self.state.progress})"
        raise _Verdict(Status.REJECTED, reason[:2000])

    def on_runtime_failure(self, record: protocol.RuntimeFailure) -> None:
        self.state.traceback = record.traceback
        raise _Verdict(Status.RUNTIME_ERROR, f"{record.message} (while {record.stage})"[:2000])

    def _expect_next(self, queue: list[int], index: int, path: str, kind: str) -> None:
        if not queue or index != queue[0] or path != str(self.out_dir / f"cand_{queue[0]}.pt"):
            raise _Verdict(Status.REJECTED, self._channel(f"a `{kind}` for another case or file"))
        queue.pop(0)

    def _check(self, index: int) -> CaseResult:
        path = self.out_dir / f"cand_{index}.pt"  # where the harness writes it, never elsewhere
        return _check_case(index, self.labels, self.job.reference, path, self.job.tolerance)

    # -- timing ------------------------------------------------------------------------------

    def _time(self) -> None:
        job, state = self.job, self.state
        candidate = timing_driver.TimedSide(self.worker, "candidate", self.pid)
        try:
            timer = self._start_timer()
            reference = timing_driver.TimedSide(timer, "reference", None)
            reference.expect(protocol.Ready)
            candidate.ask(protocol.Time(), protocol.Ready)
            outcome = timing_driver.time_pair(
                reference, candidate, job.target, job.timing, SPOT_CHECKS
            )
            reference.ask(protocol.EndTiming(), protocol.TimingEnd)
            self.timer_phase = "ended"
        except timing_driver.SideReported as told:
            self._dispatch(told.record)  # a Rejected or RuntimeFailure: raises its verdict
            raise
        except timing_driver.ChannelFault as exc:
            if exc.side == "reference":  # no candidate code there: a fault of the tool's
                self._untimed(f"the reference's timing worker failed: {exc}")
                return
            raise _Verdict(Status.REJECTED, self._channel(str(exc))) from None
        except timing_driver.Refused as exc:
            raise _Verdict(Status.REJECTED, f"rejected by {exc.check}: {exc.message}") from None
        except timing_driver.SideEnded as exc:
            if exc.args and exc.args[0] == "reference":
                self._untimed("the reference's timing worker ended early")
                return
            raise _Verdict(
                Status.RUNTIME_ERROR, "the evaluation worker ended while being timed"
            ) from None
        except (WorkerTimeout, WorkerOverLimit) as exc:
            if self.timer is not None and not self.timer.alive():
                self._untimed(f"the reference's timing worker {exc or 'timed out'}")
                return
            raise
        state.report = outcome.report
        state.spots = outcome.spots
        state.kept_due = sum(1 for s in outcome.spots if s.kept_index is not None)
        self.worker.send_line(protocol.dumps(protocol.EndTiming()))

    def _untimed(self, why: str) -> None:
        """The reference side failed (no candidate code runs there): correct, but no time."""
        message = f"not timed: {why}; the candidate's outputs were right"
        self.state.warnings.append({"check": "timing", "severity": "warn", "message": message})
        self.worker.send_line(protocol.dumps(protocol.EndTiming()))

    def _start_timer(self) -> Worker:
        job = self.job
        if self.timer is None:
            self.timer = Worker(
                WORKER,
                job.scratch / "reference_timer",
                deadline_s=job.timeout_s,
                env_extra=job.env_extra,
                startup_s=WORKER_START_S,
            )
        out_dir = self.timer.scratch
        base = job.reference.cases[0]
        self.timer_phase = "busy"
        self.timer.send(
            {
                "mode": "reference_timer",
                "problem": str(job.problem),
                "target": job.target,
                "case": base.to_message(),
                "out_dir": str(out_dir),
            }
        )
        return self.timer

    def _close_timer(self) -> None:
        if self.timer is None:
            return
        if self.lease is None or self.timer is not self.lease.worker:  # not leased: ours to end
            self.timer.__exit__(None, None, None)
            return
        # A leased timer stays up; it may serve another candidate only from a known state.
        if self.timer_phase == "ended":
            self._end_timer_job()
        self.lease.clean = self.timer.alive() and self.timer_phase in ("idle", "finished")

    def _end_timer_job(self) -> None:
        """Close a timed job whose spot outputs were not asked for: no seeds, then `Finished`."""
        timer = self.timer
        assert timer is not None
        timer.restart_clock(min(self.job.timeout_s, 30.0))  # it only has to say `Finished`
        timer.send_line(protocol.dumps(protocol.SpotSeeds(seeds=())))
        try:
            line = timer.recv_line()
        except (WorkerTimeout, WorkerOverLimit):
            return
        if line is not None and isinstance(protocol.decode(line), protocol.Finished):
            self.timer_phase = "finished"

    # -- spot checks -------------------------------------------------------------------------

    def _check_spots(self, verdict: CandidateVerdict) -> None:
        """Each timed call's output that was read is compared with the reference's output for
        the same seed, computed in the reference's timing worker (no candidate code there)."""
        spots = self.state.spots
        if not spots:
            return
        for spot in spots:
            if spot.problem:
                self._spot_failed(verdict, spot.problem)
                return
        expected = self._reference_spots([s.seed for s in spots])
        if expected is None:
            message = "timed calls' outputs were not checked: the reference could not run them"
            verdict.warnings.append({"check": "spot_check", "severity": "warn", "message": message})
            return
        for number, spot in enumerate(spots):
            try:
                got = spot.output
                if spot.kept_index is not None:
                    got = _read_output(self.state.kept_paths[spot.kept_index])
                ref_path, wide_path = expected[number]
                result = compare(torch.load(ref_path, weights_only=True), got, self.job.tolerance)
                if not result.ok and wide_path is not None:  # a low-precision problem's float64
                    second = compare(
                        torch.load(wide_path, weights_only=True), got, self.job.tolerance
                    )
                    result = second if second.ok else result
                ok, reason = result.ok, result.reason
            except Exception as exc:
                ok, reason = False, f"its output could not be compared: {type(exc).__name__}: {exc}"
            if not ok:
                self._spot_failed(
                    verdict,
                    f"timed call {number + 1} of the {len(spots)} read returned a wrong output, "
                    "though every checked case was right (does it work less when timed?); "
                    + reason,
                )
                return

    def _spot_failed(self, verdict: CandidateVerdict, why: str) -> None:
        verdict.status, verdict.timing = Status.REJECTED, None  # its times measured no work
        verdict.reason = f"rejected by spot_check: {why}"[:600]

    def _reference_spots(self, seeds: list[int]) -> list[tuple[Path, Path | None]] | None:
        timer = self.timer
        if timer is None or not timer.alive():
            return None
        timer.restart_clock(self.job.timeout_s)
        self.timer_phase = "spots"
        timer.send_line(protocol.dumps(protocol.SpotSeeds(seeds=tuple(seeds))))
        found: list[tuple[Path, Path | None]] = []
        try:
            while (line := timer.recv_line()) is not None:
                record = protocol.decode(line)
                if not isinstance(record, protocol.SpotOutput):
                    if isinstance(record, protocol.Finished):
                        self.timer_phase = "finished"
                    break
                wide = Path(record.wide_path) if record.wide_path else None
                found.append((Path(record.path), wide))
        except (WorkerTimeout, WorkerOverLimit):
            return None
        return found if len(found) == len(seeds) else None

    def _request(self) -> dict[str, Any]:
        job = self.job
        source = job.candidate.read_text(encoding="utf-8")
        return {
            "mode": "candidate",
            "problem": str(job.problem),
            "candidate": str(job.candidate),
            "target": job.target,
            "out_dir": str(self.out_dir),
            "builds_root": str(paths.shelf(job.candidate)),
            "cases": [c.to_message() for c in job.reference.cases],
            "nbytes": job.reference.nbytes,
            "mutating_cases": job.reference.mutating,
            "kernels": candidate_kernels(source) if job.target == "cuda" else [],
        }


def _ready(worker: Worker | None, timeout_s: float) -> Worker | None:
    """A prestarted worker that is still alive, its deadline counted from now; else None."""
    if worker is None:
        return None
    if worker.alive():
        worker.restart_clock(timeout_s)
        return worker
    worker.__exit__(None, None, None)
    return None
