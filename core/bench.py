"""`kernelwright bench`: the optimize loop over many problems in one run, and its summary.

One bench run holds every problem's candidates and calls. Problems run `workers` at a time, each
in its own optimize loop (`loop.Optimizer` on the shared run, budget and executor); evaluations
go through the executor, so on a local machine no two share a device. Ctrl-C interrupts every
loop, kills the workers and leaves the run resumable (`--resume RUN` goes on with each problem
where it stopped). The summary (fast_p, geometric mean, per level, per problem tokens and cost)
is computed from the history, so it is the same for a finished, resumed or reviewed run. A run
with `compile_baseline` also has them against the reference under torch.compile: per problem
the best candidate's speedup over it (compiled reference ms / candidate ms, as timed with that
candidate), and fast_p and the geometric mean of those (`vs_torch_compile`); a problem whose
compiled time is missing (torch.compile failed: see its `compile_note`) counts as not fast.
"""

from __future__ import annotations

import dataclasses
import queue
import re
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from kernelwright import spread
from kernelwright.agents.llm import ChatModel
from kernelwright.agents.pricing import Budget
from kernelwright.errors import BadInput
from kernelwright.executors import Executor
from kernelwright.loop import Optimizer, check_settings
from kernelwright.loop_config import OptimizeConfig, Progress
from kernelwright.metrics import fast_p_table, geomean
from kernelwright.problem import level_of, load_problem, load_problem_dir
from kernelwright.records import compiled_figures
from kernelwright.run_lock import RunLock
from kernelwright.store import repo
from kernelwright.store.repo import session
from kernelwright.store.schema import Candidate, Evaluation, LlmCall, Problem
from sqlalchemy.engine import Engine


def select_problems(suite: str, levels: str | None, numbers: str | None) -> list[Path]:
    """The suite's problem files, filtered by `--levels 1,2` and `--problems 1-10,23` (the
    number a file name starts with)."""
    if suite == "builtin":
        from kernelwright.suite import builtin_dir

        root = builtin_dir()
    else:
        root = Path(suite).expanduser()
        if not root.is_dir():
            raise BadInput(f"suite {suite!r} is neither `builtin` nor a folder of problems")
    problems = load_problem_dir(root)
    if levels:
        wanted = _numbers(levels, "--levels")
        if all(p.level is None for p in problems):
            raise BadInput(f"suite {suite!r} has no level folders; drop --levels")
        problems = [p for p in problems if p.level in wanted]
    if numbers:
        wanted = _numbers(numbers, "--problems")
        problems = [p for p in problems if _number_of(p.path) in wanted]
    if not problems:
        raise BadInput(f"no problem of suite {suite!r} matches; `kernelwright suite` lists them")
    return [p.path for p in problems]


def _numbers(spec: str, flag: str) -> set[int]:
    found: set[int] = set()
    for part in spec.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise BadInput(f"{flag} takes numbers and ranges like 1-10,23, not {spec!r}")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        found.update(range(low, high + 1))
    return found


def _number_of(path: Path) -> int | None:
    match = re.match(r"(\d+)", path.name)
    return int(match.group(1)) if match else None


