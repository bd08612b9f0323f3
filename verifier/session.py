"""Parent side of verification and timing: drive the workers, compare in this process.

`run_reference` computes the expected outputs in a worker that never loads candidate code and
records a sha256 of each output file, so a candidate cannot swap them later. `run_candidate` runs
the candidate's worker on the same cases, compares every output here (CPU, float64), and only when
all cases pass asks the worker to time. Each worker has a hard deadline; a hang becomes `timeout`,
a crash or exception `runtime_error` with its traceback and log, a wrong output `incorrect`.
`time_compiled_reference` (`--compile-baseline`) times the reference under `torch.compile`, also
in a worker that never loads candidate code; it never raises for the problem's sake: a failure,
crash or timeout there becomes the record's one-line `note`.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from kernelwright import paths
from kernelwright.compiler.seal import sha256_file
from kernelwright.errors import BadInput
from kernelwright.runner.isolation import PRELOAD, Exit, Worker, WorkerOverLimit, WorkerTimeout
from kernelwright.records import (
    CaseResult,
    CompiledReference,
    Status,
    TimingReport,
    timing_from_json,
)
from kernelwright.verifier.cases import Case
from kernelwright.verifier.compare import Comparison, compare
from kernelwright.verifier.static_checks import candidate_kernels
from kernelwright.verifier.tolerances import Tolerance

WORKER = "kernelwright.verifier.worker"


@dataclass(frozen=True)
class ReferenceOutputs:
    cases: list[Case]
    files: dict[int, tuple[Path, str]]  # case index -> (path, sha256)
    nbytes: dict[int, list[int]]  # case index -> byte sizes of the output tensors
    mutating: list[int]  # cases where the reference itself writes into its inputs
    # case index -> (path, sha256) of the float64 run's outputs (low-precision outputs only)
    wide: dict[int, tuple[Path, str]] = field(default_factory=dict)


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
    out_dir = scratch / "reference"
    out_dir.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []
    files: dict[int, tuple[Path, str]] = {}
    nbytes: dict[int, list[int]] = {}
    mutating: list[int] = []
    wide: dict[int, tuple[Path, str]] = {}
    with Worker(WORKER, out_dir, deadline_s=timeout_s, env_extra=env_extra) as worker:
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
            while (message := worker.recv()) is not None:
                kind = message.get("kind")
                if kind == "case":
                    case = Case.from_message(message["case"])
                    path = Path(message["path"])
                    cases.append(case)
                    files[case.index] = (path, sha256_file(path))
                    nbytes[case.index] = [int(n) for n in message.get("nbytes", [])]
                    if message.get("mutates_inputs"):
                        mutating.append(case.index)
                    if message.get("wide_path"):
                        wide_path = Path(message["wide_path"])
                        wide[case.index] = (wide_path, sha256_file(wide_path))
                elif kind == "done":
                    break
                elif kind == "problem_error":
                    raise BadInput(f"problem {problem.name}: {message['message']}")
        except WorkerOverLimit as exc:
            raise BadInput(f"problem {problem.name}: the reference {exc}") from None
        except WorkerTimeout:
            raise BadInput(
                f"problem {problem.name}: the reference did not finish within {timeout_s:g} s; "
                "raise --timeout or use smaller sizes"
            ) from None
        end = worker.finish()
    if message is None or message.get("kind") != "done":
        detail = _last_line(end.stderr) or end.describe()
        raise BadInput(f"problem {problem.name}: the reference worker {end.describe()}: {detail}")
    return ReferenceOutputs(cases, files, nbytes, mutating, wide)


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
    out_dir = scratch / "compiled_reference"
    message: dict[str, Any] | None = None
    note = ""
    # A lasting TMPDIR, where inductor keeps its caches (precompiled headers too, whatever
    # TORCHINDUCTOR_CACHE_DIR says): a problem compiles from scratch once per KERNELWRIGHT_HOME.
    tmp = paths.home() / "inductor"
    tmp.mkdir(exist_ok=True)
    env = {"TMPDIR": str(tmp), **(env_extra or {})}
    with Worker(WORKER, out_dir, deadline_s=timeout_s, env_extra=env) as worker:
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
            message = worker.recv()
        except WorkerTimeout:
            note = f"torch.compile and its timing did not finish within {timeout_s:g} s"
        except WorkerOverLimit as exc:
            note = f"the torch.compile worker {exc}"
        end = worker.finish()
    if message is None:
        detail = _last_line(end.stderr)
        ended = f"the torch.compile worker {end.describe()}" + (f": {detail}" if detail else "")
        return CompiledReference(COMPILE_MODE, note=note or ended)
    if "report" not in message:
        return CompiledReference(COMPILE_MODE, note=str(message.get("note", "no result"))[:500])
    report = timing_from_json(message["report"])
    return CompiledReference(
        COMPILE_MODE,
        compiled=report.candidate,
        eager=report.reference,
        eager_over_compiled=report.speedup,
        compile_s=float(message["compile_s"]),
    )


def prestart_candidate(
    scratch: Path, candidate: Path, env_extra: dict[str, str] | None = None
) -> Worker:
    """A candidate worker started ahead of its job: it imports torch while the build and the
    reference run, then waits. It serves one candidate only, like every worker; pass it to
    `run_candidate`, and close it (`__exit__`) when the evaluation ends without using it."""
    idle_s = 24 * 3600.0  # no deadline while it waits: run_candidate restarts the clock
    return Worker(
        WORKER,
        scratch / "candidate",
        deadline_s=idle_s,
        env_extra={**(env_extra or {}), PRELOAD: "torch"},
        writable=[paths.shelf(candidate)],
    )


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
) -> CandidateVerdict:
    """`worker`: one from `prestart_candidate` (same scratch and env_extra); used when still alive,
    its deadline counted from now. Otherwise a fresh worker is started."""
    out_dir = scratch / "candidate"
    out_dir.mkdir(parents=True, exist_ok=True)
    source = candidate.read_text(encoding="utf-8")
    kernels = candidate_kernels(source) if target == "cuda" else []
    checked = [c for c in reference.cases if not c.after_timing]
    results: list[CaseResult] = []
    progress = "before any case finished"
    verdict: CandidateVerdict | None = None
    if worker is not None and worker.alive():
        worker.restart_clock(timeout_s)
    else:
        if worker is not None:
            worker.__exit__(None, None, None)
        worker = Worker(
            WORKER,
            out_dir,
            deadline_s=timeout_s,
            env_extra=env_extra,
            writable=[paths.shelf(candidate)],
        )
    nonce = secrets.token_hex(16)
    with worker:
        worker.send(
            {
                "mode": "candidate",
                "nonce": nonce,
                "problem": str(problem),
                "candidate": str(candidate),
                "target": target,
                "out_dir": str(out_dir),
                "builds_root": str(paths.shelf(candidate)),
                "cases": [c.to_message() for c in reference.cases],
                "timing": timing_settings or {},
                "nbytes": reference.nbytes,
                "mutating_cases": reference.mutating,
                "kernels": kernels,
                "spot_checks": SPOT_CHECKS,
            }
        )
        labels = {c.index: c.label for c in reference.cases}
        protocol = _Protocol(out_dir, checked, reference.cases)
        try:
            while verdict is None and (message := worker.recv()) is not None:
                fault = protocol.admit(message, nonce)
                if fault:
                    reason = f"rejected by result_channel: {fault} ({progress})"
                    verdict = CandidateVerdict(Status.REJECTED, reason, results)
                    break
                kind = message["kind"]
                if kind == "case":
                    index = int(message["index"])
                    progress = f"after {labels.get(index, index)}"
                    results.append(
                        _check_case(index, labels, reference, protocol.path(index), tolerance)
                    )
                elif kind == "outputs_done":
                    progress = "timing"
                    failed = [r for r in results if not r.ok]
                    if failed:
                        first = failed[0]
                        reason = (
                            f"{len(failed)} of {len(results)} cases wrong; "
                            f"{first.label}: {first.reason}"
                        )
                        verdict = CandidateVerdict(Status.INCORRECT, reason, results)
                    else:
                        protocol.timing_asked = True
                        worker.send({"cmd": "time"})
                elif kind == "recheck":
                    index = int(message["index"])
                    recheck = _check_case(index, labels, reference, protocol.path(index), tolerance)
                    results.append(recheck)
                    if not recheck.ok:
                        reason = (
                            "rejected by recheck_after_timing: correct before timing, wrong after "
                            "the timed inputs got new values (a result cache, or a forward whose "
                            f"output depends on earlier calls?); {recheck.reason}"
                        )
                        verdict = CandidateVerdict(Status.REJECTED, reason, results)
                elif kind == "timing":
                    report = timing_from_json(message["report"])
                    # Every timed call may be the one kept: missing spots mean the harness's own
                    # list was emptied, and the timed calls would go unchecked.
                    timed_calls = report.candidate.samples + int(report.settings["host_calls"])
                    wanted = min(SPOT_CHECKS, timed_calls)
                    if len(protocol.spots) < wanted:
                        raise _Missing(
                            f"{len(protocol.spots)} of {wanted} spot-checked timed calls came "
                            f"back ({timed_calls} were timed)"
                        )
                    verdict = CandidateVerdict(
                        Status.CORRECT,
                        "",
                        results,
                        report,
                        message.get("environment", {}),
                        warnings=message.get("warnings", []),
                    )
                elif kind == "rejected":
                    reason = f"rejected by {message['check']}: {message['message']} ({progress})"
                    verdict = CandidateVerdict(Status.REJECTED, reason, results)
                elif kind == "runtime_error":
                    reason = f"{message['message']} (while {message['stage']})"
                    verdict = CandidateVerdict(
                        Status.RUNTIME_ERROR, reason, results, log=message.get("traceback", "")
                    )
        except _Missing as exc:
            reason = f"rejected by spot_check: {exc} ({progress})"
            verdict = CandidateVerdict(Status.REJECTED, reason, results)
        except (KeyError, TypeError, ValueError) as exc:  # a message of the right order, bad body
            reason = f"rejected by result_channel: a malformed message ({exc!r}; {progress})"
            verdict = CandidateVerdict(Status.REJECTED, reason, results)
        except WorkerTimeout:
            reason = f"did not finish within {timeout_s:g} s ({progress})"
            if protocol.timing_asked:  # the timing runs the reference as often as the candidate
                reason += (
                    "; the limit covers the reference's timed calls too: raise --timeout for a "
                    "slow reference"
                )
            verdict = CandidateVerdict(Status.TIMEOUT, reason, results)
        except WorkerOverLimit as exc:
            verdict = CandidateVerdict(
                Status.RUNTIME_ERROR, f"the candidate {exc} ({progress})", results
            )
        if verdict is not None and verdict.status is Status.INCORRECT:
            worker.send({"cmd": "stop"})
        end = worker.finish()
    if verdict is None:
        verdict = CandidateVerdict(
            Status.RUNTIME_ERROR,
            f"the evaluation worker ended without a result ({end.describe()}, {progress})",
            results,
        )
    verdict.log = _log(verdict.log, end)
    if verdict.status is Status.CORRECT and protocol.spots:
        _check_spots(
            verdict,
            problem,
            target,
            reference,
            tolerance,
            scratch,
            timeout_s,
            env_extra,
            protocol.spots,
        )
    return verdict


def _check_spots(
    verdict: CandidateVerdict,
    problem: Path,
    target: str,
    reference: ReferenceOutputs,
    tolerance: Tolerance,
    scratch: Path,
    timeout_s: float,
    env_extra: dict[str, str] | None,
    spots: list[tuple[int, Path]],
) -> None:
    """Compare the outputs of the timed calls the candidate's worker kept with the reference's on
    the same inputs, computed in a worker that never ran candidate code. A wrong one means the
    candidate did less (or other) work when timed than when checked: `rejected`. Where the
    reference cannot be run again, the verdict stands, with a warning saying so."""
    out_dir = scratch / "spot_reference"
    out_dir.mkdir(parents=True, exist_ok=True)
    expected: dict[int, Path] = {}
    wide: dict[int, Path] = {}
    note = ""
    try:
        with Worker(WORKER, out_dir, deadline_s=timeout_s, env_extra=env_extra) as worker:
            worker.send(
                {
                    "mode": "spot_reference",
                    "problem": str(problem),
                    "target": target,
                    "case": reference.cases[0].to_message(),
                    "seeds": [seed for seed, _ in spots],
                    "out_dir": str(out_dir),
                }
            )
            while (message := worker.recv()) is not None and message.get("kind") == "spot":
                expected[int(message["index"])] = Path(message["path"])
                if message.get("wide_path"):
                    wide[int(message["index"])] = Path(message["wide_path"])
            if message is not None and message.get("kind") == "spot_error":
                note = str(message.get("message", ""))[:300]
            worker.finish()
    except (WorkerTimeout, WorkerOverLimit) as exc:
        note = f"the reference worker {exc or 'timed out'}"
    if len(expected) < len(spots):
        message = f"timed calls' outputs were not checked: {note or 'the reference did not run'}"
        verdict.warnings.append({"check": "spot_check", "severity": "warn", "message": message})
        return
    for number, (_, got_path) in enumerate(spots):
        try:
            got = _read_output(got_path)
            result = compare(torch.load(expected[number], weights_only=True), got, tolerance)
            if not result.ok and number in wide:  # a low-precision problem's float64 opinion
                second = compare(torch.load(wide[number], weights_only=True), got, tolerance)
                result = second if second.ok else result
            ok, reason = result.ok, result.reason
        except Exception as exc:
            ok, reason = False, f"its output could not be compared: {type(exc).__name__}: {exc}"
        if not ok:
            verdict.status, verdict.timing = Status.REJECTED, None  # its times measured no work
            verdict.reason = (
                f"rejected by spot_check: timed call {number + 1} of the {len(spots)} checked "
                f"after timing returned a wrong output, though every checked case was right "
                f"(does it work less when timed?); {reason}"[:600]
            )
            return


# How many timed calls' outputs the candidate's worker keeps (chosen at random after each call)
# for the parent to check against a clean reference.
SPOT_CHECKS = 3


class _Missing(Exception):
    """The worker's timing came without the timed outputs it must keep for spot checks."""


