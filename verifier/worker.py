"""Evaluation worker: runs the reference or the candidate on seeded cases, and times them.

Started by `verifier.session` as `python -m kernelwright.verifier.worker FD`, isolated (see
`kernelwright.isolation`). One request on stdin picks the mode:

- `reference`: imports the problem (never any candidate code), runs `Model` on every case under
  `no_grad` with TF32 off (an exact fp32 reference), writes CPU copies of the outputs and reports
  each. Failures of the problem's own code come back as `problem_error`.
- `candidate`: imports the problem and the candidate (its extensions already built), runs
  `ModelNew` on the cases the parent sends, writes the outputs and reports each; then waits. On
  `time` it builds fresh reference and candidate models at the problem's shape and times them
  interleaved (reference with PyTorch's default backend settings, both under `no_grad`).

Any exception in candidate code ends the worker after a `runtime_error` message: a CUDA error can
leave the context unusable, so a worker is never reused after one.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Any

from kernelwright.isolation import Channel


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
    from kernelwright.compiler.loader import import_file
    from kernelwright.verifier.cases import ProblemError, build, plan_cases

    # An exact fp32 reference: TF32 would put ~1e-3 relative error into the expected values.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = _device(request["target"])
    out_dir = Path(request["out_dir"])
    try:
        problem = import_file(Path(request["problem"]), "kw_problem")
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
            with torch.no_grad():
                output = model(*inputs)
            _sync(device)
            path = out_dir / f"ref_{case.index}.pt"
            _save(output, path)
        except ProblemError as exc:
            channel.send({"kind": "problem_error", "message": str(exc), "case": case.label})
            return
        except Exception as exc:
            message = f"the reference failed on {case.label}: {_short(exc)}"
            channel.send({"kind": "problem_error", "message": message, "traceback": _tb()})
            return
        del model, inputs, output
        channel.send({"kind": "case", "case": case.to_message(), "path": str(path)})
    channel.send({"kind": "done"})


def run_candidate(channel: Channel, request: dict[str, Any]) -> None:
    import torch
    from kernelwright.compiler import loader
    from kernelwright.profiler import environment, timing
    from kernelwright.verifier.cases import Case, build, clone_inputs

    device = _device(request["target"])
    out_dir = Path(request["out_dir"])
    stage = "importing the candidate"
    try:
        problem = loader.import_file(Path(request["problem"]), "kw_problem")
        candidate_path = Path(request["candidate"])
        source = candidate_path.read_text(encoding="utf-8")
        key = loader.build_key(source, request["target"])
        with loader.locked_build_dir(Path(request["builds_root"]), key) as (build_dir, _):
            loader.install_build_hooks(build_dir)
            candidate = loader.import_file(candidate_path, "kw_candidate")
            loader.mark_complete(build_dir)
        model_new = candidate.ModelNew
        for raw in request["cases"]:
            case = Case.from_message(raw)
            stage = f"running ModelNew on {case.label}"
            model, inputs = build(problem, model_new, case, device, also_override=[candidate])
            with torch.no_grad():
                output = model(*inputs)
            _sync(device)
            path = out_dir / f"cand_{case.index}.pt"
            _save(output, path)
            del model, inputs, output
            channel.send({"kind": "case", "index": case.index, "path": str(path)})
        channel.send({"kind": "outputs_done"})

        command = channel.recv()
        if not command or command.get("cmd") != "time":
            return
        stage = "timing"
        base = Case.from_message(request["cases"][0])
        ref_model, ref_inputs = build(problem, problem.Model, base, device)
        cand_model, cand_inputs = build(problem, model_new, base, device, also_override=[candidate])
        cand_inputs = clone_inputs(cand_inputs)  # never the same storage as the reference's

        def reference() -> Any:
            with torch.no_grad():
                return ref_model(*ref_inputs)

        def candidate_call() -> Any:
            with torch.no_grad():
                return cand_model(*cand_inputs)

        settings = timing.TimingSettings(**request.get("timing", {}))
        clock = timing.make_clock(device)
        before = environment.nvml_reading(device) if device.type == "cuda" else None
        report = timing.measure(reference, candidate_call, clock, settings)
        after = environment.nvml_reading(device) if device.type == "cuda" else None
        from kernelwright.records import to_jsonable

        channel.send(
            {
                "kind": "timing",
                "report": to_jsonable(report),
                "environment": environment.record(device, before, after),
            }
        )
    except BaseException as exc:
        channel.send(
            {"kind": "runtime_error", "stage": stage, "message": _short(exc), "traceback": _tb()}
        )


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


def _tb() -> str:
    return traceback.format_exc()[-20_000:]


def main() -> None:
    channel = Channel.from_argv()
    request = channel.recv()
    if request is None:
        return
    if request["mode"] == "reference":
        run_reference(channel, request)
    else:
        run_candidate(channel, request)


if __name__ == "__main__":
    try:
        main()
    finally:
        # Skip interpreter teardown: after a CUDA fault, destructors can hang or crash.
        os._exit(0)
