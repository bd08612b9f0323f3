"""Parent side of building a candidate: start the build worker, enforce its time limit.

`start_build` returns at once, so the orchestrator can run the reference meanwhile;
`BuildJob.result()` waits for the verdict. A failed build is a `compile_error` result carrying the
full compiler log; one past its limit is a `timeout` result (the whole compiler tree is killed).
A kernel-only CUDA extension that the worker's nvcc pre-check rejected is a `compile_error` whose
log is nvcc's output and whose reason is its first error, tagged `PRECHECK_TAG`. A build that
succeeded is audited here, outside the worker (`compiler/audit.py`: the symbols its libraries
import, the system call instruction, its sources as the preprocessor reads them); a refusal is a
`rejected` result whose reason names the check (`native_symbols`, `native_preprocessed`).
"""

from __future__ import annotations

import re
import secrets
import uuid
from pathlib import Path
from typing import Any

from kernelwright import paths
from kernelwright.compiler import audit, pch, seal
from kernelwright.records import BuildResult, Status
from kernelwright.runner.isolation import Worker, WorkerOverLimit, WorkerTimeout
from kernelwright.runner.snapshot import snapshot

DEFAULT_BUILD_TIMEOUT_S = 300.0


class BuildJob:
    def __init__(self, candidate: Path, target: str, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        candidate = snapshot(candidate)  # the worker imports a read-only copy of what was read
        scratch = paths.scratch_dir() / f"build-{uuid.uuid4().hex[:12]}"
        self.shelf = paths.shelf(candidate)  # the only part of the build cache it may write
        self.worker = Worker(
            "kernelwright.compiler.worker", scratch, deadline_s=timeout_s, writable=[self.shelf]
        )
        self.nonce = secrets.token_hex(16)  # its answer must carry it (see isolation.Channel)
        self.worker.send(
            {
                "candidate": str(candidate),
                "target": target,
                "builds_root": str(self.shelf),
                "nonce": self.nonce,
            }
        )

    def result(self) -> BuildResult:
        with self.worker as worker:
            try:
                message = worker.recv()
            except (WorkerTimeout, WorkerOverLimit):
                message = None
            end = worker.finish()
        # Traceback first, compiler output last: the end of the log is where its errors are.
        log = _join_log((message or {}).get("traceback", ""), end.stdout, end.stderr)
        _cleanup(worker.scratch)
        failure = None
        if end.timed_out:
            failure = (Status.TIMEOUT, f"build did not finish within {self.timeout_s:g} s")
        elif worker.over_limit:
            failure = (Status.COMPILE_ERROR, f"the build {worker.over_limit}")
        elif message is None or message.get("kind") != "build":
            failure = (
                Status.COMPILE_ERROR,
                f"the build worker ended without a result ({end.describe()})",
            )
        elif message.get("nonce") != self.nonce:
            failure = (
                Status.COMPILE_ERROR,
                "the build's answer did not come from the build worker (candidate code wrote it)",
            )
        if failure is not None:
            spent = self.timeout_s if end.timed_out else 0.0
            return BuildResult(failure[0], failure[1], log, spent, False, "", "")
        precheck_s = message.get("precheck_s")
        kernels = list(message.get("kernels") or [])
        precheck_s = float(precheck_s) if precheck_s is not None else None
        if message.get("precheck_error"):
            return _precheck_rejection(message, kernels, precheck_s)
        ok = bool(message["ok"])
        if ok:
            builds = list(message.get("builds") or [])
            seal.record(self.shelf, builds)
            checked = audit.audit_build(self.shelf, builds)  # here: no candidate code runs
            log += checked.log()
            if checked.refusal is not None:
                return BuildResult(
                    status=Status.REJECTED,
                    reason=checked.refusal.line(),
                    log=log,
                    compile_s=float(message["compile_s"]),
                    cached=bool(message["cached"]),
                    build_dir=str(message["build_dir"]),
                    key=str(message["key"]),
                    kernels=kernels,
                    precheck_s=precheck_s,
                )
            log += _make_pchs(self.shelf, builds)
        return BuildResult(
            status=None if ok else Status.COMPILE_ERROR,
            reason=""
            if ok
            else first_error(end.stdout + end.stderr) or _last_line(message["traceback"]),
            log=log,
            compile_s=float(message["compile_s"]),
            cached=bool(message["cached"]),
            build_dir=str(message["build_dir"]),
            key=str(message["key"]),
            kernels=kernels,
            precheck_s=precheck_s,
        )


def _make_pchs(shelf: Path, builds: list[dict[str, Any]]) -> str:
    """Make the precompiled headers the builds on `shelf` asked for (here, never in a worker:
    see compiler/pch.py); lines for the build log."""
    from kernelwright.compiler.precheck_run import system_includes

    root = paths.builds_dir()
    keys = [str(b["key"]) for b in builds if re.fullmatch(r"[0-9a-f]+", str(b["key"]))]
    folders = [f for key in keys for f in shelf.glob(f"*-{key}") if f.is_dir()]
    try:
        notes = pch.make_requested(folders, root, [Path(p) for p in system_includes()])
    except Exception as exc:  # a PCH problem never fails a build that succeeded
        notes = [f"precompiled header not made: {type(exc).__name__}: {exc}"]
    return "".join(f"[kernelwright] {note}\n" for note in notes)


PRECHECK_TAG = "(nvcc pre-check; full build skipped)"


def _precheck_rejection(
    message: dict[str, Any], kernels: list[dict[str, Any]], precheck_s: float | None
) -> BuildResult:
    """nvcc rejected a kernel-only unit: its output is the whole log, its first error the reason."""
    rejected = message["precheck_error"]
    output = str(rejected.get("output", ""))
    first = first_error(output) or _last_line(output)
    return BuildResult(
        status=Status.COMPILE_ERROR,
        reason=f"{first} {PRECHECK_TAG}",
        log=_join_log(f"$ {rejected.get('command', 'nvcc')}", output),
        compile_s=float(message["compile_s"]),
        cached=False,
        build_dir=str(message["build_dir"]),
        key=str(message["key"]),
        kernels=kernels,
        precheck_s=precheck_s,
    )


def start_build(
    candidate: Path, target: str, timeout_s: float = DEFAULT_BUILD_TIMEOUT_S
) -> BuildJob:
    return BuildJob(candidate, target, timeout_s)


def build_candidate(
    candidate: Path, target: str, timeout_s: float = DEFAULT_BUILD_TIMEOUT_S
) -> BuildResult:
    return start_build(candidate, target, timeout_s).result()


def _join_log(*texts: str) -> str:
    parts = [p.rstrip() for p in texts if p.strip()]
    return "\n".join(parts) + ("\n" if parts else "")


_BUILD_PATH = re.compile(r"\S*/([^/\s]+\.(?:cpp|cu|cuh|h|hpp|cc)\b)")
_ERROR_LINE = re.compile(r"(error\b|Error:|undefined reference|fatal)", re.IGNORECASE)


def first_error(log: str) -> str:
    """The first line of compiler output that names an error (the one a reader needs first)."""
    lines = log.splitlines()
    for line in lines:
        if _ERROR_LINE.search(line) and not line.lstrip().startswith(
            ("[", "FAILED:", "RuntimeError: Error building")
        ):
            # Build directories are long hashed paths; the file name is what a reader needs.
            return _BUILD_PATH.sub(r"\1", line.strip())[:300]
    return ""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "build failed"


def _cleanup(scratch: Path) -> None:
    import shutil

    shutil.rmtree(scratch, ignore_errors=True)
