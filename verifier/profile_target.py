"""The process ncu profiles: the candidate at the problem's shape, warmed up, called once.

Started under ncu as `python -m kernelwright.verifier.profile_target FD` in a scratch folder (an
isolated worker, like every process that runs candidate code). ncu sits between this process and
its parent, so the request and the answer travel as files in the working directory
(`job.json`, `result.json`) rather than over the worker channel.

ncu runs with `--profile-from-start off`: the build (a cache hit), the imports and the warm-up
launches are not profiled; only the one call between cudaProfilerStart and cudaProfilerStop is.
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Any

JOB = "job.json"
RESULT = "result.json"


def run(job: dict[str, Any]) -> dict[str, Any]:
    import torch
    from kernelwright.compiler import loader
    from kernelwright.verifier.cases import build, plan_cases

    if not torch.cuda.is_available():
        return {"error": "the profiling worker sees no CUDA device"}
    device = torch.device("cuda", torch.cuda.current_device())
    problem = loader.import_problem(Path(job["problem"]))
    loader.install_build_hooks(Path(job["builds_root"]), "cuda")
    candidate = loader.import_file(Path(job["candidate"]), "kw_candidate")
    case = plan_cases(problem, 1, int(job["seed"]))[0]
    model, inputs = build(problem, candidate.ModelNew, case, device, also_override=[candidate])
    with torch.no_grad():
        for _ in range(int(job["warmup"])):
            model(*inputs)
        torch.cuda.synchronize(device)
        torch.cuda.profiler.start()
        model(*inputs)
        torch.cuda.synchronize(device)
        torch.cuda.profiler.stop()
    props = torch.cuda.get_device_properties(device)
    return {"device_name": props.name, "capability": [props.major, props.minor]}


def main() -> None:
    try:
        result = run(json.loads(Path(JOB).read_text(encoding="utf-8")))
    except BaseException as exc:  # the candidate's failure is reported, never raised past here
        text = str(exc).strip().splitlines()
        message = f"{type(exc).__name__}: {text[0] if text else ''}"[:500]
        result = {"error": message, "traceback": traceback.format_exc()[-20_000:]}
    Path(RESULT).write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main()
