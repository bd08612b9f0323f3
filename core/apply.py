"""`kernelwright apply`: put a run's best kernels into the user's model and measure it whole.

For every problem of the run that `kernelwright hotspots` wrote (its `# kernelwright-hotspot:`
line names the module type and the paths of its instances) and that has a correct candidate,
the best one (highest speedup) replaces each instance, carrying that instance's own weights
(`state_dict`: by name, else by order where every shape and dtype matches). The result is one
Python file, `patched.py`, that builds the original model and swaps the modules in; the very
text that is checked here is the file the user gets.

How it is checked, with no user or candidate code in this process: the model wrapped as a
problem (`user_problem.resolve_problem`) is the reference and `patched.py`'s `ModelNew` the
candidate, through the evaluation's own pieces: its build worker (`compiler.build`: every
kernel's extension built, sealed and audited), the reference worker (`verifier.session`), and
the candidate's worker with the timing driver (`verifier.candidate_run`): the same seeded cases,
tolerances (`verifier.tolerances`), in-process guards and interleaved timing protocol as any
candidate; the whole-model speedup is the median of the per-round ratios, with their p20-p80.
The static checks, and the run-time check that PyTorch does not do the main work, are not
applied to `patched.py` (it runs the user's PyTorch code by design); each kernel passed them as
a candidate of its own problem.

A kernel correct as a module can break the model (inputs of another dtype, shape or layout in
context). When all kernels together fail, each is checked alone; those that fail alone are
left out with the reason, the others are combined again (and, should the combination still
fail, added one by one, hottest first). Nothing left out is ever applied.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelwright import paths
from kernelwright.errors import BadInput
from kernelwright.hotspots import read_marker


@dataclass
class Kernel:
    """One problem's best candidate, and where its module sits in the model."""

    problem: str
    candidate_id: str
    type: str
    paths: list[str]
    init: list[Any]
    share: float
    source: str
    speedup: float | None
    speedup_p20: float | None = None
    speedup_p80: float | None = None
    model: str = ""  # the model `hotspots` found it in (MODEL.py:Class)


@dataclass
class Outcome:
    ok: bool
    reason: str
    verdict: Any = None
    cases: list[dict[str, Any]] = field(default_factory=list)


def _spread(timing: dict[str, Any] | None) -> tuple[float | None, float | None]:
    from kernelwright.profiler.stats import quantile

    ratios = [float(r) for r in (timing or {}).get("round_ratios") or [] if r is not None]
    if not ratios:
        return None, None
    return quantile(ratios, 0.2), quantile(ratios, 0.8)


def run_kernels(engine: Any, run_id: str) -> tuple[list[Kernel], list[dict[str, Any]]]:
    """The best correct candidate of each hotspots problem of the run, and the problems that
    have none (or were not written by `hotspots`) with why."""
    from kernelwright.store import repo

    rows = repo.candidate_rows(engine, run_id)
    by_problem: dict[str, list[Any]] = {}
    for row in rows:
        by_problem.setdefault(row.problem, []).append(row)
    if repo.run_facts(engine, run_id)["kind"] == "bench":  # problems with no candidate too
        from kernelwright.bench import bench_summary

        for problem in bench_summary(engine, run_id)["problems"]:
            by_problem.setdefault(problem["name"], [])
    kernels, skipped = [], []
    for name in sorted(by_problem):
        correct = [r for r in by_problem[name] if r.status == "correct"]
        if not correct:
            skipped.append({"problem": name, "why": "no correct candidate"})
            continue
        best = max(correct, key=lambda r: r.speedup or 0.0)
        cand = repo.get_candidate(engine, best.id)
        meta = read_marker(cand["problem"]["source"])
        if meta is None:
            skipped.append({"problem": name, "why": "not a problem written by hotspots"})
            continue
        p20, p80 = _spread((cand["evaluation"] or {}).get("timing"))
        kernels.append(
            Kernel(
                problem=name,
                candidate_id=best.id,
                type=str(meta["type"]),
                paths=[str(p) for p in meta["paths"]],
                init=list(meta.get("init") or []),
                share=float(meta.get("share") or 0.0),
                source=cand["source"],
                speedup=best.speedup,
                speedup_p20=p20,
                speedup_p80=p80,
                model=str(meta.get("model") or ""),
            )
        )
    return kernels, skipped


