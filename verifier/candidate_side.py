"""The candidate's worker: runs `ModelNew` on the checked cases, then its timed side.

Started by `verifier.session` through `verifier.worker` (mode `candidate`). It imports the
problem and the candidate (its extensions already built), runs `ModelNew` on the cases the
parent sends and writes each output where the parent said; then waits. On `Time` it builds the
timed model at the problem's shape and serves the parent's timing commands (`sampler.serve`);
the reference is never built, run or timed in this process. After `EndTiming` it runs the
re-checks on the timed tensors, writes the outputs kept for spot checks (cuda; on the CPU the
parent reads them from memory itself) and ends with `TimingEnd`.

Nothing this process says decides its verdict by itself: the parent compares every output, times
every sample with its own clock, and checks what it is told against what it sees from outside.
The in-process guards here (`guards.HarnessGuard`, the kernel-launch check) are a cheap first
line that names the trick where it is a simple one.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from kernelwright.check_names import Check
from kernelwright.runner import isolation
from kernelwright.runner.isolation import Channel
from kernelwright.verifier import protocol
from kernelwright.verifier.worker_common import device_for, save, short, stage, sync, traceback_tail


def run_candidate(channel: Channel, request: dict[str, Any]) -> None:
    from kernelwright.verifier.guards import Rejected

    try:
        _run_candidate(channel, request)
    except BaseException as exc:
        if isinstance(exc, Rejected):
            record: protocol.Record = protocol.Rejected(check=exc.check, message=exc.message)
        else:
            where = getattr(exc, "kw_stage", "importing the candidate")
            record = protocol.RuntimeFailure(
                stage=where, message=short(exc), traceback=traceback_tail()
            )
        channel.send_line(protocol.dumps(record))


def _run_candidate(channel: Channel, request: dict[str, Any]) -> None:
    import torch
    from kernelwright.compiler import loader
    from kernelwright.profiler import environment, timing
    from kernelwright.profiler.ncu import kernel_regex
    from kernelwright.verifier import cases as cases_module
    from kernelwright.verifier import guards, op_record, sampler
    from kernelwright.verifier.cases import Case, build, overridden, refill

    device = device_for(request["target"])
    out_dir = Path(request["out_dir"])
    # The kernel-launch check (cuda) and candidates that use torch.library or torch.compiler
    # import dynamo, which rebinds torch.manual_seed: import it before the snapshot.
    guards.settle_torch()
    problem = loader.import_problem(Path(request["problem"]))
    op_record.make_recorder()  # made before the guard's snapshot, which then holds it still
    harness = [timing, cases_module, sampler, guards, loader, isolation, protocol, op_record]
    guard = guards.HarnessGuard([*harness, sys.modules[__name__]], frozen=[problem])
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

    def checked_call(model: Any, inputs: list[Any], case: Case) -> tuple[Any, list[Any]]:
        """The output, and the ops the call dispatched (`op_record`)."""
        pristine = guards.snapshot_inputs(inputs) if case.index not in mutating else None
        guards.poison(device, sizes.get(case.index, []))
        with torch.no_grad(), overridden([problem, candidate], case.overrides):
            try:
                output, ops = op_record.record_call(lambda: model(*inputs))
            except op_record.Tampered as exc:
                raise guards.Rejected(Check.OP_RECORD_TAMPERED, str(exc)) from None
        sync(device)
        guards.check_outputs(output, device)
        if pristine is not None:
            guards.check_inputs_unchanged(pristine, inputs)
        guard.check()
        return output, ops

    for case in (c for c in all_cases if not c.after_timing):
        with stage(f"running ModelNew on {case.label}"):
            model, inputs = build(problem, model_new, case, device, also_override=[candidate])
            output, ops = checked_call(model, inputs, case)
            path = out_dir / f"cand_{case.index}.pt"
            save(output, path)
            del model, inputs, output
        record = protocol.CaseOutput(index=case.index, path=str(path), ops=_seen(ops))
        channel.send_line(protocol.dumps(record))
    channel.send_line(protocol.dumps(protocol.OutputsDone()))

    line = channel.recv_line()
    if line is None or not isinstance(protocol.decode(line), protocol.Time):
        return
    with stage("timing"):
        base = all_cases[0]
        cand_model, cand_inputs = build(problem, model_new, base, device, also_override=[candidate])

        def candidate_call() -> Any:
            with torch.no_grad():
                return cand_model(*cand_inputs)

        clock = timing.make_clock(device)
        side = sampler.Side(candidate_call, cand_inputs, problem, base, device, clock)
        before = environment.nvml_reading(device) if device.type == "cuda" else None
        channel.send_line(protocol.dumps(protocol.Ready()))  # built: the parent may warm it up
        kept = sampler.serve(channel, side)
        after = environment.nvml_reading(device) if device.type == "cuda" else None
        guard.check()
        notes: list[protocol.Note] = []
        if device.type == "cuda":
            notes += _check_own_kernels(candidate_call, kernels)
    for case in (c for c in all_cases if c.after_timing):
        with stage(case.label):
            _, fresh = build(problem, problem.Model, case, device)
            refill(cand_inputs, fresh, device)  # same addresses as timed, new values
            sync(device)
            output, _ = checked_call(cand_model, cand_inputs, case)
            path = out_dir / f"cand_{case.index}.pt"
            save(output, path)
        record = protocol.RecheckOutput(index=case.index, path=str(path))
        channel.send_line(protocol.dumps(record))
    for number, output in enumerate(kept):  # cuda: compared by the parent with the reference's
        path = out_dir / f"spot_{number}.pt"
        save(output, path)
        channel.send_line(protocol.dumps(protocol.SpotOutput(index=number, path=str(path))))
    env = environment.record(device, before, after)
    plain = {k: v for k, v in env.items() if v is None or isinstance(v, str | int | float | bool)}
    end = protocol.TimingEnd(environment=plain, warnings=tuple(notes))
    channel.send_line(protocol.dumps(end))


def _seen(ops: list[Any]) -> tuple[protocol.OpSeen, ...]:
    """The record as the protocol carries it: the heaviest ops first, at most MAX_OPS."""
    from kernelwright.verifier.op_record import WORK_CAP

    heaviest = sorted(ops, key=lambda op: -op.work)[:MAX_OPS]
    return tuple(
        protocol.OpSeen(op.name[:200], op.calls, min(op.work, WORK_CAP)) for op in heaviest
    )


MAX_OPS = 512


def _check_own_kernels(call: Any, kernels: list[re.Pattern[str]]) -> list[protocol.Note]:
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
        return [
            protocol.Note(check="kernel_launch_check", message=f"could not profile: {short(exc)}")
        ]
    if not any(kernel.search(key) for kernel in kernels for key in launched):
        shown = ", ".join(sorted(launched)[:5]) or "none"
        raise Rejected(
            "own_kernels_not_launched",
            f"none of its kernels ({', '.join(k.pattern for k in kernels[:5])}) ran; "
            f"launched: {shown}",
        )
    return []
