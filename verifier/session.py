"""Parent side of verification: the reference's workers, and comparing outputs here.

`run_reference` computes the expected outputs in a worker that never loads candidate code and
records a sha256 of each output file, so a candidate cannot swap them later. `run_candidate`
(`verifier.candidate_run`) runs the candidate's worker on the same cases, compares every output
here (CPU, float64), and only when all cases pass times it against the reference in a worker of
its own (`verifier.timing_driver`). Each worker has a hard deadline; a hang becomes `timeout`, a
crash or exception `runtime_error` with its traceback and log, a wrong output `incorrect`.
`time_compiled_reference` (`--compile-baseline`) times the reference under `torch.compile`, also
in a worker that never loads candidate code; it never raises for the problem's sake: a failure,
crash or timeout there becomes the record's one-line `note`. Every line a worker writes is read
through `verifier.protocol`.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from kernelwright import paths
from kernelwright.compiler.seal import sha256_file
from kernelwright.errors import BadInput
from kernelwright.records import (
    CaseResult,
    CompiledReference,
    Status,
    TimingReport,
    timing_from_json,
)
from kernelwright.runner.isolation import PRELOAD, Exit, Worker, WorkerOverLimit, WorkerTimeout
from kernelwright.runner.snapshot import snapshot
from kernelwright.verifier import protocol
from kernelwright.verifier.cases import Case
from kernelwright.verifier.compare import Comparison, compare
from kernelwright.verifier.tolerances import Tolerance

WORKER = "kernelwright.verifier.worker"
# How long its interpreter may take to start and import torch (see isolation.READY_LINE): the
# job's own limit (--timeout) counts from then. Seconds when idle, far more on a loaded machine.
WORKER_START_S = 120.0


@dataclass(frozen=True)
class ReferenceOutputs:
    cases: list[Case]
    files: dict[int, tuple[Path, str]]  # case index -> (path, sha256)
    nbytes: dict[int, list[int]]  # case index -> byte sizes of the output tensors
    mutating: list[int]  # cases where the reference itself writes into its inputs
    # case index -> (path, sha256) of the float64 run's outputs (low-precision outputs only)
    wide: dict[int, tuple[Path, str]] = field(default_factory=dict)
    # case index -> the compute the reference's call dispatched (verifier/op_record.py)
    work: dict[int, float] = field(default_factory=dict)


@dataclass
class CandidateVerdict:
    status: Status
    reason: str
    cases: list[CaseResult] = field(default_factory=list)
    timing: TimingReport | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    log: str = ""
    warnings: list[dict[str, Any]] = field(default_factory=list)


def run_reference(
    problem: Path,
    target: str,
    trials: int,
    seed: int,
    scratch: Path,
    timeout_s: float,
    env_extra: dict[str, str] | None = None,
) -> ReferenceOutputs:
    """Expected outputs for every case. A problem that cannot run raises BadInput."""
    problem = snapshot(problem)  # what runs is a read-only copy of what was read
    out_dir = scratch / "reference"
    out_dir.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []
    files: dict[int, tuple[Path, str]] = {}
    nbytes: dict[int, list[int]] = {}
    mutating: list[int] = []
    wide: dict[int, tuple[Path, str]] = {}
    work: dict[int, float] = {}
    record: protocol.Record | protocol.Fault | None = None
    with Worker(
        WORKER, out_dir, deadline_s=timeout_s, env_extra=env_extra, startup_s=WORKER_START_S
    ) as worker:
        worker.send(
            {
                "mode": "reference",
                "problem": str(problem),
                "target": target,
                "trials": trials,
                "seed": seed,
                "out_dir": str(out_dir),
            }
        )
        try:
            while (line := worker.recv_line()) is not None:
                record = protocol.decode(line)
                if isinstance(record, protocol.ReferenceCase):
                    case = Case.from_message(dict(record.case))
                    path = Path(record.path)
                    cases.append(case)
                    files[case.index] = (path, sha256_file(path))
                    nbytes[case.index] = list(record.nbytes)
                    work[case.index] = record.work
                    if record.mutates_inputs:
                        mutating.append(case.index)
                    if record.wide_path:
                        wide_path = Path(record.wide_path)
                        wide[case.index] = (wide_path, sha256_file(wide_path))
                elif isinstance(record, protocol.ProblemFailure):
                    raise BadInput(f"problem {problem.name}: {record.message}")
                else:
                    break
        except WorkerOverLimit as exc:
            where = f"after {cases[-1].label}" if cases else "on its first case"
            raise BadInput(
                f"problem {problem.name}: the reference {exc} {where} (its model, inputs, outputs "
                "and the repeat run that checks it is repeatable); a worker may hold half of "
                "this machine's memory: use smaller sizes"
            ) from None
        except WorkerTimeout:
            raise BadInput(
                f"problem {problem.name}: the reference did not finish within {timeout_s:g} s; "
                "raise --timeout or use smaller sizes"
            ) from None
        end = worker.finish()
    if not isinstance(record, protocol.Finished):
        detail = _last_line(end.stderr) or end.describe()
        raise BadInput(f"problem {problem.name}: the reference worker {end.describe()}: {detail}")
    return ReferenceOutputs(cases, files, nbytes, mutating, wide, work)


COMPILE_MODE = "default"


def time_compiled_reference(
    problem: Path,
    target: str,
    trials: int,
    seed: int,
    scratch: Path,
    timeout_s: float,
    timing_settings: dict[str, Any] | None = None,
    env_extra: dict[str, str] | None = None,
) -> CompiledReference:
    """The reference under `torch.compile`, timed against eager on the first case's inputs."""
    problem = snapshot(problem)
    out_dir = scratch / "compiled_reference"
    record: protocol.Record | protocol.Fault | None = None
    note = ""
    # A lasting TMPDIR, where inductor keeps its caches (precompiled headers too, whatever
    # TORCHINDUCTOR_CACHE_DIR says): a problem compiles from scratch once per KERNELWRIGHT_HOME.
    tmp = paths.home() / "inductor"
    tmp.mkdir(exist_ok=True)
    env = {"TMPDIR": str(tmp), **(env_extra or {})}
    with Worker(
        WORKER, out_dir, deadline_s=timeout_s, env_extra=env, startup_s=WORKER_START_S
    ) as worker:
        worker.send(
            {
                "mode": "compiled_reference",
                "problem": str(problem),
                "target": target,
                "trials": trials,
                "seed": seed,
                "timing": timing_settings or {},
            }
        )
        try:
            line = worker.recv_line()
            record = protocol.decode(line, protocol.CompiledTiming) if line is not None else None
        except WorkerTimeout:
            note = f"torch.compile and its timing did not finish within {timeout_s:g} s"
        except WorkerOverLimit as exc:
            note = f"the torch.compile worker {exc}"
        end = worker.finish()
    if not isinstance(record, protocol.CompiledTiming):
        detail = _last_line(end.stderr)
        ended = f"the torch.compile worker {end.describe()}" + (f": {detail}" if detail else "")
        return CompiledReference(COMPILE_MODE, note=note or ended)
    if not record.report:
        return CompiledReference(COMPILE_MODE, note=(record.note or "no result")[:500])
    report = timing_from_json(json.loads(record.report))
    return CompiledReference(
        COMPILE_MODE,
        compiled=report.candidate,
        eager=report.reference,
        eager_over_compiled=report.speedup,
        compile_s=record.compile_s,
    )


