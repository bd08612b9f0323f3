"""Evaluate one candidate against one problem: build, verify, time. The orchestrator's view.

The log of a candidate that built holds the build's full output (torch's builds run verbose in
the build worker, so every compiler command line and warning is there), then the run's.

Order and gates: both files are checked statically; the build worker starts and, while it
compiles, the reference worker computes the expected outputs (once per problem and settings in
this process: reference_cache.py) and the candidate's worker starts and imports torch (the
reference's timing worker is the one the problem's last candidate left, where
verifier/timer_pool.py keeps it, or starts now too); a candidate
that fails to build is never run; one that is wrong is never timed. This process runs no problem
or candidate code and never initialises CUDA: it starts workers, compares their outputs on the CPU
and assembles the `EvaluationResult`. Bad input raises `BadInput`/`ToolchainMissing` before
anything is written.

With `compile_baseline`, a correct candidate's timing also gets the reference under
`torch.compile` (`timing.compiled_reference`), timed in a reference-side worker after the
candidate's own timing. It is measured once per problem, target, device and settings in this
process and reused: compiling is the slow part and does not depend on the candidate. A failure
there never fails the evaluation; it is kept as the record's one-line note.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kernelwright import options as check_options
from kernelwright import paths
from kernelwright.compiler.build import DEFAULT_BUILD_TIMEOUT_S, start_build
from kernelwright.problem import load_candidate, load_problem
from kernelwright.records import CompiledReference, EvaluationResult, Status, TimingReport
from kernelwright.reference_cache import ReferenceCache
from kernelwright.runner.isolation import Worker, sandbox
from kernelwright.runner.snapshot import snapshot
from kernelwright.targets import check_toolchain
from kernelwright.verifier import session, timer_pool
from kernelwright.verifier.static_checks import REJECT, WARN, check_candidate
from kernelwright.verifier.tolerances import Tolerance

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 180.0
IMPLAUSIBLE_SPEEDUP = 10.0  # KernelBench's threshold for "excessive" speedups


@dataclass(frozen=True)
class EvaluateOptions:
    target: str
    trials: int = 5
    seed: int = 42
    atol: float | None = None
    rtol: float | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    build_timeout_s: float = DEFAULT_BUILD_TIMEOUT_S
    timing: dict[str, Any] = field(default_factory=dict)
    device: str | None = None  # a CUDA device index for the workers (CUDA_VISIBLE_DEVICES)
    compile_baseline: bool = False  # also time the reference under torch.compile
    profile: bool = False  # Nsight Compute metrics for a correct candidate (cuda target only)
    # profile only a candidate faster than this (the loop's `best` policy); None: any
    profile_below_ms: float | None = None


def evaluate(
    problem_path: Path | str,
    candidate_path: Path | str,
    options: EvaluateOptions,
    device_lock: AbstractContextManager[Any] | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> EvaluationResult:
    """`device_lock`: held while problem or candidate code runs (verify and time), so that
    evaluations running side by side build concurrently but never share the device.
    `on_phase`: told, in words, each phase as it starts (the CLI's progress lines)."""
    phase = on_phase or (lambda _what: None)
    device = device_lock if device_lock is not None else nullcontext()
    device_env = {"CUDA_VISIBLE_DEVICES": options.device} if options.device is not None else None
    started = time.perf_counter()
    check_options.evaluation(
        options.trials,
        options.seed,
        options.atol,
        options.rtol,
        options.timeout_s,
        options.build_timeout_s,
    )
    problem = load_problem(problem_path)
    candidate = load_candidate(candidate_path, problem)
    check_toolchain(options.target)
    # What every worker runs: the texts just read and checked, whatever happens to the files now.
    problem_run = snapshot(problem.path, problem.source)
    candidate_run = snapshot(candidate.path, candidate.source)
    tolerance = Tolerance(options.atol, options.rtol)
    findings = check_candidate(
        candidate.source,
        options.target,
        problem.scalar_inputs,
        problem.scalar_init_inputs,
        passed=problem.input_counts,
    )
    warnings = [asdict(f) for f in findings if f.severity == WARN]
    rejects = [f for f in findings if f.severity == REJECT]
    scratch = paths.scratch_dir() / f"eval-{uuid.uuid4().hex[:12]}"
    profile: dict[str, Any] | None = None
    phases: dict[str, float] = {}  # where the time went (seconds), in the order things ran
    common: dict[str, Any] = {
        "target": options.target,
        "problem": str(problem.path),
        "problem_hash": problem.content_hash,
        "candidate": str(candidate.path),
        "trials": options.trials,
        "tolerance": {"atol": options.atol, "rtol": options.rtol, **tolerance.describe()},
    }
    if rejects:  # cheapest gate of all: nothing of the candidate is built or run
        first = rejects[0]
        where = f" (line {first.line})" if first.line else ""
        return EvaluationResult(
            status=Status.REJECTED,
            reason=f"rejected by {first.check}: {first.message}{where}",
            log="\n".join(f"{f.check}: {f.message}" for f in rejects) + "\n",
            warnings=warnings,
            duration_s=time.perf_counter() - started,
            **common,
        )
    holding_reference = False
    prestarted: list[Worker] = []
    timer: timer_pool.Lease | None = None
    judged = False
    try:
        phase("building the candidate; computing the reference's outputs meanwhile")
        job = start_build(candidate_run, options.target, options.build_timeout_s)
        # The candidate's worker imports torch meanwhile, off the critical path; the reference's
        # timing worker is one the problem's last candidate left (timer_pool), or starts now.
        prestarted.append(session.prestart_candidate(scratch, candidate_run, device_env))
        timer = _timers.take(
            timer_pool.key(problem.content_hash, options.target, options.device), device_env
        )
        try:
            with _timed(phases, "reference_s"):
                reference = _references.acquire(
                    problem_run, problem.content_hash, options, device, device_env
                )
            holding_reference = True
        except BaseException:
            job.worker.kill()
            job.result()
            raise
        phase("building the candidate (the reference's outputs are ready)")
        with _timed(phases, "build_wait_s"):  # the build's time beyond the reference's
            build = job.result()
        if not build.ok:
            assert build.status is not None
            return EvaluationResult(
                warnings=warnings,
                status=build.status,
                reason=build.reason,
                log=build.log,
                compile_s=build.compile_s,
                cached=build.cached,
                kernels=build.kernels,
                precheck_s=build.precheck_s,
                duration_s=time.perf_counter() - started,
                phases_s=phases,
                **common,
            )
        phase(f"verifying on {options.trials} seeded cases, then timing against the reference")
        judged = True
        with device, _timed(phases, "candidate_s"):
            verdict = _judge_candidate(
                problem_run,
                candidate_run,
                options,
                reference,
                tolerance,
                scratch,
                prestarted[0],
                timer,
            )
        if options.compile_baseline and verdict.timing is not None:
            phase("timing the reference under torch.compile")
            with _timed(phases, "compiled_reference_s"):
                compiled = _compiled_reference(
                    problem_run, problem.content_hash, options, device, device_env
                )
            verdict.timing = dataclasses.replace(
                verdict.timing,
                compiled_reference=compiled.for_candidate(verdict.timing.candidate.median_ms),
            )
        if (
            options.profile
            and options.target == "cuda"
            and verdict.status is Status.CORRECT
            and _beats(verdict.timing, options.profile_below_ms)
        ):
            from kernelwright.profiling import profile_candidate

            phase("profiling the candidate with Nsight Compute")
            with device, _timed(phases, "profile_s"):
                profile = profile_candidate(
                    problem_run, candidate_run, seed=options.seed, device=options.device
                ).to_json()
    finally:
        for worker in prestarted:  # unused (the build failed, say) or already finished
            worker.__exit__(None, None, None)
        if timer is not None:
            if not judged:  # never given a job (the build failed, say): as fresh as it started
                timer.clean = True
            _timers.give_back(timer)
        if holding_reference:
            _references.release(problem.content_hash, options)
        shutil.rmtree(scratch, ignore_errors=True)
    errors = [c for c in verdict.cases if c.max_abs_error is not None]
    timing = verdict.timing
    if timing is not None and timing.speedup > IMPLAUSIBLE_SPEEDUP:
        message = (
            f"{timing.speedup:.1f}x over PyTorch is beyond what kernels usually reach; "
            "check the candidate by hand before trusting it"
        )
        warnings.append({"check": "implausible_speedup", "severity": WARN, "message": message})
    return EvaluationResult(
        status=verdict.status,
        reason=verdict.reason,
        cases=verdict.cases,
        max_abs_error=max((c.max_abs_error for c in errors), default=None),  # type: ignore[type-var]
        max_rel_error=max((c.max_rel_error or 0.0 for c in errors), default=None),
        speedup=timing.speedup if timing else None,
        candidate_ms=timing.candidate.median_ms if timing else None,
        reference_ms=timing.reference.median_ms if timing else None,
        timing=timing,
        compile_s=build.compile_s,
        cached=build.cached,
        kernels=build.kernels,
        precheck_s=build.precheck_s,
        profile=profile,
        phases_s=phases,
        log=with_build_log(build, verdict.log),
        environment={**verdict.environment, **_isolation()},
        warnings=_merged(warnings, verdict.warnings),
        duration_s=time.perf_counter() - started,
        **common,
    )


_references = ReferenceCache()
_timers = timer_pool.TimerPool()

BUILD_HEADING = "--- build"
RUN_HEADING = "--- verify and time ---"


def with_build_log(build: Any, run_log: str) -> str:
    """A built candidate's log: the build's whole output (the compiler's command lines, warnings
    and notes, or the cache hit), then what running it said, which stays last (where a reader
    and the judge look first). A failed build's log is the build's alone."""
    heading = f"{BUILD_HEADING} ({'cached' if build.cached else f'{build.compile_s:.1f} s'}) ---"
    parts = [heading, build.log.rstrip() or "(no output)"]
    if run_log.strip():
        parts += [RUN_HEADING, run_log.rstrip()]
    return "\n".join(parts) + "\n"


def _judge_candidate(
    problem: Path,
    candidate: Path,
    options: EvaluateOptions,
    reference: session.ReferenceOutputs,
    tolerance: Tolerance,
    scratch: Path,
    worker: Worker,
    timer: timer_pool.Lease,
) -> session.CandidateVerdict:
    """The candidate's verdict, whatever its worker did. The parent's state machine turns every
    message into a verdict already; this is the last net under it, so that no candidate can end
    an `optimize` or `bench` run: a fault of the harness's own on this candidate is logged with
    its traceback and becomes this candidate's `runtime_error`."""
    device_env = {"CUDA_VISIBLE_DEVICES": options.device} if options.device is not None else None
    try:
        return session.run_candidate(
            problem,
            candidate,
            options.target,
            reference,
            tolerance,
            scratch,
            options.timeout_s,
            options.timing,
            env_extra=device_env,
            worker=worker,
            timer_lease=timer,
        )
    except Exception as exc:
        log.exception("the harness failed on %s", candidate)
        reason = f"the harness failed on this candidate: {type(exc).__name__}: {exc}"[:500]
        return session.CandidateVerdict(Status.RUNTIME_ERROR, reason)


def check_reference(
    problem_path: Path | str,
    options: EvaluateOptions,
    device_lock: AbstractContextManager[Any] | None = None,
) -> None:
    """Run the reference on the evaluation's cases, as `evaluate` would first: a problem whose
    reference fails raises `BadInput` here, before anything is spent on candidates. Its outputs
    stay cached for the evaluations that follow in this process."""
    problem = load_problem(problem_path)
    check_toolchain(options.target)
    device_env = {"CUDA_VISIBLE_DEVICES": options.device} if options.device is not None else None
    device = device_lock if device_lock is not None else nullcontext()
    problem_run = snapshot(problem.path, problem.source)
    _references.acquire(problem_run, problem.content_hash, options, device, device_env)
    _references.release(problem.content_hash, options)


def _isolation() -> dict[str, str]:
    """How the candidate's workers were isolated (see isolation.sandbox), for the record."""
    box = sandbox()
    return {"isolation": box.level, **({"isolation_note": box.note} if box.note else {})}


@contextmanager
def _timed(phases: dict[str, float], name: str) -> Iterator[None]:
    """Add the seconds spent in the block to `phases[name]` (device-lock waits not included when
    the lock is entered first)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        phases[name] = round(phases.get(name, 0.0) + time.perf_counter() - start, 3)


_compiled: dict[str, CompiledReference] = {}
_compiled_locks: dict[str, threading.Lock] = {}
_compiled_guard = threading.Lock()


def _compiled_reference(
    problem: Path,
    content_hash: str,
    options: EvaluateOptions,
    device: AbstractContextManager[Any],
    device_env: dict[str, str] | None,
) -> CompiledReference:
    """The problem's torch.compile baseline, measured on first use (under the device lock) and
    then reused; concurrent evaluations of one problem wait for the one that measures it."""
    key = json.dumps(
        [content_hash, options.target, options.device, options.seed, options.timing],
        sort_keys=True,
    )
    with _compiled_guard:
        lock = _compiled_locks.setdefault(key, threading.Lock())
    with lock:
        if key not in _compiled:
            scratch = paths.scratch_dir() / f"compile-{uuid.uuid4().hex[:12]}"
            try:
                with device:
                    _compiled[key] = session.time_compiled_reference(
                        problem,
                        options.target,
                        options.trials,
                        options.seed,
                        scratch,
                        options.timeout_s,
                        options.timing,
                        env_extra=device_env,
                    )
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            if _compiled[key].note:
                log.info("%s: no torch.compile baseline: %s", problem.name, _compiled[key].note)
        return _compiled[key]


def _merged(static: list[dict[str, Any]], seen: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The static warnings and those of the run; where both name one check (PyTorch beside the
    kernel, say), what was seen to run replaces what the text suggested."""
    observed = {w["check"] for w in seen}
    return [w for w in static if w["check"] not in observed] + seen


def _beats(timing: TimingReport | None, bar_ms: float | None) -> bool:
    """Whether a correct candidate is worth profiling under the `best` policy's bar."""
    if bar_ms is None:
        return True
    return timing is not None and timing.candidate.median_ms < bar_ms
