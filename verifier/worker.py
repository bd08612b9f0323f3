"""Evaluation worker: runs the reference or the candidate on seeded cases, and times them.

Started by `verifier.session` as `python -m kernelwright.verifier.worker FD`, isolated (see
`kernelwright.runner.isolation`). One request on stdin picks the mode:

- `reference`: imports the problem (never any candidate code), runs `Model` on every case under
  `no_grad` with TF32 off (an exact fp32 reference), writes CPU copies of the outputs and reports
  each. Failures of the problem's own code come back as `problem_error`.
- `candidate`: imports the problem and the candidate (its extensions already built), runs
  `ModelNew` on the cases the parent sends, writes the outputs and reports each; then waits. On
  `time` it builds fresh reference and candidate models at the problem's shape and times them
  interleaved (reference with PyTorch's default backend settings, both under `no_grad`).
- `compiled_reference` (`--compile-baseline`): imports the problem (never any candidate code),
  builds the first case's model twice, compiles one with `torch.compile` (default mode), makes
  the untimed calls that compile it, then times eager and compiled exactly as the candidate
  worker times reference and candidate. Any failure comes back as a one-line `note`.

Any exception in candidate code ends the worker after a `runtime_error` message: a CUDA error can
leave the context unusable, so a worker is never reused after one.
"""

from __future__ import annotations

import os
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from kernelwright.runner import isolation
from kernelwright.runner.isolation import PRELOAD, Channel


def _device(target: str) -> Any:
    import torch

    if target == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("target cuda, but this worker sees no CUDA device")
        return torch.device("cuda", torch.cuda.current_device())
    # One thread on the CPU target: both sides are timed the same way, and an OpenMP pool that
    # spins against other processes on a small machine made timings swing by 100x.
    torch.set_num_threads(1)
    return torch.device("cpu")


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _save(value: Any, path: Path) -> None:
    import torch
    from kernelwright.verifier.cases import to_cpu

    torch.save(to_cpu(value), path)


def run_reference(channel: Channel, request: dict[str, Any]) -> None:
    import torch
    from kernelwright.compiler.loader import import_problem
    from kernelwright.verifier.cases import (
        ProblemError,
        build,
        output_nbytes,
        overridden,
        plan_cases,
    )
    from kernelwright.verifier.guards import Rejected, check_inputs_unchanged, snapshot_inputs

    # An exact fp32 reference: TF32 would put ~1e-3 relative error into the expected values.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = _device(request["target"])
    out_dir = Path(request["out_dir"])
    try:
        problem = import_problem(Path(request["problem"]))
        cases = plan_cases(problem, request["trials"], request["seed"])
    except ProblemError as exc:
        channel.send({"kind": "problem_error", "message": str(exc)})
        return
    except Exception as exc:
        channel.send({"kind": "problem_error", "message": f"importing it raised {_short(exc)}"})
        return
    for case in cases:
        try:
            model, inputs = build(problem, problem.Model, case, device)
            pristine = snapshot_inputs(inputs)
            # a forward that reads a size global sees the case's value too
            with torch.no_grad(), overridden([problem], case.overrides):
                output = model(*inputs)
            _sync(device)
            try:
                check_inputs_unchanged(pristine, inputs)
                mutates = False
            except Rejected:
                mutates = True
            if case.index == 0:
                _check_repeatable(problem, case, device, output)
            path = out_dir / f"ref_{case.index}.pt"
            _save(output, path)
            wide_path = _save_wide(model, pristine, output, case, problem, out_dir / "ref")
        except ProblemError as exc:
            channel.send({"kind": "problem_error", "message": str(exc), "case": case.label})
            return
        except Exception as exc:
            message = f"the reference failed on {case.label}: {_short(exc)}"
            channel.send({"kind": "problem_error", "message": message, "traceback": _tb()})
            return
        sizes = output_nbytes(output)
        del model, inputs, output, pristine
        message = {"kind": "case", "case": case.to_message(), "path": str(path), "nbytes": sizes}
        channel.send({**message, "mutates_inputs": mutates, "wide_path": wide_path})
    channel.send({"kind": "done"})


