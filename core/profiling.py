"""Profile one built, correct candidate with Nsight Compute: the orchestrator's side.

ncu runs the candidate in an isolated worker (no keys, scratch folder, private network with only
loopback up, a time limit) and profiles only the candidate's own kernels, by name, inside one
call after warm-up. Its report is read back as CSV and summarised per kernel with roofline
figures (`profiler.roofline`).

A profile never fails an evaluation. When ncu is missing, counters are not permitted, or the
driver or GPU is unsupported, the result says why and how to fix it (`status` `unavailable`),
and this process does not start ncu again; anything else is `failed` with ncu's own error.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kernelwright import paths
from kernelwright.profiler import ncu, ncu_metrics, roofline
from kernelwright.profiler.sheets import gpu_sheet
from kernelwright.runner.isolation import Worker, WorkerOverLimit, WorkerTimeout, sandbox
from kernelwright.runner.snapshot import snapshot
from kernelwright.verifier.profile_target import JOB, RESULT
from kernelwright.verifier.static_checks import candidate_kernels

DEFAULT_TIMEOUT_S = 180.0
WARMUP_CALLS = 3
LAUNCH_COUNT = 20  # launches profiled at most: a kernel called in a loop is sampled, not all
IMPORT_TIMEOUT_S = 120.0

OK, UNAVAILABLE, FAILED = "ok", "unavailable", "failed"
log = logging.getLogger(__name__)

_unavailable: str | None = None  # a permanent reason found earlier in this process
_lock = threading.Lock()


@dataclass
class ProfileResult:
    status: str
    message: str = ""
    kernels: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    device_name: str | None = None
    report: str | None = None  # the .ncu-rep kept for Nsight Compute's UI
    log: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def judge_metrics(self) -> dict[str, dict[str, str]] | None:
        return judge_metrics(self.to_json())


def judge_metrics(profile: dict[str, Any] | None) -> dict[str, dict[str, str]] | None:
    """The judge's block for a profile (`ProfileResult.to_json()`): labelled lines per kernel,
    or None when there is no profile with metrics."""
    if not profile or profile.get("status") != OK:
        return None
    return {k["kernel"]: k["judge"] for k in profile.get("kernels", [])}


def profile_candidate(
    problem: Path,
    candidate: Path,
    *,
    seed: int = 42,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    device: str | None = None,
    capability: tuple[int, int] | None = None,
    keep_report: Path | None = None,
) -> ProfileResult:
    """Profile `candidate` (already built through the harness) on `problem`'s first case.

    `device`: a CUDA device index for CUDA_VISIBLE_DEVICES. `capability`: the GPU's compute
    capability when known, to pick the tensor-core counters (see `ncu_metrics`).
    """
    global _unavailable
    started = time.perf_counter()
    problem, candidate = snapshot(problem), snapshot(candidate)  # what runs is what was read
    with _lock:
        known = _unavailable
    if known:
        return ProfileResult(UNAVAILABLE, known)
    exe = ncu.find_ncu()
    if exe is None:
        with _lock:
            _unavailable = ncu.MISSING_HELP
        return ProfileResult(UNAVAILABLE, ncu.MISSING_HELP)
    kernels = candidate_kernels(candidate.read_text(encoding="utf-8"))
    capability = capability or gpu_capability(device)
    if not kernels:
        return ProfileResult(FAILED, "the candidate defines no __global__ kernel to profile")
    scratch = paths.scratch_dir() / f"profile-{uuid.uuid4().hex[:12]}"
    scratch.mkdir(parents=True)
    try:
        try:
            args = (exe, problem, candidate, kernels, seed, timeout_s, device, capability)
            result = _run(*args, scratch)
            if _needs_root_capabilities(result):
                # Counters restricted to administrators: root's capabilities would lift that,
                # and the full sandbox gives them up. Profile again with the network one only.
                shutil.rmtree(scratch, ignore_errors=True)
                scratch.mkdir(parents=True)
                result = _run(*args, scratch, isolation="network")
        except Exception as exc:  # a fault of the profiler's own must not fail the candidate
            log.warning("profiling %s failed", candidate, exc_info=True)
            result = ProfileResult(FAILED, f"profiling raised {type(exc).__name__}: {exc}")
        if result.status == UNAVAILABLE:
            with _lock:
                _unavailable = result.message
        if result.ok and keep_report is not None:
            keep_report.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(scratch / "profile.ncu-rep"), keep_report)
            result.report = str(keep_report)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.seconds = time.perf_counter() - started
    return result


def _needs_root_capabilities(result: ProfileResult) -> bool:
    return (
        result.status == UNAVAILABLE
        and result.message == ncu.PERMISSION_HELP
        and os.geteuid() == 0
        and sandbox().level in ("bwrap", "namespaces")
    )


def _run(
    exe: str,
    problem: Path,
    candidate: Path,
    kernels: list[str],
    seed: int,
    timeout_s: float,
    device: str | None,
    capability: tuple[int, int] | None,
    scratch: Path,
    isolation: str = "",
) -> ProfileResult:
    job = {
        "problem": str(problem),
        "candidate": str(candidate),
        "builds_root": str(paths.shelf(candidate)),
        "seed": seed,
        "warmup": WARMUP_CALLS,
    }
    (scratch / JOB).write_text(json.dumps(job), encoding="utf-8")
    report = scratch / "profile.ncu-rep"
    metrics = ncu_metrics.metrics_for(capability)
    command = ncu.profile_command(exe, metrics, kernels, report, [], LAUNCH_COUNT)
    launcher = (sys.executable, "-m", "kernelwright.runner.loopback", *command)
    env = {"CUDA_VISIBLE_DEVICES": device} if device is not None else None
    worker = Worker(
        "kernelwright.verifier.profile_target",
        scratch,
        timeout_s,
        env_extra=env,
        launcher=launcher,
        isolation=isolation,
        writable=[paths.shelf(candidate)],
        readable=[Path(exe).resolve().parent],  # ncu's own folder, wherever it is installed
    )
    with worker:
        try:
            while worker.recv() is not None:  # the target answers in a file; wait for the end
                pass
        except (WorkerTimeout, WorkerOverLimit):
            pass
        end = worker.finish()
    log = "\n".join(part for part in (end.stdout, end.stderr) if part)
    if end.timed_out:
        return ProfileResult(FAILED, f"ncu did not finish within {timeout_s:g} s", log=log)
    if worker.over_limit:
        return ProfileResult(FAILED, f"the profiled process {worker.over_limit}", log=log)
    answer = _read_json(scratch / RESULT)
    if ncu.PERMISSION_CODE in log:  # ncu lets the program run on but collects nothing
        return ProfileResult(UNAVAILABLE, ncu.PERMISSION_HELP, log=log)
    if answer.get("error"):
        message = f"the profiled run failed: {answer['error']}"
        return ProfileResult(FAILED, message, log=log + "\n" + answer.get("traceback", ""))
    if not report.exists():  # only now read ncu's complaints: a working run may print warnings
        found = ncu.diagnose(log)
        if found is not None and found[1]:
            return ProfileResult(UNAVAILABLE, found[0], log=log)
        message = found[0] if found else f"ncu wrote no report ({end.describe()})"
        return ProfileResult(FAILED, message, log=log)
    try:
        table = subprocess.run(
            ncu.import_command(exe, report),
            capture_output=True,
            text=True,
            timeout=IMPORT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return ProfileResult(FAILED, f"reading the ncu report failed: {exc}", log=log)
    launches = ncu.parse_csv(table.stdout)
    device_name = answer.get("device_name")
    if not launches:
        names = ", ".join(kernels)
        message = f"ncu profiled no launch of the candidate's kernels ({names})"
        return ProfileResult(FAILED, message, device_name=device_name, log=log + table.stderr)
    kernels_summary = roofline.summarize(launches, kernels, gpu_sheet(device_name))
    for kernel in kernels_summary:
        kernel["judge"] = roofline.judge_block(kernel)
    return ProfileResult(OK, "", kernels_summary, device_name=device_name, log=log)


def gpu_capability(device: str | None) -> tuple[int, int] | None:
    """The compute capability of the GPU `device` (a CUDA_VISIBLE_DEVICES index) through NVML,
    which does not initialise CUDA in this process; None where NVML cannot say."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            if device is None:
                device = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
            handle = pynvml.nvmlDeviceGetHandleByIndex(int(device) if device.isdigit() else 0)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return None
    return int(major), int(minor)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def reset_unavailable() -> None:
    """Forget a permanent failure (tests; a long-lived process after the fix)."""
    global _unavailable
    with _lock:
        _unavailable = None
