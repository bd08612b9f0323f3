"""Throughput of the optimize loop: candidates per hour and where each candidate's seconds go.

    python benchmarks/throughput.py [--target cuda|cpu] [--candidates N] [--json]
                                    [--passes cold,variant,warm] [--layout fast|shipped]
                                    [--profile all|best|none] [--keep-home DIR]

Drives the real loop (`kernelwright.bench.Bench`, as `kernelwright bench` builds it: one
`loop.Optimizer` per problem, the local executor, the history) with a replay model (an instant
LLM) whose coder answers each shipped problem with its handwritten candidate
(`core/suite/<target>/*.py`, written in the layout the coder is asked for by default: see
`compile_speed.render`), under a temporary KERNELWRIGHT_HOME. `--candidates N` per pass, problems
taken in turn (round 2 on, the judge reviews the parent first: a replayed verdict); three passes,
each a bench run of its own in one process:

- cold: a fresh home (no build cache, no precompiled headers, no reference outputs); the shipped
  candidates (a renamed extension where a problem comes round again, so every build is real);
- variant: each of them changed (another extension name and a comment), so every build is real
  but the headers and the reference outputs are warm: a long loop's steady state;
- warm: the cold pass's sources again: every build is a cache hit, so a candidate costs only the
  loop's fixed overhead.

Per pass it prints candidates per hour (candidates / wall time, end to end: how a GPU held for the
run is used) and per candidate the seconds of each phase with median and p20-p80, split into what
holds the device (the reference when not cached, verify + time, profile: nothing else may use it
meanwhile) and what could overlap another candidate's device work (builds, worker starts, store,
LLM); `3600 / device seconds` is the ceiling if everything else overlapped. The phases come from
each evaluation's `phases_s` as stored in the history, its `compile_s`, the LLM calls' latencies,
and two measurements of this script (seconds in the history's writes; wall time per evaluation).
What the records do not separate is said in the output (`NOT_SEPARATED`). Exit code 0 when it
ran (whatever the verdicts), 2 on bad arguments or a missing toolchain, 1 on a fault.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PASSES = ("cold", "variant", "warm")
DEFAULT_CANDIDATES = {"cpu": 4, "cuda": 6}
DEFAULT_SCALE = {"cpu": 4, "cuda": 1}  # problem sizes divided by it: CI-sized on the cpu
GOAL_PER_GPU_HOUR = 200.0  # issue 23

# Canonical phases, in the order they are printed: (name, where the seconds come from, holds
# the device). `phases_s` keys of the evaluation record map onto them; keys this script does not
# know (the harness changes) are printed under their own name and counted as holding the device.
PHASE_KEYS = {
    "reference_s": "reference",
    "build_wait_s": "build wait",
    "candidate_s": "verify + time",
    "verify_s": "verify",
    "time_s": "time",
    "timing_s": "time",
    "compiled_reference_s": "torch.compile baseline",
    "profile_s": "profile",
}
OVERLAPPABLE = {
    "build wait",
    "build (in its worker)",
    "build worker start",
    "evaluation, other",
    "store",
    "llm",
}
# Printed, not summed into the candidate's total: they happen inside another phase.
INSIDE = {"build (in its worker)", "build worker start"}
NOT_SEPARATED = (
    "verify and time are one phase in the records (`candidate_s`: the candidate worker's cases, "
    "timing, re-check and spot checks, with that worker's start when the prestarted one was not "
    "used); where the timing records its own wall (`timing.observed.timing_wall_s`) it is split "
    "into `time` and `verify (+ checks)`, the latter holding everything else of `candidate_s`;",
    "process start is no phase of its own: the reference worker's start is inside `reference`, "
    "the spot-check worker's inside `verify + time`, the candidate worker is prestarted while "
    "the build runs; only the build worker's start is derived (reference + build wait - "
    "compile_s, where the evaluation waited for the build);",
    "the build (`compile_s`, in its worker) overlaps the reference; `build wait` is the part of "
    "it on the critical path, and includes making the precompiled headers after the first build;",
    "store is measured by this script (seconds in the history's writes), not recorded;",
    "static checks, loading and cleaning up are only the remainder `evaluation, other`.",
)


# -- pure figures (tested without builds) -------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    median: float
    p20: float
    p80: float
    n: int

    def text(self, digits: int = 2) -> str:
        if self.n == 1:
            return f"{self.median:.{digits}f}"
        return f"{self.median:.{digits}f} ({self.p20:.{digits}f}-{self.p80:.{digits}f})"


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default), q in [0, 100]."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def spread(values: Iterable[float]) -> Spread | None:
    found = [float(v) for v in values]
    if not found:
        return None
    return Spread(percentile(found, 50), percentile(found, 20), percentile(found, 80), len(found))


def per_hour(count: float, seconds: float) -> float | None:
    """Candidates per hour at `seconds` for `count` of them; None when no time was measured."""
    return 3600.0 * count / seconds if seconds > 0 else None


@dataclass
class Sample:
    """One candidate of a pass: the stored record's figures and this script's measurements."""

    candidate: str
    problem: str
    status: str
    cached: bool
    phases_s: dict[str, float] = field(default_factory=dict)  # the evaluation's, as stored
    compile_s: float | None = None
    evaluation_wall_s: float | None = None  # executor.evaluate, measured here
    store_s: float = 0.0  # the history's writes for it, measured here
    llm_s: float = 0.0  # latency of the calls that produced and reviewed it, as stored
    timing_wall_s: float | None = None  # the timing protocol's own wall, where the record has it


def phases_of(sample: Sample) -> dict[str, float]:
    """One candidate's seconds by canonical phase (see PHASE_KEYS and INSIDE)."""
    out: dict[str, float] = {}
    for key, seconds in sample.phases_s.items():
        name = PHASE_KEYS.get(key, key.removesuffix("_s").replace("_", " "))
        out[name] = out.get(name, 0.0) + float(seconds)
    both = out.get("verify + time")
    if both is not None and sample.timing_wall_s is not None:  # the timing says its own wall
        del out["verify + time"]
        out["verify (+ checks)"] = max(0.0, both - sample.timing_wall_s)
        out["time"] = min(both, sample.timing_wall_s)
    if sample.compile_s is not None:
        out["build (in its worker)"] = float(sample.compile_s)
        waited = sample.phases_s.get("build_wait_s", 0.0)
        # Where the evaluation waited for a build that reported its seconds, the build's wall
        # is known: from its start (just before the reference) to the end of the wait.
        if waited > 0.05 and sample.compile_s > 0:
            start = sample.phases_s.get("reference_s", 0.0) + waited - sample.compile_s
            out["build worker start"] = max(0.0, start)
    recorded = sum(float(v) for v in sample.phases_s.values())
    if sample.evaluation_wall_s is not None and sample.phases_s:
        out["evaluation, other"] = max(0.0, sample.evaluation_wall_s - recorded)
    out["store"] = sample.store_s
    out["llm"] = sample.llm_s
    return out