def _save_wide(
    model: Any, inputs: list[Any], output: Any, case: Any, problem: Any, stem: Path
) -> str | None:
    """Where a low-precision output's float64 second opinion was saved (verifier/wide.py)."""
    import torch
    from kernelwright.verifier import wide
    from kernelwright.verifier.cases import overridden

    if not wide.needed(output):
        return None
    with torch.no_grad(), overridden([problem], case.overrides):
        rounded = wide.run(model, inputs, output)
    if rounded is None:
        return None
    path = stem.with_name(f"{stem.name}_{case.index}_wide.pt")
    _save(rounded, path)
    return str(path)


def _check_repeatable(problem: Any, case: Any, device: Any, output: Any) -> None:
    """Build and run the first case again from its seeds: outputs that differ mean randomness
    the seeds do not reach (a generator of its own, numpy's `default_rng()`, the clock), and
    every candidate would fail against them. (torch's, numpy's and Python's global generators
    are seeded before each case, so `torch.randn` in forward repeats.)"""
    import torch
    from kernelwright.verifier.cases import ProblemError, build, to_cpu
    from kernelwright.verifier.compare import compare
    from kernelwright.verifier.tolerances import Tolerance

    model, inputs = build(problem, problem.Model, case, device)
    with torch.no_grad():
        again = model(*inputs)
    _sync(device)
    same = compare(to_cpu(output), to_cpu(again), Tolerance())
    if not same.ok:
        raise ProblemError(
            f"the reference is not repeatable: run twice on {case.label} from the same seeds, "
            f"it gave different outputs ({same.reason}); draw random numbers from torch's, "
            "numpy's or Python's global generators, which kernelwright seeds"
        )


def run_compiled_reference(channel: Channel, request: dict[str, Any]) -> None:
    try:
        message = _time_compiled_reference(request)
    except BaseException as exc:
        message = {"note": f"{getattr(exc, 'kw_stage', 'torch.compile')} failed: {_short(exc)}"}
    channel.send({"kind": "compiled_reference", **message})


def spot_reference(channel: Channel, request: dict[str, Any]) -> None:
    """The reference's outputs on the inputs some timed calls of a candidate saw: drawn again
    from their seeds exactly as the candidate's worker drew them (`fresh_inputs`), with the
    model built as for the timing. No candidate code runs in this process."""
    import torch
    from kernelwright.compiler.loader import import_problem
    from kernelwright.verifier.cases import Case, build, inputs_for, overridden

    device = _device(request["target"])
    out_dir = Path(request["out_dir"])
    problem = import_problem(Path(request["problem"]))
    case = Case.from_message(request["case"])
    get_inputs = problem.get_inputs
    model, _ = build(problem, problem.Model, case, device)
    for number, seed in enumerate(request["seeds"]):
        inputs = inputs_for(problem, get_inputs, case, int(seed), device)
        pristine = [x.clone() if isinstance(x, torch.Tensor) else x for x in inputs]
        with torch.no_grad(), overridden([problem], case.overrides):
            output = model(*inputs)
        _sync(device)
        path = out_dir / f"spot_ref_{number}.pt"
        _save(output, path)
        stem = out_dir / f"spot_ref_{number}"
        wide_path = _save_wide(model, pristine, output, case, problem, stem)
        message = {"kind": "spot", "index": number, "path": str(path)}
        channel.send({**message, "wide_path": wide_path})
    channel.send({"kind": "done"})


def _time_compiled_reference(request: dict[str, Any]) -> dict[str, Any]:
    import torch
    from kernelwright.compiler.loader import import_problem
    from kernelwright.profiler import timing
    from kernelwright.records import to_jsonable
    from kernelwright.verifier import fresh_inputs
    from kernelwright.verifier.cases import build, clone_inputs, plan_cases

    device = _device(request["target"])
    with _stage("building the reference"):
        problem = import_problem(Path(request["problem"]))
        base = plan_cases(problem, request["trials"], request["seed"])[0]
        ref_model, ref_inputs = build(problem, problem.Model, base, device)
        comp_model, comp_inputs = build(problem, problem.Model, base, device)
        comp_inputs = clone_inputs(comp_inputs)  # each side its own inputs, as when timing
    with _stage("torch.compile"):
        compiled = torch.compile(comp_model)  # default mode
        started = time.perf_counter()
        # Warm-up that compiles (the first call; the second would catch a recompile): untimed.
        for _ in range(2):
            with torch.no_grad():
                compiled(*comp_inputs)
            _sync(device)
        compile_s = time.perf_counter() - started

    def eager() -> Any:
        with torch.no_grad():
            return ref_model(*ref_inputs)

    def compiled_call() -> Any:
        with torch.no_grad():
            return compiled(*comp_inputs)

    with _stage("timing torch.compile"):
        settings = timing.TimingSettings(**request.get("timing", {}))
        clock = timing.make_clock(device)
        inputs = (ref_inputs, comp_inputs)
        report, _ = fresh_inputs.measure(
            eager, compiled_call, clock, settings, problem, base, inputs, device
        )
    return {"report": to_jsonable(report), "compile_s": compile_s}


