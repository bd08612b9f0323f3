"""Evaluation worker: runs the reference or the candidate on seeded cases, and times one side.

Started by `verifier.session` as `python -m kernelwright.verifier.worker FD`, isolated (see
`kernelwright.runner.isolation`). One request on stdin picks the mode; every message back is a
`verifier.protocol` record:

- `reference`: imports the problem (never any candidate code), runs `Model` on every case under
  `no_grad` with TF32 off (an exact fp32 reference), writes CPU copies of the outputs and reports
  each. Failures of the problem's own code come back as `ProblemFailure`.
- `reference_timer`: the reference's side of a timing, in a process that never loads candidate
  code: builds `Model` at the problem's shape (PyTorch's default backend settings) and serves the
  parent's timing commands (`sampler.serve`); afterwards it writes the reference's outputs for the
  input seeds of the candidate's spot-checked calls, says `Finished`, and waits for the next
  candidate's job (`verifier.timer_pool` keeps such a process for the problem's next candidates).
- `candidate`: see `verifier.candidate_side`.
- `compiled_reference` (`--compile-baseline`): imports the problem (never any candidate code),
  builds the first case's model twice, compiles one with `torch.compile` (default mode), makes
  the untimed calls that compile it, then times eager and compiled in this process (both
  trusted). Any failure comes back as a one-line note.

Any exception in candidate code ends the worker after a `RuntimeFailure` record: a CUDA error can
leave the context unusable, so a worker is never reused after one.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from kernelwright.runner.isolation import PRELOAD, READY_LINE, Channel
from kernelwright.verifier import protocol
from kernelwright.verifier.worker_common import device_for, save, short, stage, sync, traceback_tail


def run_reference(channel: Channel, request: dict[str, Any]) -> None:
    import torch
    from kernelwright.compiler.loader import import_problem
    from kernelwright.verifier import op_record
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
    device = device_for(request["target"])
    out_dir = Path(request["out_dir"])
    try:
        problem = import_problem(Path(request["problem"]))
        cases = plan_cases(problem, request["trials"], request["seed"])
    except ProblemError as exc:
        _send(channel, protocol.ProblemFailure(message=str(exc)))
        return
    except Exception as exc:
        _send(channel, protocol.ProblemFailure(message=f"importing it raised {short(exc)}"))
        return
    for case in cases:
        try:
            model, inputs = build(problem, problem.Model, case, device)
            pristine = snapshot_inputs(inputs)
            # a forward that reads a size global sees the case's value too
            with torch.no_grad(), overridden([problem], case.overrides):
                # what the reference dispatches is the measure of the candidate's (op_record)
                output, ops = op_record.record_call(lambda m=model, i=inputs: m(*i))
            sync(device)
            work = op_record.torch_work(ops)
            try:
                check_inputs_unchanged(pristine, inputs)
                mutates = False
            except Rejected:
                mutates = True
            if case.index == 0:
                _check_repeatable(problem, case, device, output)
            path = out_dir / f"ref_{case.index}.pt"
            save(output, path)
            wide_path = _save_wide(model, pristine, output, case, problem, out_dir / "ref")
        except ProblemError as exc:
            _send(channel, protocol.ProblemFailure(message=str(exc), case=case.label))
            return
        except Exception as exc:
            message = f"the reference failed on {case.label}: {short(exc)}"
            _send(channel, protocol.ProblemFailure(message=message, traceback=traceback_tail()))
            return
        sizes = output_nbytes(output)
        del model, inputs, output, pristine
        record = protocol.ReferenceCase(
            case=case.to_message(),
            path=str(path),
            nbytes=tuple(sizes),
            mutates_inputs=mutates,
            wide_path=wide_path,
            work=min(work, op_record.WORK_CAP),
        )
        _send(channel, record)
    _send(channel, protocol.Finished())


def _send(channel: Channel, record: protocol.Record) -> None:
    channel.send_line(protocol.dumps(record))


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
    save(rounded, path)
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
    sync(device)
    same = compare(to_cpu(output), to_cpu(again), Tolerance())
    if not same.ok:
        raise ProblemError(
            f"the reference is not repeatable: run twice on {case.label} from the same seeds, "
            f"it gave different outputs ({same.reason}); draw random numbers from torch's, "
            "numpy's or Python's global generators, which kernelwright seeds"
        )


def run_compiled_reference(channel: Channel, request: dict[str, Any]) -> None:
    try:
        record = _time_compiled_reference(request)
    except BaseException as exc:
        note = f"{getattr(exc, 'kw_stage', 'torch.compile')} failed: {short(exc)}"
        record = protocol.CompiledTiming(note=note)
    _send(channel, record)


def run_reference_timer(channel: Channel, request: dict[str, Any]) -> None:
    """The reference's timed side, then its outputs for the candidate's spot-checked seeds. No
    candidate code runs in this process: what it reports is believed."""
    import torch
    from kernelwright.compiler.loader import import_problem
    from kernelwright.profiler import timing
    from kernelwright.verifier import guards, sampler
    from kernelwright.verifier.cases import Case, build, inputs_for, overridden

    device = device_for(request["target"])
    out_dir = Path(request["out_dir"])
    guards.settle_torch()  # as the candidate's worker does: the two sides import alike
    problem = import_problem(Path(request["problem"]))
    case = Case.from_message(request["case"])
    model, inputs = build(problem, problem.Model, case, device)

    def reference() -> Any:
        with torch.no_grad():
            return model(*inputs)

    side = sampler.Side(reference, inputs, problem, case, device, timing.make_clock(device))
    _send(channel, protocol.Ready())
    sampler.serve(channel, side)
    _send(channel, protocol.TimingEnd())
    line = channel.recv_line()
    command = protocol.decode(line) if line is not None else None
    if not isinstance(command, protocol.SpotSeeds):
        return
    get_inputs = problem.get_inputs
    for number, seed in enumerate(command.seeds):
        fresh = inputs_for(problem, get_inputs, case, seed, device)
        pristine = [x.clone() if isinstance(x, torch.Tensor) else x for x in fresh]
        with torch.no_grad(), overridden([problem], case.overrides):
            output = model(*fresh)
        sync(device)
        path = out_dir / f"spot_ref_{number}.pt"
        save(output, path)
        stem = out_dir / f"spot_ref_{number}"
        wide_path = _save_wide(model, pristine, output, case, problem, stem)
        _send(channel, protocol.SpotOutput(index=number, path=str(path), wide_path=wide_path))
    _send(channel, protocol.Finished())


def serve_reference_timer(channel: Channel, request: dict[str, Any] | None) -> None:
    """One timing job after another, for as long as the parent sends them (`timer_pool`: the
    same problem's candidates share this process, which never runs candidate code). Each job
    builds its model afresh, so a candidate is timed against the same reference state as if the
    process were new; a job that failed ends the process (its state is unknown)."""
    while request is not None and request.get("mode") == "reference_timer":
        try:
            run_reference_timer(channel, request)
        except Exception as exc:
            _send(channel, protocol.SpotFailure(message=short(exc)))
            return
        _release_memory(request["target"])
        request = channel.recv()


def _release_memory(target: str) -> None:
    """Give back what the finished job held (its model and inputs are gone with its frame), so
    an idle timer keeps no device memory the next candidate may need."""
    import gc

    gc.collect()
    if target == "cuda":
        import torch

        torch.cuda.empty_cache()


def _time_compiled_reference(request: dict[str, Any]) -> protocol.CompiledTiming:
    import torch
    from kernelwright.compiler.loader import import_problem
    from kernelwright.profiler import timing
    from kernelwright.records import to_jsonable
    from kernelwright.verifier import fresh_inputs
    from kernelwright.verifier.cases import build, clone_inputs, plan_cases

    device = device_for(request["target"])
    with stage("building the reference"):
        problem = import_problem(Path(request["problem"]))
        base = plan_cases(problem, request["trials"], request["seed"])[0]
        ref_model, ref_inputs = build(problem, problem.Model, base, device)
        comp_model, comp_inputs = build(problem, problem.Model, base, device)
        comp_inputs = clone_inputs(comp_inputs)  # each side its own inputs, as when timing
    with stage("torch.compile"):
        compiled = torch.compile(comp_model)  # default mode
        started = time.perf_counter()
        # Warm-up that compiles (the first call; the second would catch a recompile): untimed.
        for _ in range(2):
            with torch.no_grad():
                compiled(*comp_inputs)
            sync(device)
        compile_s = time.perf_counter() - started

    def eager() -> Any:
        with torch.no_grad():
            return ref_model(*ref_inputs)

    def compiled_call() -> Any:
        with torch.no_grad():
            return compiled(*comp_inputs)

    with stage("timing torch.compile"):
        settings = timing.TimingSettings(**request.get("timing", {}))
        clock = timing.make_clock(device)
        inputs = (ref_inputs, comp_inputs)
        report = fresh_inputs.measure(
            eager, compiled_call, clock, settings, problem, base, inputs, device
        )
    return protocol.CompiledTiming(report=json.dumps(to_jsonable(report)), compile_s=compile_s)


def main() -> None:
    channel = Channel.from_argv()
    try:  # every job needs torch; importing it is the start, not the job (see READY_LINE)
        import torch  # noqa: F401

        if os.environ.get(PRELOAD) == "torch":  # started ahead of its job
            from kernelwright.verifier.guards import settle_torch

            settle_torch()
    except Exception:  # the job itself reports a broken torch, with its traceback
        pass
    channel.send_line(READY_LINE)
    request = channel.recv()
    if request is None:
        return
    if request["mode"] == "reference":
        run_reference(channel, request)
    elif request["mode"] == "compiled_reference":
        run_compiled_reference(channel, request)
    elif request["mode"] == "reference_timer":
        serve_reference_timer(channel, request)
    else:
        from kernelwright.verifier.candidate_side import run_candidate

        run_candidate(channel, request)


if __name__ == "__main__":
    try:
        main()
    finally:
        # Skip interpreter teardown: after a CUDA fault, destructors can hang or crash.
        os._exit(0)