def device_seconds(phases: dict[str, float]) -> float:
    """Seconds a candidate held the device: every phase that is not overlappable or inside."""
    return sum(v for k, v in phases.items() if k not in OVERLAPPABLE and k not in INSIDE)


def candidate_seconds(phases: dict[str, float]) -> float:
    """A candidate's own seconds, end to end (phases inside others not counted twice)."""
    return sum(v for k, v in phases.items() if k not in INSIDE)


def aggregate(
    samples: list[Sample], wall_s: float, reference_checks: list[float] | None = None
) -> dict[str, Any]:
    """A pass's figures: per phase spreads, device and overlappable shares, rates per hour.

    `reference_checks`: seconds of each problem's reference check before its first LLM call
    (the loop runs it outside every evaluation, and the evaluations then find its outputs
    cached); each candidate gets an equal share, as device seconds."""
    count = len(samples)
    checks = [float(c) for c in reference_checks or []]
    per = [phases_of(s) for s in samples]
    if checks:
        for phases in per:
            phases["reference check (share)"] = sum(checks) / count
    names: list[str] = []
    for phases in per:
        names += [n for n in phases if n not in names]
    phase_spreads = {n: spread(p[n] for p in per if n in p) for n in names}
    device = spread(device_seconds(p) for p in per)
    own = spread(candidate_seconds(p) for p in per)
    overlap = spread(candidate_seconds(p) - device_seconds(p) for p in per)
    check_spread = spread(checks)
    accounted = sum(candidate_seconds(p) for p in per)
    statuses = sorted({x.status for x in samples})
    return {
        "candidates": count,
        "statuses": {s: sum(x.status == s for x in samples) for s in statuses},
        "cached_builds": sum(s.cached for s in samples),
        "wall_s": round(wall_s, 3),
        "per_hour": per_hour(count, wall_s),
        "seconds_per_candidate": wall_s / count if count else None,
        "loop_other_s": (wall_s - accounted) / count if count else None,
        "reference_checks": asdict(check_spread) if check_spread else None,
        "phases": {n: asdict(v) for n, v in phase_spreads.items() if v is not None},
        "candidate_s": asdict(own) if own else None,
        "device_s": asdict(device) if device else None,
        "overlappable_s": asdict(overlap) if overlap else None,
        "device_bound_per_hour": per_hour(1, device.median) if device else None,
        "device_share": (
            sum(device_seconds(p) for p in per) / wall_s if wall_s > 0 and per else None
        ),
    }