PATCHED_TEMPLATE = '''\
"""{model_cls} with kernels from kernelwright run {run_id} swapped in (`kernelwright apply`).

    from patched import build_model, patch
    model = build_model(*constructor_args)  # builds {model_cls} from {model_file}, then patches it
    model = patch(existing_model)           # or swaps the modules of a model you already have

Each instance gets the candidate's `ModelNew` carrying the instance's own weights (state_dict).
Replaced: {replaced}.
Kernels are built on import (torch.utils.cpp_extension), as the candidates build them.
"""

import importlib.util
import sys
import types

import torch

MODEL_FILE = {model_file!r}
MODEL_CLASS = {model_cls!r}
# problem, candidate, module type, instances (paths in the model), constructor arguments
KERNELS = {table!r}
SOURCES = {{
{sources}}}


def _load(name, source):
    module = types.ModuleType(name)
    module.__file__ = __file__
    sys.modules[name] = module
    exec(compile(source, f"<kernelwright candidate {{name}}>", "exec"), module.__dict__)
    return module


_MODULES = {{key: _load("kw_apply_" + key, text) for key, text in SOURCES.items()}}


def _model_class():
    folder = MODEL_FILE.rsplit("/", 1)[0]
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location("kw_apply_user_model", MODEL_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, MODEL_CLASS)


def _carry(old, new, path):
    mine, theirs = old.state_dict(), new.state_dict()
    if set(mine) == set(theirs):
        new.load_state_dict(mine)
        return
    shapes = [(v.shape, v.dtype) for v in mine.values()]
    if shapes == [(v.shape, v.dtype) for v in theirs.values()]:
        new.load_state_dict(dict(zip(theirs, mine.values())))
        return
    raise RuntimeError(
        f"cannot carry the weights of {{path}} into its kernel: the module holds "
        f"{{sorted(mine)}}, the kernel's ModelNew {{sorted(theirs)}}"
    )


def patch(model):
    """Swap every listed instance of `model` for its kernel, in place; return `model`."""
    for key, kind, instances, init in KERNELS:
        for path in instances:
            old = model.get_submodule(path)
            if type(old).__name__ != kind:
                raise RuntimeError(f"{{path}} is a {{type(old).__name__}}, not a {{kind}}")
            new = _MODULES[key].ModelNew(*init)
            _carry(old, new, path)
            tensors = list(old.parameters()) + list(old.buffers())
            if tensors:
                new = new.to(tensors[0].device)
            new.train(old.training)
            parent, _, name = path.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, name, new)
    return model


def build_model(*args, **kwargs):
    """{model_cls}(*args, **kwargs) with the kernels swapped in."""
    return patch(_model_class()(*args, **kwargs))


class ModelNew(torch.nn.Module):
    """The patched model as a KernelBench candidate (what `kernelwright apply` checked)."""

    def __init__(self, *args):
        super().__init__()
        self.model = build_model(*args)

    def forward(self, *args):
        return self.model(*args)
'''


def patched_source(run_id: str, model_file: Path, model_cls: str, kernels: list[Kernel]) -> str:
    table = [
        (f"{k.problem}_{k.candidate_id}", k.type, list(k.paths), list(k.init)) for k in kernels
    ]
    sources = "".join(f"    {f'{k.problem}_{k.candidate_id}'!r}: {k.source!r},\n" for k in kernels)
    replaced = "; ".join(
        f"{k.type} x{len(k.paths)} ({k.problem}, {k.candidate_id})" for k in kernels
    )
    return PATCHED_TEMPLATE.format(
        run_id=run_id,
        model_file=str(model_file),
        model_cls=model_cls,
        table=table,
        sources=sources,
        replaced=replaced or "nothing",
    )


class Checker:
    """Builds and checks patched models against one reference (computed once)."""

    def __init__(self, problem: Path, options: dict[str, Any], scratch: Path) -> None:
        from kernelwright.verifier.session import run_reference

        self.problem = problem
        self.options = options
        self.scratch = scratch
        self.reference = run_reference(
            problem,
            options["target"],
            options["trials"],
            options["seed"],
            scratch,
            options["timeout_s"],
        )

    def check(self, text: str) -> Outcome:
        from kernelwright.compiler.build import build_candidate
        from kernelwright.verifier.candidate_run import run_candidate
        from kernelwright.verifier.tolerances import Tolerance

        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        folder = paths.home() / "apply" / digest
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "patched.py"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        build = build_candidate(path, self.options["target"], self.options["build_timeout_s"])
        if not build.ok:
            return Outcome(False, f"{build.status.value}: {build.reason}")
        verdict = run_candidate(
            self.problem,
            path,
            self.options["target"],
            _without_work(self.reference),
            Tolerance(self.options.get("atol"), self.options.get("rtol")),
            self.scratch / f"check-{digest}",
            self.options["timeout_s"],
        )
        cases = [
            {
                "case": c.label,
                "ok": c.ok,
                "reason": c.reason,
                "max_abs_error": c.max_abs_error,
                "max_rel_error": c.max_rel_error,
            }
            for c in verdict.cases
        ]
        ok = verdict.status.value == "correct" and verdict.timing is not None
        reason = "" if ok else f"{verdict.status.value}: {verdict.reason}"
        return Outcome(ok, reason, verdict, cases)


def _without_work(reference: Any) -> Any:
    """The reference's outputs without its per-case count of PyTorch work, where the verifier
    keeps one: against it, the candidate worker's op record rejects a candidate whose PyTorch ops
    do the main work (`torch_compute`). In a patched model the rest of the model is PyTorch by
    design; each kernel passed that check in its own problem. Without the count it stays a
    warning (`torch_compute_partial`)."""
    import dataclasses

    if dataclasses.is_dataclass(reference) and hasattr(reference, "work"):
        return dataclasses.replace(reference, work={})
    return reference