def run_candidate(channel: Channel, request: dict[str, Any]) -> None:
    try:
        _run_candidate(channel, request)
    except BaseException as exc:
        from kernelwright.verifier.guards import Rejected

        if isinstance(exc, Rejected):
            channel.send({"kind": "rejected", "check": exc.check, "message": exc.message})
        else:
            stage = getattr(exc, "kw_stage", "importing the candidate")
            message = {"kind": "runtime_error", "stage": stage, "message": _short(exc)}
            channel.send({**message, "traceback": _tb()})


def _run_candidate(channel: Channel, request: dict[str, Any]) -> None:
    import torch
    from kernelwright.compiler import loader
    from kernelwright.profiler import environment, timing
    from kernelwright.profiler.ncu import kernel_regex
    from kernelwright.records import to_jsonable
    from kernelwright.verifier import cases as cases_module
    from kernelwright.verifier import fresh_inputs, guards
    from kernelwright.verifier.cases import Case, build, clone_inputs, overridden, refill

    device = _device(request["target"])
    out_dir = Path(request["out_dir"])
    # The kernel-launch check (cuda) and candidates that use torch.library or torch.compiler
    # import dynamo, which rebinds torch.manual_seed: import it before the snapshot.
    guards.settle_torch()
    # The problem is the user's own code: whatever it rebinds on import is part of the baseline.
    problem = loader.import_problem(Path(request["problem"]))
    # Also this worker's own functions, the channel, and the reference it times against.
    harness = [timing, cases_module, fresh_inputs, guards, loader, isolation, sys.modules[__name__]]
    guard = guards.HarnessGuard([*harness, problem.Model], frozen=[problem])
    # compiled before the candidate runs: a Pattern's methods cannot be rebound from Python
    kernels = [re.compile(kernel_regex(name)) for name in request.get("kernels", [])]
    loader.install_build_hooks(Path(request["builds_root"]), request["target"])
    candidate = loader.import_file(Path(request["candidate"]), "kw_candidate")
    guard.check()
    model_new = candidate.ModelNew
    all_cases = [Case.from_message(raw) for raw in request["cases"]]
    sizes = {int(k): v for k, v in request.get("nbytes", {}).items()}
    # Where the reference itself writes into its inputs, the candidate may too.
    mutating = set(request.get("mutating_cases", []))

    def checked_call(model: Any, inputs: list[Any], case: Case) -> Any:
        pristine = guards.snapshot_inputs(inputs) if case.index not in mutating else None
        guards.poison(device, sizes.get(case.index, []))
        with torch.no_grad(), overridden([problem, candidate], case.overrides):
            output = model(*inputs)
        _sync(device)
        guards.check_outputs(output, device)
        if pristine is not None:
            guards.check_inputs_unchanged(pristine, inputs)
        guard.check()
        return output

    for case in (c for c in all_cases if not c.after_timing):
        with _stage(f"running ModelNew on {case.label}"):
            model, inputs = build(problem, model_new, case, device, also_override=[candidate])
            output = checked_call(model, inputs, case)
            path = out_dir / f"cand_{case.index}.pt"
            _save(output, path)
            del model, inputs, output
        channel.send({"kind": "case", "index": case.index, "path": str(path)})
    channel.send({"kind": "outputs_done"})

    command = channel.recv()
    if not command or command.get("cmd") != "time":
        return
    with _stage("timing"):
        base = all_cases[0]
        ref_model, ref_inputs = build(problem, problem.Model, base, device)
        cand_model, cand_inputs = build(problem, model_new, base, device, also_override=[candidate])
        cand_inputs = clone_inputs(cand_inputs)  # never the same storage as the reference's

        def reference() -> Any:
            with torch.no_grad():
                return ref_model(*ref_inputs)

        def candidate_call() -> Any:
            with torch.no_grad():
                return cand_model(*cand_inputs)

        # The reference runs in this process only here: what it starts is not the candidate's.
        guard.allow_threads_of(lambda: (reference(), _sync(device)))

        settings = timing.TimingSettings(**request.get("timing", {}))
        clock = timing.make_clock(device)
        inputs = (ref_inputs, cand_inputs)
        before = environment.nvml_reading(device) if device.type == "cuda" else None
        spot_checks = int(request.get("spot_checks", 0))
        report, spots = fresh_inputs.measure(
            reference, candidate_call, clock, settings, problem, base, inputs, device, spot_checks
        )
        after = environment.nvml_reading(device) if device.type == "cuda" else None
        guard.check()
        warnings = []
        if device.type == "cuda":
            _check_hidden_work(report)
            warnings += _check_own_kernels(candidate_call, kernels)
    for case in (c for c in all_cases if c.after_timing):
        with _stage(case.label):
            _, fresh = build(problem, problem.Model, case, device)
            refill(cand_inputs, fresh, device)  # same addresses as timed, new values
            _sync(device)
            output = checked_call(cand_model, cand_inputs, case)
            path = out_dir / f"cand_{case.index}.pt"
            _save(output, path)
        channel.send({"kind": "recheck", "index": case.index, "path": str(path)})
    for number, (seed, output) in enumerate(spots):  # checked by the parent, on a clean reference
        path = out_dir / f"spot_{number}.pt"
        _save(output, path)
        channel.send({"kind": "spot", "index": number, "seed": seed, "path": str(path)})
    env = environment.record(device, before, after)
    message = {"kind": "timing", "report": to_jsonable(report), "environment": env}
    channel.send({**message, "warnings": warnings})