def render(figures: dict[str, Any]) -> str:
    """The report as text: one block per pass, then what the records do not separate."""
    target, unit = figures["target"], "GPU" if figures["target"] == "cuda" else "device"
    lines = [
        f"throughput on {target}: {figures['candidates']} candidates per pass, "
        f"{figures['layout']} layout, problem sizes / {figures.get('scale', 1)}, "
        f"profile {figures['profile']}, "
        f"{figures['machine']}",
        f"process start (python -c 'import torch', {figures['process_start']['n']} times): "
        f"{_spread_text(figures['process_start'])} s",
    ]
    for name, p in figures["passes"].items():
        statuses = ", ".join(f"{v} {k}" for k, v in p["statuses"].items())
        lines += [
            "",
            f"[{name}] {p['candidates']} candidates ({statuses}; {p['cached_builds']} cached "
            f"builds) in {p['wall_s']:.1f} s: {_num(p['per_hour'])} candidates per {unit}-hour "
            f"end to end ({_num(p['seconds_per_candidate'], 1)} s each)",
            "  seconds per candidate, median (p20-p80):",
        ]
        for phase, s in p["phases"].items():
            tag = " (inside the above)" if phase in INSIDE else ""
            share = "overlappable" if phase in OVERLAPPABLE or phase in INSIDE else "device"
            lines.append(f"    {phase:<24} {_spread_text(s):<22} {share}{tag}")
        if p.get("reference_checks"):
            lines.append(
                f"    (reference checks, once per problem before its first call: "
                f"{_spread_text(p['reference_checks'])} s each, {p['reference_checks']['n']} "
                "problems; shared out above)"
            )
        lines += [
            f"    {'loop, other (mean)':<24} {_num(p['loop_other_s'], 2):<22} overlappable",
            f"  device-exclusive {_spread_text(p['device_s'])} s, overlappable "
            f"{_spread_text(p['overlappable_s'])} s of {_spread_text(p['candidate_s'])} s; "
            f"device busy {_pct(p['device_share'])} of the wall time; ceiling if all else "
            f"overlapped: {_num(p['device_bound_per_hour'])} per {unit}-hour",
        ]
    goal = figures.get("goal")
    if goal:
        lines += ["", goal]
    lines += ["", "not separated by the records:"] + [f"  - {n}" for n in NOT_SEPARATED]
    return "\n".join(lines)


