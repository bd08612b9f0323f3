"""Where evaluations run: `local` (this machine, one evaluation at a time per device) or `ray`
(each evaluation a Ray task holding one GPU, on whatever node Ray picks).

Local: builds of different candidates overlap; running problem or candidate code holds the
device's lock, and with several GPUs each evaluation is pinned to one (CUDA_VISIBLE_DEVICES),
taken in turn. Ray: the task gets the problem and candidate as text (the node may be another
machine), evaluates them with the same harness under that node's KERNELWRIGHT_HOME, and returns
the result as JSON; Ray's GPU accounting keeps two tasks off one GPU. The store stays with the
orchestrator either way.
"""

from __future__ import annotations

import itertools
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Protocol

from kernelwright import paths
from kernelwright.errors import BadInput, KernelwrightError
from kernelwright.evaluate import EvaluateOptions, check_reference, evaluate
from kernelwright.records import (
    CaseResult,
    EvaluationResult,
    Status,
    timing_from_json,
    to_jsonable,
)
from kernelwright.targets import visible_gpus

EXECUTORS = ("local", "ray")


class Executor(Protocol):
    slots: int  # evaluations that can usefully run at once

    def evaluate(
        self, problem: Path, candidate: Path, options: EvaluateOptions
    ) -> EvaluationResult: ...

    def check_reference(self, problem: Path, options: EvaluateOptions) -> None:
        """Raise `BadInput` where the problem's reference fails (see evaluate.check_reference)."""


class LocalExecutor:
    def __init__(self, target: str, devices: int | None = None) -> None:
        count = devices if devices is not None else (visible_gpus() if target == "cuda" else 0)
        self.devices = [str(i) for i in range(count)] if target == "cuda" and count > 1 else [None]
        self.locks = [threading.Lock() for _ in self.devices]
        self.slots = len(self.devices)
        self._turn = itertools.count()
        self._turn_lock = threading.Lock()

    def evaluate(
        self, problem: Path, candidate: Path, options: EvaluateOptions
    ) -> EvaluationResult:
        with self._turn_lock:
            index = next(self._turn) % len(self.devices)
        options = replace(options, device=self.devices[index])
        return evaluate(problem, candidate, options, device_lock=self.locks[index])

    def check_reference(self, problem: Path, options: EvaluateOptions) -> None:
        options = replace(options, device=self.devices[0])
        check_reference(problem, options, device_lock=self.locks[0])


class RayExecutor:
    def __init__(self, target: str, address: str | None = None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise BadInput("--executor ray needs Ray: pip install 'kernelwright[ray]'") from exc
        self._ray = ray
        if not ray.is_initialized():
            env = {k: v for k, v in os.environ.items() if k == "KERNELWRIGHT_HOME"}
            try:
                ray.init(
                    address=address,
                    include_dashboard=False,
                    log_to_driver=False,
                    runtime_env={"env_vars": env} if env else None,
                )
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise BadInput(
                    f"cannot reach the Ray cluster at {address or 'local'}: {exc}"
                ) from exc
        gpus = 1 if target == "cuda" else 0
        self._task = ray.remote(num_gpus=gpus, num_cpus=1, max_retries=0)(_remote_evaluate)
        self._check = ray.remote(num_gpus=gpus, num_cpus=1, max_retries=0)(_remote_check)
        resources = ray.cluster_resources()
        key = "GPU" if target == "cuda" else "CPU"
        self.slots = max(1, int(resources.get(key, 1)))

    def evaluate(
        self, problem: Path, candidate: Path, options: EvaluateOptions
    ) -> EvaluationResult:
        ref = self._task.remote(
            problem.name,
            problem.read_text(encoding="utf-8"),
            candidate.read_text(encoding="utf-8"),
            asdict(options),
        )
        return result_from_json(self._ray.get(ref))

    def check_reference(self, problem: Path, options: EvaluateOptions) -> None:
        source = problem.read_text(encoding="utf-8")
        error = self._ray.get(self._check.remote(problem.name, source, asdict(options)))
        if error is not None:
            raise BadInput(error)


def _remote_check(problem_name: str, problem_source: str, options: dict[str, Any]) -> str | None:
    """Runs in a Ray worker: the reference checked there (the node's toolchain and devices);
    the message of the error it raised, or None."""
    with _remote_folder() as folder:
        problem = folder / problem_name
        problem.write_text(problem_source, encoding="utf-8")
        try:
            check_reference(problem, EvaluateOptions(**options))
        except KernelwrightError as exc:
            return str(exc)
        return None


def _remote_evaluate(
    problem_name: str, problem_source: str, candidate_source: str, options: dict[str, Any]
) -> dict[str, Any]:
    """Runs in a Ray worker: write the files locally, evaluate, return plain JSON."""
    with _remote_folder() as folder:
        problem = folder / problem_name
        problem.write_text(problem_source, encoding="utf-8")
        candidate = folder / "candidate.py"
        candidate.write_text(candidate_source, encoding="utf-8")
        return to_jsonable(evaluate(problem, candidate, EvaluateOptions(**options)))


@contextmanager
def _remote_folder() -> Iterator[Path]:
    # Not under the scratch root: workers see none of it but their own folder.
    folder = paths.home() / "remote" / f"ray-{uuid.uuid4().hex[:12]}"
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def result_from_json(data: dict[str, Any]) -> EvaluationResult:
    """The inverse of `to_jsonable` for an EvaluationResult."""
    timing = data.get("timing")
    if timing is not None:
        timing = timing_from_json(timing)
    return EvaluationResult(
        **{
            **data,
            "status": Status(data["status"]),
            "cases": [CaseResult(**case) for case in data.get("cases", [])],
            "timing": timing,
        }
    )


def make_executor(name: str, target: str, address: str | None = None) -> Executor:
    if name == "local":
        if address:
            raise BadInput("--ray-address goes with --executor ray")
        return LocalExecutor(target)
    if name == "ray":
        return RayExecutor(target, address)
    raise BadInput(f"unknown executor {name!r}; use {' or '.join(EXECUTORS)}")