class Bench:
    def __init__(
        self,
        engine: Engine,
        settings: OptimizeConfig,
        problems: list[Path],
        coder_model: ChatModel,
        judge_model: ChatModel,
        executor: Executor,
        workers: int,
        suite: str,
        resume: str | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.engine = engine
        self.workers = workers
        self.on_progress = on_progress or (lambda _p: None)
        loaded = [load_problem(p) for p in problems]  # bad input fails before the run exists
        _check_distinct_names(loaded)
        check_settings(settings, coder_model, judge_model)
        self.lock: RunLock | None = None
        if resume is None:
            config = {
                "suite": suite,
                "problems": [str(p.path) for p in loaded],
                "problem_hashes": {p.name: p.content_hash for p in loaded},
                "settings": {**settings.to_json(), "problem": ""},
                "workers": workers,
            }
            models = {"coder": settings.coder_model, "judge": settings.judge_model}
            self.run_id = repo.start_run(engine, "bench", settings.target, config, models)
            self.lock = RunLock(self.run_id)
            spent = 0.0
        else:
            self.run_id = resume
            self.lock = RunLock(resume)
            facts = repo.run_facts(engine, resume)
            spent = float(facts["cost_usd"])
            for p in loaded:
                if facts["config"]["problem_hashes"].get(p.name) != p.content_hash:
                    self.lock.release()
                    raise BadInput(f"problem {p.path} changed since bench run {resume} started")
        budget = Budget(settings.budget_usd, spent)
        try:
            self.loops = [
                Optimizer(
                    engine,
                    dataclasses.replace(settings, problem=str(p.path)),
                    coder_model,
                    judge_model,
                    executor=executor,
                    bench_run=self.run_id,
                    budget=budget,
                )
                for p in loaded
            ]
        except BaseException:
            self.lock.release()
            raise
        if resume is not None:  # everything checked out: only now is the run changed
            repo.mark_running(engine, resume)
        self._done: list[str] = []
        self._progress_lock = threading.Lock()
        self._latest: dict[str, Progress] = {}

    def run(self) -> dict[str, Any]:
        todo: queue.Queue[Optimizer] = queue.Queue()
        for loop in self.loops:
            loop.on_progress = self._progress
            todo.put(loop)
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=self._work, args=(todo, errors), daemon=True)
            for _ in range(min(self.workers, len(self.loops)))
        ]
        status, reason = (
            "finished",
            f"{len(self.loops)} problem{'' if len(self.loops) == 1 else 's'} done",
        )
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(timeout=0.2)
        except KeyboardInterrupt:
            for loop in self.loops:
                loop.interrupt()
            status, reason = "interrupted", "interrupted (Ctrl-C)"
            for thread in threads:  # their last progress lines come before the summary
                thread.join(timeout=30)
        if errors and status == "finished":
            status, reason = "failed", f"error: {errors[0]}"
        try:
            repo.finish_run(self.engine, self.run_id, status, stop_reason=reason)
        finally:
            if self.lock is not None:
                self.lock.release()
        if errors and status == "failed":
            raise errors[0]
        return bench_summary(self.engine, self.run_id)

    def _work(self, todo: queue.Queue[Optimizer], errors: list[BaseException]) -> None:
        while not errors:
            try:
                loop = todo.get_nowait()
            except queue.Empty:
                return
            try:
                loop.run()
            except BaseException as exc:  # recorded; the other problems stop starting
                errors.append(exc)
                return
            finally:
                with self._progress_lock:
                    self._done.append(loop.problem.name)
                self._progress(None)

    def _progress(self, progress: Progress | None) -> None:
        with self._progress_lock:
            if progress is not None:
                self._latest[progress.problem] = progress
            latest = list(self._latest.values())
            done = len(self._done)
        self.on_progress(
            {
                "done": done,
                "problems": len(self.loops),
                "solved": sum(p.best_speedup is not None for p in latest),
                "cost_usd": max((p.cost_usd for p in latest), default=0.0),
                "message": f"{progress.problem}: {progress.message}" if progress else "",
                # a candidate's end, with its problem (one line that stays on the display)
                "finished": {**progress.finished, "problem": progress.problem}
                if progress is not None and progress.finished is not None
                else None,
            }
        )


def _check_distinct_names(problems: list[Any]) -> None:
    """A bench run keys its problems by name (file name without `.py`): two of one name, from
    different levels say, would share their candidates and figures."""
    seen: dict[str, Path] = {}
    for problem in problems:
        if problem.name in seen:
            raise BadInput(
                f"{seen[problem.name]} and {problem.path} are both named {problem.name!r}; a "
                "bench run needs distinct names: rename one, or pick one with --levels/--problems"
            )
        seen[problem.name] = problem.path


def problem_totals(engine: Engine, run_id: str) -> dict[str, dict[str, float]]:
    """Tokens and cost per problem name."""
    with session(engine) as s:
        rows = s.execute(
            sa.select(
                LlmCall.problem,
                sa.func.sum(LlmCall.tokens_in),
                sa.func.sum(LlmCall.tokens_out),
                sa.func.sum(LlmCall.cost_usd),
            )
            .where(LlmCall.run_id == run_id)
            .group_by(LlmCall.problem)
        ).all()
    spans = problem_spans(engine, run_id)
    return {
        name: {
            "tokens_in": int(tin or 0),
            "tokens_out": int(tout or 0),
            "cost_usd": cost or 0.0,
            "seconds": spans.get(name),
        }
        for name, tin, tout, cost in rows
    }