def goal_line(figures: dict[str, Any]) -> str | None:
    """The issue's figure: candidates per GPU-hour in the steady state (the variant pass)."""
    steady = figures["passes"].get("variant") or next(iter(figures["passes"].values()), None)
    if steady is None or steady["per_hour"] is None:
        return None
    unit = "GPU" if figures["target"] == "cuda" else "device (cpu)"
    met = "met" if steady["per_hour"] >= GOAL_PER_GPU_HOUR else "not met"
    fixed = figures["passes"].get("warm")
    extra = (
        f"; fixed overhead per candidate with a cached build: "
        f"{_num(fixed['seconds_per_candidate'], 1)} s (candidate phases "
        f"{_spread_text(fixed['candidate_s'])} s)"
        if fixed
        else ""
    )
    return (
        f"goal >= {GOAL_PER_GPU_HOUR:.0f} candidates per GPU-hour: {_num(steady['per_hour'])} "
        f"per {unit}-hour end to end with new builds and warm caches ({met}){extra}"
    )


def _spread_text(s: dict[str, Any] | None) -> str:
    return Spread(**s).text() if s else "-"


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f} %"


# -- candidates and replies ---------------------------------------------------------------------

JUDGE_TEXT = (
    "Replayed verdict (throughput benchmark).\n\n```json\n"
    + json.dumps(
        {
            "issue": "none: the benchmark replays the shipped candidate",
            "fix": "none",
            "bottleneck": "none: the benchmark replays the shipped candidate",
            "plan": "none",
        }
    )
    + "\n```\n"
)


def plan(problems: list[str], count: int) -> list[tuple[str, int]]:
    """(problem, how many times it came round before) for `count` candidates, in turn."""
    return [(problems[i % len(problems)], i // len(problems)) for i in range(count)]


def replies(sources: list[tuple[str, str]]) -> str:
    """A replay file: per problem its coder lines, a judge line before each after the first."""
    lines: list[dict[str, str]] = []
    seen: set[str] = set()
    for problem, code in sources:
        if problem in seen:
            lines.append({"role": "judge", "problem": problem, "text": JUDGE_TEXT})
        seen.add(problem)
        text = f"The handwritten candidate shipped with kernelwright.\n```python\n{code}```\n"
        lines.append({"role": "coder", "problem": problem, "text": text})
    return "".join(json.dumps(line) + "\n" for line in lines)


def scaled_problem(source: str, scale: int) -> str:
    """A problem's source with each module-level size (an int >= 256 that `scale` divides)
    divided by `scale`: the same code on smaller inputs, for a CI-sized run."""
    import ast

    if scale == 1:
        return source
    lines = source.splitlines(keepends=True)
    for node in ast.parse(source).body:
        if not (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Constant)
            and type(node.value.value) is int
            and node.value.value >= 256
            and node.value.value % scale == 0
            and node.lineno == node.end_lineno
        ):
            continue
        value = node.value
        line = lines[node.lineno - 1]
        new = str(value.value // scale)
        lines[node.lineno - 1] = line[: value.col_offset] + new + line[value.end_col_offset :]
    return "".join(lines)


def candidate_source(path: Path, layout: str, tag: str) -> str:
    """A shipped candidate in `layout`, its extension renamed with `tag` (so it builds anew)."""
    from compile_speed import render as render_layout
    from compile_speed import take_apart

    _name, source = render_layout(take_apart(path), layout, f"_{tag}")
    return f"# throughput benchmark: {tag}\n{source}"


# -- measuring ----------------------------------------------------------------------------------


class TimedExecutor:
    """The local executor, with each evaluation's wall time kept by candidate id."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.slots = inner.slots
        self.walls: dict[str, float] = {}
        self.reference_checks: list[float] = []

    def evaluate(self, problem: Path, candidate: Path, options: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.inner.evaluate(problem, candidate, options)
        finally:
            self.walls[Path(candidate).stem] = time.perf_counter() - start

    def check_reference(self, problem: Path, options: Any) -> None:
        start = time.perf_counter()
        try:
            self.inner.check_reference(problem, options)
        finally:
            self.reference_checks.append(time.perf_counter() - start)


@contextmanager
def store_timer() -> Iterator[dict[str, float]]:
    """Seconds spent in the history's writes, by candidate id ("" for the run's own)."""
    from kernelwright.store import repo

    spent: dict[str, float] = {}
    lock = threading.Lock()
    originals: dict[str, Callable[..., Any]] = {}

    def wrap(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                key = str(kwargs.get("candidate_id") or "")
                if name == "record_result" and len(args) > 1:
                    key = str(args[1])
                with lock:
                    spent[key] = spent.get(key, 0.0) + time.perf_counter() - start

        return timed

    names = ("add_pending_candidate", "record_result", "add_llm_call", "start_run", "finish_run")
    for name in names:
        real = getattr(repo, name, None)
        if real is not None:
            originals[name] = real
            setattr(repo, name, wrap(name, real))
    try:
        yield spent
    finally:
        for name, real in originals.items():
            setattr(repo, name, real)


def stored_samples(engine: Any, run_id: str) -> list[Sample]:
    """The run's candidates with their stored evaluation and the latency of their LLM calls."""
    import sqlalchemy as sa
    from kernelwright.store.schema import Candidate, Evaluation, LlmCall, Problem

    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(Candidate.id, Candidate.status, Problem.name, Evaluation)
            .join(Problem, Problem.id == Candidate.problem_id)
            .outerjoin(Evaluation, Evaluation.candidate_id == Candidate.id)
            .where(Candidate.run_id == run_id)
            .order_by(Candidate.created_at)
        ).all()
        calls = conn.execute(
            sa.select(LlmCall.candidate_id, LlmCall.latency_s).where(LlmCall.run_id == run_id)
        ).all()
    latency: dict[str, float] = {}
    for candidate_id, seconds in calls:
        latency[candidate_id or ""] = latency.get(candidate_id or "", 0.0) + float(seconds or 0)
    samples = []
    for row in rows:
        env = row.environment or {}
        samples.append(
            Sample(
                candidate=row.id,
                problem=row.name,
                status=row.status,
                cached=bool(row.cached),
                phases_s={k: float(v) for k, v in (env.get("phases_s") or {}).items()},
                compile_s=row.compile_s,
                llm_s=latency.get(row.id, 0.0),
                timing_wall_s=((row.timing or {}).get("observed") or {}).get("timing_wall_s"),
            )
        )
    return samples


