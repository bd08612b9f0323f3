"""The optimize loop: coder, build, verify, time, judge, and again, recorded as it happens.

Each round takes `width` parents from the search policy (`search.choose_parents`) and runs one
slot per parent in its own thread: the judge reviews the parent (once, whoever asks first), the
coder writes a new candidate from it, and the candidate is evaluated. Builds of different slots
overlap; running candidate or reference code holds the device lock, so timings never share the
device. Slots only compute: they post events, and this (main) thread alone writes the history,
in the order events arrive, so every call and every candidate is committed as soon as it exists
(a candidate is written `pending` before it is evaluated; `--resume` evaluates what was left).

A run stops at `rounds`, at `--target-speedup`, at `--time-limit` (checked before each LLM call
and each evaluation; work under way finishes), before a call that could pass `--budget-usd`, when
a replay file runs out, or on Ctrl-C (workers killed, run marked `interrupted`, resumable).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kernelwright import paths
from kernelwright.agents import coder, judge
from kernelwright.agents.calls import Call
from kernelwright.agents.llm import BudgetExceeded, ChatModel, RepliesExhausted
from kernelwright.agents.parsing import parse_verdict
from kernelwright.agents.pricing import Budget
from kernelwright.errors import BadInput
from kernelwright.evaluate import EvaluateOptions
from kernelwright.executors import Executor, LocalExecutor
from kernelwright.loop_config import OptimizeConfig, Outcome, Progress
from kernelwright.problem import Problem, load_candidate, load_problem
from kernelwright.profiler.sheets import sheet_for
from kernelwright.profiling import judge_metrics
from kernelwright.records import EvaluationResult, Status
from kernelwright.run_lock import RunLock
from kernelwright.runner.isolation import kill_all
from kernelwright.search import Entry, best, choose_parents
from kernelwright.store import loop_state, profiles, repo
from kernelwright.targets import check_toolchain, first_gpu_name
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)


class _Stop(Exception):
    def __init__(self, reason: str, status: str = "finished") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def check_settings(config: OptimizeConfig, coder_model: ChatModel, judge_model: ChatModel) -> None:
    """What must hold before a run is started: the target's toolchain, and prices for every
    model when a budget is to be kept."""
    check_toolchain(config.target)
    if config.budget_usd is None:
        return
    for model in {id(coder_model): coder_model, id(judge_model): judge_model}.values():
        info = getattr(model, "info", None)
        if info is not None and (info.input_per_mtok is None or info.output_per_mtok is None):
            raise BadInput(
                f"no price for model {info.name!r} in models.toml, so --budget-usd "
                "cannot be kept; add its prices there or omit --budget-usd"
            )


class Optimizer:
    def __init__(
        self,
        engine: Engine,
        config: OptimizeConfig,
        coder_model: ChatModel,
        judge_model: ChatModel,
        resume: str | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        *,
        executor: Executor | None = None,
        bench_run: str | None = None,
        budget: Budget | None = None,
    ) -> None:
        """`resume`: go on with that optimize run. `bench_run`: work on this problem inside a
        bench run (which this loop neither starts nor finishes), sharing the bench's `budget`."""
        self.engine = engine
        self.config = config
        self.coder_model = coder_model
        self.judge_model = judge_model
        self.on_progress = on_progress or (lambda _p: None)
        self.problem: Problem = load_problem(config.problem)
        check_settings(config, coder_model, judge_model)
        self.sheet = sheet_for(config.target, first_gpu_name() if config.target == "cuda" else None)
        self.entries: list[Entry] = []
        self.round = 0
        self.stopping = threading.Event()
        self.stop_reason = ""
        self._review_locks: dict[str, threading.Lock] = {}
        self._events: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._deadline = (
            time.monotonic() + config.time_limit_s if config.time_limit_s is not None else None
        )
        self._interrupted = threading.Event()
        self.tokens = 0
        self.executor: Executor = executor or LocalExecutor(config.target)
        self.options = EvaluateOptions(
            target=config.target,
            trials=config.trials,
            seed=config.seed,
            atol=config.atol,
            rtol=config.rtol,
            timeout_s=config.timeout_s,
            build_timeout_s=config.build_timeout_s,
            compile_baseline=config.compile_baseline,
            profile=config.profile != "none",  # evaluate profiles only on the cuda target
        )
        self.owns_run = bench_run is None
        self.lock: RunLock | None = None  # held while this process works on its own run
        if bench_run is not None:
            self.run_id = bench_run
            spent = self._load(bench_run, reopen=False)
        elif resume is None:
            # before the run exists and any call is paid for: a broken reference is bad input
            self.executor.check_reference(Path(self.problem.path), self.options)
            self.run_id = repo.start_run(
                engine,
                "optimize",
                config.target,
                {**config.to_json(), "problem_hash": self.problem.content_hash},
                models={"coder": config.coder_model, "judge": config.judge_model},
            )
            self.lock = RunLock(self.run_id)
            spent = 0.0
        else:
            self.run_id = resume
            self.lock = RunLock(resume)
            try:
                spent = self._load(resume, reopen=True)
            except BaseException:
                self.lock.release()
                raise
        self.budget = budget or Budget(config.budget_usd, spent)
        self.files = paths.run_dir(self.run_id)
        self._profile_notice_shown = False
        # the round count and replay replies left when the current round started (planned_rounds)
        self._round_base = self.round
        self._round_started_with: int | None = None

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> Outcome:
        try:
            status = self._run_rounds()
            if self.owns_run:
                repo.finish_run(self.engine, self.run_id, status, stop_reason=self.stop_reason)
        finally:  # released once the run's end is written, so a resume sees it
            if self.lock is not None:
                self.lock.release()
        return self.outcome(status)

    def _run_rounds(self) -> str:
        """The rounds until a stop; the run's status."""
        status = "finished"
        try:
            if not self.owns_run and not self.entries:  # a bench's problem, before its first call
                self.executor.check_reference(Path(self.problem.path), self.options)
            pending = [e for e in self.entries if e.status == "pending"]
            if pending:  # written before an interruption, never evaluated
                self._round([(None, e) for e in pending])
            while True:
                self._check_limits()
                if self.round >= self.config.rounds:
                    raise _Stop(f"all {self.config.rounds} rounds done")
                self._check_script()
                self.round += 1
                parents = choose_parents(self.entries, self.config.width)
                self._round([(p, None) for p in parents])
        except _Stop as stop:
            self.stop_reason, status = stop.reason, stop.status
        except KeyboardInterrupt:
            self.interrupt()
            status, self.stop_reason = "interrupted", "interrupted (Ctrl-C)"
        except BaseException as exc:
            self.interrupt()
            if self.owns_run:
                repo.finish_run(self.engine, self.run_id, "failed", stop_reason=f"error: {exc}")
            raise
        return status

    def _scripted_left(self) -> int | None:
        """Coder replies a replay file still holds for this problem (None: not a replay)."""
        remaining = getattr(self.coder_model, "remaining", None)
        return remaining("coder", self.problem.name) if remaining is not None else None

    @property
    def planned_rounds(self) -> int:
        """The rounds this run will reach at most: `rounds`, or fewer where a replay file
        holds fewer coder replies (one per slot of a round)."""
        left = self._scripted_left()
        if left is None:
            return self.config.rounds
        started = self._round_started_with if self._round_started_with is not None else left
        return min(self.config.rounds, self._round_base + math.ceil(started / self.config.width))

    def _check_script(self) -> None:
        """A replay file whose coder replies are all used ends the run here, as planned, rather
        than with a judge call that finds no reply."""
        left = self._scripted_left()
        if left == 0:
            name = Path(getattr(self.coder_model, "path", "replay")).name
            raise _Stop(f"the scripted replies of {name} are all used ({self.round} rounds)")
        self._round_base, self._round_started_with = self.round, left

    def interrupt(self) -> None:
        """Stop now (Ctrl-C): kill the workers and record nothing more. Safe from any thread."""
        self._interrupted.set()
        self.stopping.set()
        kill_all()

    def _check_limits(self) -> None:
        top = best(self.entries)
        target = self.config.target_speedup
        if target is not None and top is not None and (top.speedup or 0.0) >= target:
            raise _Stop(f"target speedup {target:g}x reached ({top.speedup:.2f}x)")
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise _Stop(f"time limit of {self.config.time_limit_s:g} s reached")

    def _round(self, slots: list[tuple[Entry | None, Entry | None]]) -> None:
        """Run the slots (parent to start from, or a pending candidate to evaluate) to the end,
        recording their events as they arrive."""
        history = [e.history_row() for e in self.entries]
        top = best(self.entries)
        top_view = {**top.view(), "speedup": top.speedup} if top else None
        for index, (parent, pending) in enumerate(slots):
            worker = threading.Thread(
                target=self._slot,
                args=(parent, pending, history, top_view),
                name=f"kw-slot-{self.round}-{index}",
                daemon=True,  # Ctrl-C must not wait for an LLM call in flight
            )
            worker.start()
        running, failures = len(slots), []
        crash: BaseException | None = None
        while running:
            if self._interrupted.is_set():  # results of killed workers are not results
                raise KeyboardInterrupt
            try:
                event = self._events.get(timeout=0.2)
            except queue.Empty:
                continue
            kind = event[0]
            if kind == "done":
                running -= 1
            elif kind == "call":
                self._record_call(event[1], event[2])
            elif kind == "proposed":
                self._record_proposal(event[1], event[2])
            elif kind == "evaluated":
                self._record_result(event[1], event[2])
            elif kind == "provider_failed":
                failures.append(event[1])
            elif kind == "stop":
                self.stop_reason = self.stop_reason or event[1]
            elif kind == "crash":
                crash = crash or event[1]
        if crash is not None:
            raise crash
        if self.stop_reason:
            raise _Stop(self.stop_reason)
        if len(failures) == len(slots):
            raise _Stop(f"every LLM call of this round failed; the last: {failures[-1]}", "failed")
        self._check_limits()

    # -- one slot (runs in its own thread; posts events, writes nothing) ---------------------

    def _slot(
        self,
        parent: Entry | None,
        pending: Entry | None,
        history: list[dict[str, Any]],
        top: dict[str, Any] | None,
    ) -> None:
        try:
            entry = pending or self._propose(parent, history, top)
            if entry is not None and entry.status == "pending":
                self._check_slot_limits()
                result = self._evaluate(entry)
                self._events.put(("evaluated", entry, result))
        except _Stop as stop:
            self._stop(stop.reason)
        except BudgetExceeded as exc:
            self._stop(f"budget: {exc}")
        except RepliesExhausted as exc:
            self._stop(f"replies exhausted: {exc}")
        except BaseException as exc:  # a fault of ours: end the run with it, never hang
            log.debug("slot crashed:\n%s", traceback.format_exc())
            self.stopping.set()
            self._events.put(("crash", exc))
        finally:
            self._events.put(("done",))

    def _stop(self, reason: str) -> None:
        self.stopping.set()
        self._events.put(("stop", reason))

    def _check_slot_limits(self) -> None:
        if self.stopping.is_set():
            raise _Stop("")
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise _Stop(f"time limit of {self.config.time_limit_s:g} s reached")

    def _propose(
        self, parent: Entry | None, history: list[dict[str, Any]], top: dict[str, Any] | None
    ) -> Entry | None:
        common = {
            "problem_name": self.problem.name,
            "reference": self.problem.source,
            "target": self.config.target,
            "sheet": self.sheet,
        }
        if parent is None:
            self._check_slot_limits()
            proposal = coder.write_first(self.coder_model, self.budget, **common)
        else:
            self._review(parent, history, common)
            self._check_slot_limits()
            proposal = coder.write_next(
                self.coder_model,
                self.budget,
                **common,
                parent=parent.view(),
                verdict=parent.verdict,
                best=top,
                history=history,
            )
        if proposal.call.error:
            self._events.put(("call", proposal.call, None))
            self._events.put(("provider_failed", proposal.call.error))
            return None
        entry = Entry(
            id=repo.new_id(),
            round=self.round,
            parents=[parent.id] if parent else [],
            source=proposal.source or "",
            summary=proposal.summary,
        )
        if proposal.source is None:
            entry.status = Status.NO_CODE.value
            entry.reason = "the coder's reply held no ```python block defining ModelNew"
        self._events.put(("proposed", entry, proposal.call))
        return entry

    def _review(self, parent: Entry, history: list[dict[str, Any]], common: dict) -> None:
        with self._review_locks.setdefault(parent.id, threading.Lock()):
            if parent.reviewed:
                return
            self._check_slot_limits()
            verdict = judge.review(
                self.judge_model, self.budget, **common, candidate=parent.view(), history=history
            )
            self._events.put(("call", verdict.call, parent.id))
            if verdict.verdict is not None:
                parent.verdict, parent.reviewed = verdict.verdict, True

    def _evaluate(self, entry: Entry) -> EvaluationResult:
        path = self.files / f"{entry.id}.py"
        path.write_text(entry.source, encoding="utf-8")
        try:
            load_candidate(path, self.problem)
        except BadInput as exc:  # the coder's interface is wrong: the coder's fault, not ours
            return EvaluationResult(
                status=Status.COMPILE_ERROR,
                reason=str(exc),
                target=self.config.target,
                problem=str(self.problem.path),
                problem_hash=self.problem.content_hash,
                candidate=str(path),
                trials=self.config.trials,
                log=str(exc) + "\n",
            )
        options = self.options
        if self.config.profile == "best":
            options = dataclasses.replace(options, profile_below_ms=self._lineage_best_ms(entry))
        return self.executor.evaluate(self.problem.path, path, options)

    def _lineage_best_ms(self, entry: Entry) -> float | None:
        """The fastest correct ancestor's time: under the `best` policy only a candidate faster
        than that is profiled (the judge reads a profile where the line moved forward)."""
        by_id = {e.id: e for e in list(self.entries)}
        fastest: float | None = None
        seen: set[str] = set()
        current = by_id.get(entry.parent) if entry.parent else None
        while current is not None and current.id not in seen:
            seen.add(current.id)
            if current.correct and current.candidate_ms is not None:
                fastest = min(fastest or math.inf, current.candidate_ms)
            current = by_id.get(current.parent) if current.parent else None
        return fastest

    # -- recording (main thread only) -----------------------------------------------------------

    def _problem_record(self) -> dict[str, str]:
        return {
            "content_hash": self.problem.content_hash,
            "name": self.problem.name,
            "path": str(self.problem.path),
            "source": self.problem.source,
        }

    def _record_call(self, call: Call, candidate_id: str | None) -> None:
        repo.add_llm_call(
            self.engine,
            self.run_id,
            candidate_id=candidate_id,
            problem=self.problem.name,
            **call.fields(),
        )
        self.tokens += call.tokens_in + call.tokens_out
        self._progress(f"{call.role} replied" if not call.error else f"{call.role} call failed")

    def _record_proposal(self, entry: Entry, call: Call) -> None:
        repo.add_pending_candidate(
            self.engine,
            self.run_id,
            self._problem_record(),
            entry.source,
            repo.source_hash(entry.source),
            parents=entry.parents,
            round_index=entry.round,
            status=entry.status,
            reason=entry.reason,
            candidate_id=entry.id,
        )
        repo.add_llm_call(
            self.engine,
            self.run_id,
            candidate_id=entry.id,
            problem=self.problem.name,
            **call.fields(),
        )
        self.tokens += call.tokens_in + call.tokens_out
        self.entries.append(entry)
        what = "building and checking" if entry.status == "pending" else entry.status
        self._progress(
            f"candidate {entry.id}: {what}",
            finished=None if entry.status == "pending" else self._finished(entry),
        )

    def _record_result(self, entry: Entry, result: EvaluationResult) -> None:
        repo.record_result(self.engine, entry.id, result)
        entry.status, entry.reason, entry.log = result.status.value, result.reason, result.log
        entry.speedup, entry.candidate_ms = result.speedup, result.candidate_ms
        entry.reference_ms = result.reference_ms
        entry.speedup_p20, entry.speedup_p80 = result.speedup_p20, result.speedup_p80
        entry.metrics = judge_metrics(result.profile)
        self._profile_notice(result.profile)
        shown = f" {result.speedup:.3g}x" if result.speedup is not None else ""
        self._progress(
            f"candidate {entry.id}: {entry.status}{shown}", finished=self._finished(entry)
        )
        target = self.config.target_speedup
        if target is not None and entry.correct and (entry.speedup or 0.0) >= target:
            self.stopping.set()  # the other slots start nothing new

    def _profile_notice(self, profile: dict[str, Any] | None) -> None:
        """Say once why the judge gets no hardware metrics; the run goes on with timings."""
        if profile and profile.get("status") == "unavailable" and not self._profile_notice_shown:
            self._profile_notice_shown = True
            message = profile.get("message")
            self._progress(f"no Nsight Compute profile ({message}); going on with timings only")

    def _finished(self, entry: Entry) -> dict[str, Any]:
        return {
            "id": entry.id,
            "round": entry.round,
            "status": entry.status,
            "reason": entry.reason,
            "speedup": entry.speedup,
            "speedup_p20": entry.speedup_p20,
            "speedup_p80": entry.speedup_p80,
        }

    def _progress(self, message: str, finished: dict[str, Any] | None = None) -> None:
        top = best(self.entries)
        self.on_progress(
            Progress(
                run_id=self.run_id,
                problem=self.problem.name,
                round=self.round,
                rounds=self.planned_rounds,
                candidates=len(self.entries),
                correct=sum(e.correct for e in self.entries),
                pending=sum(e.status == "pending" for e in self.entries),
                best_speedup=top.speedup if top else None,
                best_id=top.id if top else None,
                best_speedup_p20=top.speedup_p20 if top else None,
                best_speedup_p80=top.speedup_p80 if top else None,
                cost_usd=self.budget.spent_usd,
                tokens=self.tokens,
                message=message,
                finished=finished,
            )
        )

    # -- resume and outcome ---------------------------------------------------------------------

    def _load(self, run_id: str, reopen: bool) -> float:
        """The stored run's candidates and spending; with `reopen`, the run is marked running
        again, once everything checked out (a refused resume changes nothing)."""
        facts = repo.run_facts(self.engine, run_id) if reopen else {"cost_usd": 0.0, "config": {}}
        self.tokens = int(facts.get("tokens_in", 0)) + int(facts.get("tokens_out", 0))
        stored_hash = facts["config"].get("problem_hash")
        if stored_hash and stored_hash != self.problem.content_hash:
            raise BadInput(
                f"problem {self.problem.path} changed since run {run_id} started; "
                "restore it or start a new run"
            )
        state = loop_state.loop_state(
            self.engine, run_id, self.problem.content_hash, self.problem.name
        )
        profiled = profiles.judge_metrics(self.engine, [c["id"] for c in state["candidates"]])
        for data in state["candidates"]:
            evaluation = data["evaluation"] or {}
            entry = Entry(
                id=data["id"],
                round=data["round"],
                parents=data["parents"],
                source=data["source"],
                status=data["status"],
                reason=data["reason"],
                summary=coder.summarize(state["coder_replies"].get(data["id"], "")),
                speedup=evaluation.get("speedup"),
                speedup_p20=evaluation.get("speedup_p20"),
                speedup_p80=evaluation.get("speedup_p80"),
                candidate_ms=evaluation.get("candidate_ms"),
                reference_ms=evaluation.get("reference_ms"),
                log=evaluation.get("log", ""),
                metrics=profiled.get(data["id"]),
            )
            reply = state["verdicts"].get(entry.id)
            if reply is not None:
                entry.verdict = parse_verdict(reply, judge.mode_for(entry.status))
                entry.reviewed = True
            self.entries.append(entry)
        self.round = max((e.round for e in self.entries), default=0)
        for role, model in (("coder", self.coder_model), ("judge", self.judge_model)):
            skip = getattr(model, "skip", None)
            if skip is not None:  # a replay file goes on where the run stopped
                skip(role, self.problem.name, state["served"].get(role, 0))
        if reopen:
            repo.mark_running(self.engine, run_id)
        return float(facts["cost_usd"])

    def outcome(self, status: str) -> Outcome:
        top = best(self.entries)
        totals = loop_state.run_totals(self.engine, self.run_id)
        return Outcome(
            run_id=self.run_id,
            status=status,
            stop_reason=self.stop_reason,
            rounds=max((e.round for e in self.entries), default=0),
            candidates=len(self.entries),
            correct=sum(e.correct for e in self.entries),
            best_candidate_id=top.id if top else None,
            best_speedup=top.speedup if top else None,
            best_speedup_p20=top.speedup_p20 if top else None,
            best_speedup_p80=top.speedup_p80 if top else None,
            tokens_in=totals["tokens_in"],
            tokens_out=totals["tokens_out"],
            cost_usd=totals["cost_usd"],
        )
