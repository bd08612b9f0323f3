"""Throughput of the optimize loop: candidates per hour and where each candidate's seconds go.

    python benchmarks/throughput.py [--target cuda|cpu] [--candidates N] [--json]
                                    [--passes cold,variant,warm] [--layout fast|shipped]
                                    [--profile all|best|none] [--keep-home DIR] [--compare]

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

With `--compare`, the variant and warm passes run twice, `before` (every reference timing worker
serves one candidate and ends, as kernelwright ran before `verifier/timer_pool`) and `after` (as
it runs now), and the report ends with after/before per pass, paired candidate by candidate.

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
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its figures; compile_speed's generator
from throughput_figures import (  # noqa: E402
    DEFAULT_CANDIDATES,
    DEFAULT_SCALE,
    NOT_SEPARATED,
    PASSES,
    Sample,
    aggregate,
    compare_arms,
    goal_line,
    render,
    spread,
)

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
    from kernelwright.cli.optimize import make_models
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
        if args.compare and name != "cold":  # cold only fills the caches both arms then use
            arms = {}
            for arm in ("before", "after"):
                arm_sources = sources[name]
                if name == "variant":  # each arm its own real builds
                    arm_sources = [
                        (p, candidate_source(shipped[p], args.layout, f"v{arm}{k}"))
                        for p, k in order
                    ]
                say(f"pass {name} ({arm}): {len(arm_sources)} candidates")
                with timers_kept(arm == "after"):
                    arms[arm] = run_pass(
                        f"{name}-{arm}", arm_sources, problem_paths, args, engine, work, say
                    )
            figures["passes"][name] = arms["after"]
            figures.setdefault("comparison", {})[name] = compare_arms(arms["before"], arms["after"])
            continue
        say(f"pass {name}: {len(sources[name])} candidates")
        with timers_kept(True):
            figures["passes"][name] = run_pass(
                name, sources[name], problem_paths, args, engine, work, say
            )
    figures["goal"] = goal_line(figures)
    figures["not_separated"] = list(NOT_SEPARATED)
    return figures


@contextmanager
def timers_kept(keep: bool) -> Iterator[None]:
    """Run a pass with the reference's timing workers kept between candidates (`after`, as
    kernelwright runs) or each used once (`before`: as it ran before verifier/timer_pool), from
    an empty pool either way, as a new process would start."""
    from kernelwright import evaluate
    from kernelwright.verifier import timer_pool

    evaluate._timers.clear()
    saved, timer_pool.REUSE = timer_pool.REUSE, keep
    try:
        yield
    finally:
        timer_pool.REUSE = saved
        evaluate._timers.clear()


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
    parser.add_argument(
        "--compare",
        action="store_true",
        help="run the variant and warm passes twice: before (every reference timer used once) "
        "and after (timers kept for the problem's next candidate), and print after/before",
    )
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