def run_pass(
    name: str,
    sources: list[tuple[str, str]],
    problem_paths: dict[str, Path],
    args: argparse.Namespace,
    engine: Any,
    work: Path,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """One bench run over `sources` (problem, candidate source); its figures."""
    from kernelwright.bench import Bench
    from kernelwright.cli_optimize import make_models
    from kernelwright.executors import make_executor
    from kernelwright.loop_config import OptimizeConfig

    replay = work / f"{name}.jsonl"
    replay.write_text(replies(sources), encoding="utf-8")
    counts: dict[str, int] = {}
    for problem, _ in sources:
        counts[problem] = counts.get(problem, 0) + 1
    settings = OptimizeConfig(
        problem="",
        target=args.target,
        coder_model=f"replay:{replay}",
        judge_model=f"replay:{replay}",
        rounds=max(counts.values()),
        width=1,
        profile=args.profile,
    )
    executor = TimedExecutor(make_executor("local", args.target))
    coder_model, judge = make_models(settings)
    paths = [problem_paths[p] for p in counts]
    with store_timer() as spent:
        start = time.perf_counter()
        bench = Bench(engine, settings, paths, coder_model, judge, executor, 1, "builtin")
        bench.on_progress = lambda p: say(f"  [{name}] {p['message']}")
        bench.run()
        wall = time.perf_counter() - start
    samples = stored_samples(engine, bench.run_id)
    for sample in samples:
        sample.evaluation_wall_s = executor.walls.get(sample.candidate)
        sample.store_s = spent.get(sample.candidate, 0.0)
    figures = aggregate(samples, wall, executor.reference_checks)
    figures["run_id"] = bench.run_id
    figures["samples"] = [asdict(s) for s in samples]
    return figures


def process_start(repeats: int = 3) -> dict[str, Any]:
    """A fresh Python importing torch, as every worker does: seconds, `repeats` times."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True, capture_output=True)
        seconds.append(time.perf_counter() - start)
    found = spread(seconds)
    assert found is not None
    return asdict(found)


def measure(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    from kernelwright.problem import load_problem_dir
    from kernelwright.store.db import open_engine
    from kernelwright.suite import builtin_dir, candidates_for

    shipped = {}
    problem_paths = {}
    for problem in load_problem_dir(builtin_dir()):
        candidate = candidates_for(problem.path).get(args.target)
        if candidate is not None:
            shipped[problem.name] = candidate
            problem_paths[problem.name] = problem.path
    order = plan(sorted(shipped), args.candidates)
    work = Path(os.environ["KERNELWRIGHT_HOME"]) / "throughput"
    (work / "problems").mkdir(parents=True, exist_ok=True)
    for name, path in problem_paths.items():  # same names, sizes divided by --scale
        problem_paths[name] = work / "problems" / path.name
        text = scaled_problem(path.read_text(encoding="utf-8"), args.scale)
        problem_paths[name].write_text(text, encoding="utf-8")
    engine = open_engine(f"sqlite:///{Path(os.environ['KERNELWRIGHT_HOME']) / 'history.db'}")
    first = [(p, candidate_source(shipped[p], args.layout, f"c{k}")) for p, k in order]
    variants = [(p, candidate_source(shipped[p], args.layout, f"v{k}")) for p, k in order]
    sources = {"cold": first, "variant": variants, "warm": first}
    figures: dict[str, Any] = {
        "target": args.target,
        "candidates": args.candidates,
        "layout": args.layout,
        "scale": args.scale,
        "profile": args.profile if args.target == "cuda" else "none (cpu)",
        "machine": _machine(args.target),
        "process_start": process_start(),
        "passes": {},
    }
    for name in args.passes:
        say(f"pass {name}: {len(sources[name])} candidates")
        figures["passes"][name] = run_pass(
            name, sources[name], problem_paths, args, engine, work, say
        )
    figures["goal"] = goal_line(figures)
    figures["not_separated"] = list(NOT_SEPARATED)
    return figures


def _machine(target: str) -> str:
    import torch

    load = f", load {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    text = f"{os.cpu_count()} cores{load}, torch {torch.__version__}"
    if target == "cuda":
        from kernelwright.targets import first_gpu_name

        text += f", {first_gpu_name()}"
    return text


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", choices=["cuda", "cpu"], default=None)
    parser.add_argument("--candidates", type=int, default=None, help="per pass (cpu 4, cuda 6)")
    parser.add_argument("--passes", default=",".join(PASSES), help="of cold,variant,warm")
    parser.add_argument("--layout", choices=["fast", "shipped"], default="fast")
    parser.add_argument(
        "--scale", type=int, default=None, help="divide problem sizes by this (cpu 4, cuda 1)"
    )
    parser.add_argument(
        "--profile", choices=("all", "best", "none"), default="best", help="as kernelwright's"
    )
    parser.add_argument("--keep-home", type=Path, default=None, help="use and keep this home")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    passes = [p.strip() for p in args.passes.split(",") if p.strip()]
    unknown = [p for p in passes if p not in PASSES]
    if unknown or not passes:
        parser.error(f"--passes takes some of {','.join(PASSES)}, not {args.passes!r}")
    if "warm" in passes and "cold" not in passes:
        parser.error("--passes warm needs cold before it (it rebuilds the cold pass's sources)")
    args.passes = [p for p in PASSES if p in passes]
    if args.candidates is not None and args.candidates < 1:
        parser.error("--candidates must be 1 or more")
    if args.scale is not None and args.scale < 1:
        parser.error("--scale must be 1 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # compile_speed's generator
    home = args.keep_home or Path(tempfile.mkdtemp(prefix="kw-throughput-"))
    os.environ["KERNELWRIGHT_HOME"] = str(home)
    os.environ.pop("KERNELWRIGHT_DB", None)
    from kernelwright.errors import KernelwrightError
    from kernelwright.targets import check_toolchain, default_target

    args.target = args.target or default_target()
    args.candidates = args.candidates or DEFAULT_CANDIDATES[args.target]
    args.scale = args.scale or DEFAULT_SCALE[args.target]

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        check_toolchain(args.target)
        figures = measure(args, say)
    except KernelwrightError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.keep_home is None:
            shutil.rmtree(home, ignore_errors=True)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(render(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