class _stage:
    """Labels an exception escaping the block with what the worker was doing."""

    def __init__(self, label: str) -> None:
        self.label = label

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and not hasattr(exc, "kw_stage"):
            try:
                exc.kw_stage = self.label  # type: ignore[union-attr]
            except AttributeError:
                pass


def _check_hidden_work(report: Any) -> None:
    """Event time far below host wall time: work ran off the timed stream or on the host."""
    from kernelwright.verifier.guards import Rejected

    event_ms = report.candidate.median_ms
    host_ms = report.host_candidate_ms
    if host_ms > 3 * event_ms + 0.1:
        raise Rejected(
            "hidden_work",
            f"a synchronised call takes {host_ms:.3f} ms of wall time but only {event_ms:.3f} ms "
            "between its stream's events: work runs on another stream or on the host",
        )


def _check_own_kernels(call: Any, kernels: list[re.Pattern[str]]) -> list[dict[str, Any]]:
    """The candidate's own __global__ kernels must be among those a call launches."""
    import torch
    from kernelwright.verifier.guards import Rejected
    from torch.profiler import ProfilerActivity, profile

    if not kernels:
        return []
    try:
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            call()
            torch.cuda.synchronize()
        launched = {event.key for event in prof.key_averages()}
    except Exception as exc:  # a profiler that cannot start must not fail the candidate
        message = f"could not profile: {_short(exc)}"
        return [{"check": "kernel_launch_check", "severity": "warn", "message": message}]
    if not any(kernel.search(key) for kernel in kernels for key in launched):
        shown = ", ".join(sorted(launched)[:5]) or "none"
        raise Rejected(
            "own_kernels_not_launched",
            f"none of its kernels ({', '.join(k.pattern for k in kernels[:5])}) ran; "
            f"launched: {shown}",
        )
    return []


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


def _tb() -> str:
    return traceback.format_exc()[-20_000:]


def main() -> None:
    channel = Channel.from_argv()
    if os.environ.get(PRELOAD) == "torch":  # started ahead of its job: be ready when it comes
        try:
            import torch  # noqa: F401
            from kernelwright.verifier.guards import settle_torch

            settle_torch()
        except Exception:  # the job itself reports a broken torch, with its traceback
            pass
    request = channel.recv()
    if request is None:
        return
    if request["mode"] == "reference":
        run_reference(channel, request)
    elif request["mode"] == "compiled_reference":
        run_compiled_reference(channel, request)
    elif request["mode"] == "spot_reference":
        try:
            spot_reference(channel, request)
        except Exception as exc:
            channel.send({"kind": "spot_error", "message": _short(exc)})
    else:
        run_candidate(channel, request)


if __name__ == "__main__":
    try:
        main()
    finally:
        # Skip interpreter teardown: after a CUDA fault, destructors can hang or crash.
        os._exit(0)