def choose(
    kernels: list[Kernel], check: Any, render: Any
) -> tuple[list[Kernel], Outcome | None, list[dict[str, Any]]]:
    """The kernels to apply, the check of them together, and those left out with why.
    `check(text)` checks one patched file; `render(kernels)` writes it."""
    left_out: list[dict[str, Any]] = []
    together = check(render(kernels))
    if together.ok or not kernels:
        return (kernels, together, left_out) if together.ok else ([], None, left_out)
    if len(kernels) == 1:
        left_out.append(_left(kernels[0], together.reason))
        return [], None, left_out
    good = []
    for kernel in kernels:
        alone = check(render([kernel]))
        if alone.ok:
            good.append((kernel, alone))
        else:
            left_out.append(_left(kernel, alone.reason))
    if not good:
        return [], None, left_out
    if len(good) == 1:
        return [good[0][0]], good[0][1], left_out
    chosen = [k for k, _ in good]
    together = check(render(chosen))
    if together.ok:
        return chosen, together, left_out
    # they work alone but not together: add them one by one, hottest first
    kept: list[Kernel] = []
    best: Outcome | None = None
    for kernel, alone in sorted(good, key=lambda pair: -pair[0].share):
        trial = check(render([*kept, kernel])) if kept else alone
        if trial.ok:
            kept.append(kernel)
            best = trial
        else:
            left_out.append(_left(kernel, f"breaks the model with the others: {trial.reason}"))
    return kept, best, left_out


def _left(kernel: Kernel, why: str) -> dict[str, Any]:
    return {
        "problem": kernel.problem,
        "candidate": kernel.candidate_id,
        "type": kernel.type,
        "paths": kernel.paths,
        "why": why[:500],
    }


def apply_run(
    engine: Any,
    run_id: str,
    model_ref: str,
    inputs: str,
    init_args: str | None,
    options: dict[str, Any],
    out: Path,
    compile_baseline: bool = False,
) -> dict[str, Any]:
    """Check and time the run's kernels in the model; write `out`; the JSON `apply --json`
    prints. `options`: target, trials, seed, timeout_s, build_timeout_s (atol, rtol)."""
    from kernelwright.targets import check_toolchain
    from kernelwright.user_problem import resolve_problem

    problem = resolve_problem(model_ref, inputs=inputs, init_args=init_args)
    model_file = Path(model_ref.rpartition(":")[0]).expanduser().resolve()
    model_cls = model_ref.rpartition(":")[2]
    check_toolchain(options["target"])
    out = out.expanduser()
    if out.is_dir() or out.suffix != ".py":
        raise BadInput(f"--out {out} must name a .py file")
    if not out.parent.is_dir():
        raise BadInput(f"--out {out}: folder {out.parent} does not exist")
    kernels, skipped = run_kernels(engine, run_id)
    result: dict[str, Any] = {
        "run_id": run_id,
        "model": f"{model_file}:{model_cls}",
        "inputs": inputs,
        "init_args": init_args,
        "target": options["target"],
        "skipped": skipped,
        "left_out": [],
        "replaced": [],
        "status": "nothing_applied",
        "speedup": None,
        "speedup_p20": None,
        "speedup_p80": None,
        "patched": None,
        # problems found in another model: applied by their paths, which the check must find
        "notes": [
            f"{k.problem} was found in {k.model}"
            for k in kernels
            if k.model and k.model != f"{model_file}:{model_cls}"
        ],
    }
    if not kernels:
        return result
    scratch = paths.scratch_dir() / f"apply-{uuid.uuid4().hex[:12]}"
    try:
        checker = Checker(problem, options, scratch)

        def render(chosen: list[Kernel]) -> str:
            return patched_source(run_id, model_file, model_cls, chosen)

        chosen, outcome, left_out = choose(kernels, checker.check, render)
        result["left_out"] = left_out
        if not chosen or outcome is None:
            return result
        timing = outcome.verdict.timing
        p20, p80 = _spread({"round_ratios": timing.round_ratios})
        result.update(
            status="applied",
            speedup=timing.speedup,
            speedup_p20=p20,
            speedup_p80=p80,
            reference_ms=timing.reference.median_ms,
            patched_ms=timing.candidate.median_ms,
            cases=outcome.cases,
            timing_method=timing.method,
        )
        if compile_baseline:
            from kernelwright.verifier.session import time_compiled_reference

            compiled = time_compiled_reference(
                problem,
                options["target"],
                options["trials"],
                options["seed"],
                scratch / "compiled",
                options["timeout_s"],
            )
            result["compiled_reference"] = compiled.for_candidate(timing.candidate.median_ms)
        text = render(chosen)
        out.write_text(text, encoding="utf-8")
        result["patched"] = str(out.resolve())
        result["replaced"] = [
            {
                "problem": k.problem,
                "candidate": k.candidate_id,
                "type": k.type,
                "paths": k.paths,
                "count": len(k.paths),
                "share": k.share,
                "speedup": k.speedup,
                "speedup_p20": k.speedup_p20,
                "speedup_p80": k.speedup_p80,
            }
            for k in chosen
        ]
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
