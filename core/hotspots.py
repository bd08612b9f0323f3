"""`kernelwright hotspots`: where a whole model's time goes, and problems for its hot modules.

The model (`module.py:Class` with `--inputs`, as `optimize` takes it) is wrapped as a problem
(`user_problem.resolve_problem`) and measured in an isolated worker (`hotspots_worker`): no user
code runs in this process. Here the answer is grouped, ranked and written out:

- *units*: the modules a problem is written for. Walking the model from the top, a module
  defined outside torch that holds no other such module (an `Attention`, an `MLP`) is a unit, and
  so is a torch.nn layer that is not inside a unit (a `LayerNorm` directly under a block);
  containers (`Sequential`, `ModuleList`) and user modules holding user modules (a `Block`) are
  looked into, never written themselves; units never overlap, so their shares add up;
- *groups*: units of one type, with the same constructor arguments and the same inputs, are one
  problem with a count; groups are ranked by their instances' total time per forward;
- a problem is KernelBench's format: `Model` is a subclass of the unit's class (the user's module
  inlined verbatim, or `torch.nn.<Layer>`), `get_inputs()` makes tensors of the dtypes and shapes
  seen in the model, `get_init_inputs()` the constructor arguments, recovered from the module's
  own recorded constructor call (every `__init__` is recorded while the model is built), or, for
  torch.nn layers whose call had arguments that are not literals, read back from the layer's
  attributes; a unit whose arguments cannot be recovered, or that is called with keyword or
  non-tensor arguments, is listed as skipped with the reason. A `# kernelwright-hotspot:` line
  carries what `kernelwright apply` needs (the type, the paths of its instances, its share).
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelwright import paths
from kernelwright.errors import BadInput, KernelwrightError
from kernelwright.user_problem import _input_entry, resolve_problem

MARKER = "# kernelwright-hotspot: "
CONTAINERS = {"Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict"}
DEFAULT_TIMEOUT_S = 300.0
WORKER = "kernelwright.hotspots_worker"


@dataclass
class Group:
    """Units of one type with the same constructor arguments and inputs: one problem."""

    type: str
    module: str
    torch_nn: bool
    init: list[Any] | None
    how: str | None
    signature: dict[str, Any]
    paths: list[str] = field(default_factory=list)
    total_us: float = 0.0
    self_us: float = 0.0
    calls: int = 0
    notes: list[str] = field(default_factory=list)
    skipped: str = ""

    @property
    def count(self) -> int:
        return len(self.paths)


def measure(
    problem: Path, target: str, timeout_s: float = DEFAULT_TIMEOUT_S, repeats: int = 5
) -> dict[str, Any]:
    """The worker's answer for the model wrapped as `problem` (BadInput when the model fails)."""
    from kernelwright.runner.isolation import Worker, WorkerOverLimit, WorkerTimeout
    from kernelwright.runner.snapshot import snapshot

    problem = snapshot(problem)
    scratch = paths.scratch_dir() / f"hotspots-{uuid.uuid4().hex[:12]}"
    answer: dict[str, Any] | None = None
    try:
        with Worker(WORKER, scratch, deadline_s=timeout_s) as worker:
            worker.send({"problem": str(problem), "target": target, "repeats": repeats, "seed": 42})
            try:
                answer = worker.recv()
            except WorkerTimeout:
                raise BadInput(
                    f"the model did not finish {2 * repeats + 1} forward passes within "
                    f"{timeout_s:g} s; use smaller --inputs"
                ) from None
            except WorkerOverLimit as exc:
                raise BadInput(f"the model {exc}") from None
            end = worker.finish()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if answer is None:
        raise KernelwrightError(f"the hotspots worker {end.describe()}: {end.stderr[-500:]}")
    if answer.get("kind") == "failed":
        raise BadInput(f"the model failed in the worker: {answer.get('message')}")
    if answer.get("kind") != "hotspots":
        raise KernelwrightError("the hotspots worker answered something else")
    return answer