def prestart_candidate(
    scratch: Path, candidate: Path, env_extra: dict[str, str] | None = None
) -> Worker:
    """A candidate worker started ahead of its job: it imports torch while the build and the
    reference run, then waits. It serves one candidate only, like every worker; pass it to
    `run_candidate`, and close it (`__exit__`) when the evaluation ends without using it."""
    return prestart(scratch / "candidate", env_extra, [paths.shelf(candidate)])


def prestart(
    folder: Path, env_extra: dict[str, str] | None, writable: list[Path] | None = None
) -> Worker:
    """An evaluation worker in `folder` that imports torch now and then waits for its job."""
    idle_s = 24 * 3600.0  # no deadline while it waits: run_candidate restarts the clock
    return Worker(
        WORKER,
        folder,
        deadline_s=idle_s,
        env_extra={**(env_extra or {}), PRELOAD: "torch"},
        writable=writable or [],
        startup_s=WORKER_START_S,
    )


def _read_output(path: Path) -> Any:
    """A candidate's output file: a regular file only (a FIFO would block, a link lead astray)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("it is not a regular file")
        return torch.load(fh, weights_only=True)


def _check_case(
    index: int, labels: dict[int, str], reference: ReferenceOutputs, cand_path: Path, tol: Tolerance
) -> CaseResult:
    label = labels.get(index, f"case {index}")
    if index not in reference.files:
        return CaseResult(index, label, False, "the worker reported an unknown case", None, None)
    ref_path, digest = reference.files[index]
    if sha256_file(ref_path) != digest:
        return CaseResult(index, label, False, "the reference output was modified", None, None)
    expected = torch.load(ref_path, weights_only=True)
    try:
        got = _read_output(cand_path)
    except Exception as exc:
        return CaseResult(index, label, False, f"output could not be read: {exc}", None, None)
    try:
        result = compare(expected, got, tol)
        if not result.ok and index in reference.wide:
            result = _closer_to_exact(reference.wide[index], got, tol) or result
    except Exception as exc:  # an output no comparison handles (a sparse layout...) is wrong
        reason = f"output could not be compared: {type(exc).__name__}: {exc}"[:300]
        return CaseResult(index, label, False, reason, None, None)
    return CaseResult(
        index, label, result.ok, result.reason, result.max_abs_error, result.max_rel_error
    )


def _closer_to_exact(wide: tuple[Path, str], got: Any, tol: Tolerance) -> Comparison | None:
    """The comparison with the reference's float64 run (verifier/wide.py) where the candidate
    passes it: a kernel that rounds once, not after every op as eager PyTorch does."""
    path, digest = wide
    if sha256_file(path) != digest:
        return None
    result = compare(torch.load(path, weights_only=True), got, tol)
    if not result.ok:
        return None
    note = "within tolerance of the reference computed in float64, not of the low-precision one"
    return Comparison(True, note, result.max_abs_error, result.max_rel_error)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else ""


def _log(traceback_text: str, end: Exit) -> str:
    parts = []
    if end.stdout.strip():
        parts.append("--- candidate stdout ---\n" + end.stdout.rstrip())
    if end.stderr.strip():
        parts.append("--- candidate stderr ---\n" + end.stderr.rstrip())
    if traceback_text.strip():
        parts.append("--- traceback ---\n" + traceback_text.rstrip())
    return "\n".join(parts) + ("\n" if parts else "")


def run_candidate(*args: Any, **kwargs: Any) -> CandidateVerdict:
    """See `verifier.candidate_run.run_candidate`."""
    from kernelwright.verifier.candidate_run import run_candidate as run

    return run(*args, **kwargs)