def problem_spans(engine: Engine, run_id: str) -> dict[str, float]:
    """Wall seconds per problem name, from the start of its first LLM call to its last recorded
    evaluation (an interrupted and resumed problem includes the gap)."""
    starts: dict[str, datetime] = {}
    ends: dict[str, datetime] = {}

    def seen(name: str, start: datetime, end: datetime) -> None:
        starts[name] = min(starts.get(name, start), start)
        ends[name] = max(ends.get(name, end), end)

    with session(engine) as s:
        calls = s.execute(
            sa.select(LlmCall.problem, LlmCall.created_at, LlmCall.latency_s).where(
                LlmCall.run_id == run_id
            )
        ).all()
        for name, created, latency in calls:
            seen(name, created - timedelta(seconds=latency or 0.0), created)
        evaluations = s.execute(
            sa.select(Problem.name, Evaluation.created_at)
            .join(Candidate, Candidate.id == Evaluation.candidate_id)
            .join(Problem, Problem.id == Candidate.problem_id)
            .where(Candidate.run_id == run_id)
        ).all()
        for name, created in evaluations:
            seen(name, created, created)
    return {name: (ends[name] - starts[name]).total_seconds() for name in starts}


def bench_summary(engine: Engine, run_id: str) -> dict[str, Any]:
    """KernelBench's figures for a run, from the history: fast_p, geometric mean, per level."""
    run = repo.show_run(engine, run_id)
    rows = repo.candidate_rows(engine, run_id)
    totals = problem_totals(engine, run_id)
    paths = run["config"].get("problems") or sorted({r.problem for r in rows})
    compiled = bool((run["config"].get("settings") or {}).get("compile_baseline"))
    problems = []
    for path in paths:
        name = Path(path).stem
        mine = [r for r in rows if r.problem == name]
        correct = [r for r in mine if r.status == "correct" and r.speedup is not None]
        best = max(correct, key=lambda r: r.speedup or 0.0, default=None)
        problems.append(
            {
                "name": name,
                "level": level_of(Path(path)),
                "candidates": len(mine),
                "correct": len(correct),
                "best_speedup": best.speedup if best else None,
                **{
                    f"best_{k}": v
                    for k, v in spread.fields(
                        best.speedup_p20 if best else None, best.speedup_p80 if best else None
                    ).items()
                },
                "best_candidate_id": best.id if best else None,
                **totals.get(
                    name, {"tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0, "seconds": None}
                ),
            }
        )
        if compiled:
            problems[-1].update(_compiled_fields(engine, best.id if best else None))
    levels: dict[str, Any] = {}
    for level in sorted({p["level"] for p in problems if p["level"] is not None}):
        subset = [p for p in problems if p["level"] == level]
        levels[str(level)] = _figures(subset, compiled)
    return {
        "run_id": run_id,
        "status": run["status"],
        "stop_reason": run["stop_reason"],
        "target": run["target"],
        "models": run["models"],
        **_figures(problems, compiled),
        "levels": levels,
        "problems": problems,
        "tokens": {"input": run["tokens_in"], "output": run["tokens_out"]},
        "cost_usd": run["cost_usd"],
    }


def _compiled_fields(engine: Engine, best_id: str | None) -> dict[str, Any]:
    """The torch.compile figures of a problem's best candidate (None where it has none)."""
    timing = None
    if best_id is not None:
        timing = (repo.get_candidate(engine, best_id)["evaluation"] or {}).get("timing")
    ms, speedup, note = compiled_figures(timing)
    return {
        "compiled_reference_ms": ms,
        "best_speedup_vs_compile": speedup,
        "compile_note": note or None,
    }


def _figures(problems: list[dict[str, Any]], compiled: bool = False) -> dict[str, Any]:
    figures = _speedup_figures({p["name"]: p["best_speedup"] for p in problems})
    if compiled:
        vs = _speedup_figures({p["name"]: p["best_speedup_vs_compile"] for p in problems})
        figures["vs_torch_compile"] = {
            "fast_p": vs["fast_p"],
            "geomean_speedup": vs["geomean_speedup"],
            "measured": vs["solved"],
        }
    return figures


def _speedup_figures(best: dict[str, float | None]) -> dict[str, Any]:
    return {
        "fast_p": fast_p_table(best),
        "geomean_speedup": geomean([s for s in best.values() if s is not None]),
        "solved": sum(s is not None for s in best.values()),
        "total": len(best),
    }