def units(modules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The modules problems are written for (see the module docstring); in model order."""
    chosen: list[dict[str, Any]] = []
    for entry in modules:
        path = entry["path"]
        if not path or entry["calls"] == 0 or entry["type"] in CONTAINERS:
            continue
        if any(path.startswith(c["path"] + ".") for c in chosen):
            continue
        if entry["torch_nn"] or not entry["user_children"]:
            chosen.append(entry)
    return chosen


def group(chosen: list[dict[str, Any]]) -> list[Group]:
    """Units grouped by (type, constructor arguments, inputs), hottest first."""
    groups: dict[str, Group] = {}
    for entry in chosen:
        init = entry.get("init") or {}
        signature = entry["signatures"][0] if entry["signatures"] else {"args": [], "kwargs": []}
        key = json.dumps([entry["module"], entry["type"], init.get("args"), signature])
        g = groups.get(key)
        if g is None:
            g = groups[key] = Group(
                type=entry["type"],
                module=entry["module"],
                torch_nn=entry["torch_nn"],
                init=init.get("args"),
                how=init.get("how"),
                signature=signature,
            )
            g.skipped = _unwritable(entry, init, signature)
        g.paths.append(entry["path"])
        g.total_us += entry["total_us"]
        g.self_us += entry["self_us"]
        g.calls += entry["calls"]
        if len(entry["signatures"]) > 1:
            g.notes.append(f"{entry['path']} is called with different inputs; the first are used")
    return sorted(groups.values(), key=lambda g: -g.total_us)


def _unwritable(entry: dict[str, Any], init: dict[str, Any], signature: dict[str, Any]) -> str:
    if init.get("args") is None:
        return f"constructor arguments not recovered: {init.get('why', 'unknown')}"
    if signature["kwargs"]:
        names = ", ".join(signature["kwargs"])
        return f"called with keyword arguments ({names}); problems pass inputs positionally"
    other = [a.get("type", "?") for a in signature["args"] if a["kind"] == "other"]
    if other:
        return f"called with inputs that are neither tensors nor numbers ({', '.join(other)})"
    if not entry["torch_nn"] and entry["module"] != "kw_problem":
        return f"its class comes from module {entry['module']}, not from the model's own file"
    return ""


def _spec(arg: dict[str, Any]) -> str:
    if arg["kind"] == "number":
        return repr(arg["value"])
    return f"{arg['dtype']}[{','.join(str(d) for d in arg['shape'])}]"


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def problem_text(
    g: Group, model_ref: str, model_file: Path, inputs: str, forward_us: float, meta: dict
) -> str:
    share = g.total_us / forward_us if forward_us else 0.0
    own = g.self_us / forward_us if forward_us else 0.0
    seen = " ".join(_spec(a) for a in g.signature["args"])
    strided = [i for i, a in enumerate(g.signature["args"]) if a.get("contiguous") is False]
    lines = [
        f"# Generated by `kernelwright hotspots` from {model_ref} (inputs: {inputs}).",
        f"# Module {g.type}: {g.count} instance(s) with the same constructor arguments and inputs,",
        f"# at {', '.join(g.paths)} in the model.",
        f"# {share:.1%} of the forward's time in these instances ({own:.1%} outside their "
        "submodules).",
        f"# Constructor arguments {g.init!r}: {g.how}.",
        f"# Inputs seen in the model: {seen or 'none'}"
        + (f" (argument(s) {strided} not contiguous there)" if strided else "")
        + ".",
        MARKER + json.dumps(meta, sort_keys=True),
    ]
    head = "\n".join(lines) + "\n"
    entries = [_input_entry(_spec(a)) for a in g.signature["args"]]
    tail = (
        f"\n\ndef get_inputs():\n    return [{', '.join(entries)}]\n\n\n"
        f"def get_init_inputs():\n    return {g.init!r}\n"
    )
    if g.torch_nn:
        return head + f"import torch\n\n\nclass Model(torch.nn.{g.type}):\n    pass\n" + tail
    source = model_file.read_text(encoding="utf-8")
    if not source.endswith("\n"):
        source += "\n"
    base = "_KwUserClass" if g.type == "Model" else g.type
    alias = "_KwUserClass = Model\n\n" if g.type == "Model" else ""
    folder = str(model_file.parent)
    return (
        head
        + "import sys\n\n"
        + f"if {folder!r} not in sys.path:  # the model's sibling imports\n"
        + f"    sys.path.insert(0, {folder!r})\n"
        + f"# ---- {model_file.name}, verbatim ----\n"
        + source
        + f"# ---- end of {model_file.name} ----\n\n"
        + "import torch  # noqa: E402\n\n"
        + f"{alias}\nclass Model({base}):\n    pass\n"
        + tail
    )


def find_hotspots(
    model_ref: str,
    inputs: str,
    init_args: str | None,
    target: str,
    top: int,
    out_dir: Path | None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> dict[str, Any]:
    """Measure the model, write problems for its `top` hottest groups into `out_dir`, and return
    the JSON `hotspots --json` prints."""
    from kernelwright.problem import load_problem
    from kernelwright.targets import TARGETS, torch_has_cuda, visible_gpus

    if target not in TARGETS:
        raise BadInput(f"unknown target {target!r}; use one of: {', '.join(TARGETS)}")
    if target == "cuda" and not (torch_has_cuda() and visible_gpus() > 0):
        raise BadInput("target cuda, but no CUDA GPU is visible here; use --target cpu")
    if top < 1:
        raise BadInput("--top must be 1 or more")
    wrapper = resolve_problem(model_ref, inputs=inputs, init_args=init_args)
    model_file = Path(model_ref.rpartition(":")[0]).expanduser().resolve()
    model_cls = model_ref.rpartition(":")[2]
    out = (out_dir or paths.home() / "hotspots" / f"{model_file.stem}_{model_cls}").resolve()
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} is a file; name a folder")
    answer = measure(wrapper, target, timeout_s)
    modules = answer["modules"]
    forward_us = answer["profiled_us"]
    groups = group(units(modules))
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("[0-9][0-9]_*.py"):  # an earlier run's problems: they would mix
        if MARKER in stale.read_text(encoding="utf-8", errors="replace"):
            stale.unlink()
    problems, skipped = [], []
    for g in groups:
        if g.skipped:
            skipped.append({"type": g.type, "paths": g.paths, "why": g.skipped})
            continue
        if len(problems) >= top:
            continue
        name = f"{len(problems) + 1:02d}_{_snake(g.type)}"
        meta = {
            "model": f"{model_file}:{model_cls}",
            "type": g.type,
            "torch_nn": g.torch_nn,
            "paths": g.paths,
            "count": g.count,
            "share": g.total_us / forward_us if forward_us else 0.0,
            "self_share": g.self_us / forward_us if forward_us else 0.0,
            "init": g.init,
        }
        text = problem_text(g, model_ref, model_file, inputs, forward_us, meta)
        path = out / f"{name}.py"
        path.write_text(text, encoding="utf-8")
        load_problem(path)  # a problem bench would refuse is a bug here, not the user's
        problems.append(
            {
                "name": name,
                "file": str(path),
                "type": g.type,
                "count": g.count,
                "paths": g.paths,
                "share": meta["share"],
                "self_share": meta["self_share"],
                "total_ms": g.total_us / 1000,
                "init": g.init,
                "init_from": g.how,
                "inputs": " ".join(_spec(a) for a in g.signature["args"]),
                "notes": g.notes,
            }
        )
    table = [
        {
            "path": m["path"] or "(whole model)",
            "type": m["type"],
            "calls": m["calls"],
            "total_ms": m["total_us"] / 1000,
            "self_ms": m["self_us"] / 1000,
            "share": m["total_us"] / forward_us if forward_us else 0.0,
            "self_share": m["self_us"] / forward_us if forward_us else 0.0,
        }
        for m in modules
    ]
    return {
        "model": f"{model_file}:{model_cls}",
        "inputs": inputs,
        "init_args": init_args,
        "target": target,
        "forward_ms": answer["forward_ms"],
        "profiled_forward_ms": forward_us / 1000,
        "clock": answer["clock"],
        "modules": table,
        "problems": problems,
        "skipped": skipped,
        "out_dir": str(out),
        "bench_command": f"kernelwright bench {out} --target {target} --model MODEL",
    }


def read_marker(source: str) -> dict[str, Any] | None:
    """The `# kernelwright-hotspot:` metadata of a problem written here, or None."""
    for line in source.splitlines():
        if line.startswith(MARKER):
            try:
                value = json.loads(line[len(MARKER) :])
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None