class _Protocol:
    """What the candidate's worker may say next. The harness in it sends each checked case once
    and in order, then `outputs_done`; after the parent asks it to time, each re-check, then
    `timing`. Candidate code shares that process and can reach the pipe, so anything else (a
    line without the job's nonce, a garbled line, a timing before the re-checks) is a forgery."""

    def __init__(self, out_dir: Path, checked: list[Any], cases: list[Any]) -> None:
        self.out_dir = out_dir
        self.pending = [c.index for c in checked]
        self.rechecks = [c.index for c in cases if c.after_timing]
        self.timing_asked = False
        self.spots: list[tuple[int, Path]] = []  # (seed, output file) of kept timed calls

    def path(self, index: int) -> Path:
        return self.out_dir / f"cand_{index}.pt"  # where the harness writes it, never elsewhere

    def admit(self, message: dict[str, Any], nonce: str) -> str:
        """'' for the message the harness would send now, else what is wrong with it."""
        if message.get("kind") == "garbled" or message.get("nonce") != nonce:
            return "a line on the harness's result pipe did not come from the harness"
        kind = message.get("kind")
        if kind in ("rejected", "runtime_error"):
            return ""
        expected = {
            "case": not self.timing_asked and bool(self.pending),
            "outputs_done": not self.timing_asked and not self.pending,
            "recheck": self.timing_asked and bool(self.rechecks),
            "spot": self.timing_asked and not self.rechecks and len(self.spots) < SPOT_CHECKS,
            "timing": self.timing_asked and not self.rechecks,
        }
        if not expected.get(str(kind), False):
            return f"an out-of-order `{kind}` message"
        if kind == "spot":
            number = len(self.spots)
            path = self.out_dir / f"spot_{number}.pt"
            seed = message.get("seed")
            if message.get("index") != number or message.get("path") != str(path):
                return "a `spot` message for another call or file"
            if not isinstance(seed, int) or isinstance(seed, bool):
                return "a `spot` message without its seed"
            self.spots.append((seed, path))
        if kind in ("case", "recheck"):
            queue = self.pending if kind == "case" else self.rechecks
            if message.get("index") != queue[0] or message.get("path") != str(self.path(queue[0])):
                return f"a `{kind}` message for another case or file"
            queue.pop(0)
        return ""


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
