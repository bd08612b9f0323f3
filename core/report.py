"""A run's history as one self-contained HTML page (`kernelwright report RUN`).

Guarantees:
- One file that needs no network: inline CSS, charts as inline SVG drawn here, no scripts,
  fonts or images; a Content-Security-Policy meta tag forbids loading anything else.
- Every piece of recorded text (candidate code, logs, reasons, warnings, names, config, what
  the agents said, diffs) is escaped: the template autoescapes, and the SVG builders in
  `report_svg` escape their text.
- Per candidate: the coder's summary of what it tried, the judge's verdict on it, and its diff
  from its parent (collapsed: a `<details>` element, closed).
- Every speedup is shown with its spread, p20-p80 of its per-round ratios (kernelwright.spread),
  as error bars on the per-round chart and as text; one whose range holds 1.0 is "within noise".
- Works for optimize runs (one problem), bench runs (many problems) and runs with no correct
  candidate or no candidate at all. fast_p and the geometric mean are `kernelwright.metrics`'s,
  over the problems that have candidates in the run, and for a bench run over every problem it
  selected (as `bench --json` and `runs show` count them); where evaluations timed the
  reference under torch.compile (`--compile-baseline`), the same figures against it, and its
  time per problem.
- `write_report` never leaves a half-written file at the destination (temp file + os.replace),
  nor a temp file; a destination it cannot write is BadInput.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import sqlalchemy as sa
from kernelwright import report_model, report_svg, review_words, spread
from kernelwright.errors import BadInput
from kernelwright.metrics import FAST_P_THRESHOLDS, fast_p, geomean
from kernelwright.records import compiled_figures
from kernelwright.store import repo, review
from kernelwright.store.schema import Candidate, Profile
from sqlalchemy.engine import Engine

TEMPLATE = "report.html.j2"


@dataclass
class CandidateView:
    """One candidate as the page shows it."""

    id: str
    anchor: str
    problem: str
    round: int
    parents: list[str]
    status: str
    reason: str
    speedup: float | None
    candidate_ms: float | None
    reference_ms: float | None
    compile_s: float | None
    cached: bool
    max_abs_error: float | None
    warnings: list[str]
    source: str
    log: str
    profiles: list[dict[str, Any]] = field(default_factory=list)
    children: list[CandidateView] = field(default_factory=list)
    # the reference under torch.compile, from the evaluation's timing (--compile-baseline)
    torch_compile_ms: float | None = None
    vs_torch_compile: float | None = None
    torch_compile_note: str = ""
    # what the agents said about it (store.review): the coder's summary, the judge's verdict
    # as fields where its JSON parsed, else as text; and the unified diff from its parent
    coder_summary: str = ""
    verdict_fields: list[tuple[str, str]] = field(default_factory=list)
    verdict_text: str = ""
    diff: str = ""
    diff_lines: int = 0
    # the speedup's spread: p20 and p80 of its per-round ratios (kernelwright.spread)
    speedup_p20: float | None = None
    speedup_p80: float | None = None

    @property
    def within_noise(self) -> bool:
        return bool(spread.within_noise(self.speedup_p20, self.speedup_p80))


@dataclass
class ProblemView:
    """One problem of the run: its candidates, lineage roots, best result and chart."""

    name: str
    anchor: str
    candidates: list[CandidateView]
    roots: list[CandidateView]
    best: CandidateView | None
    chart: str


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _warning_text(warning: Any) -> str:
    if isinstance(warning, dict) and ("check" in warning or "message" in warning):
        return f"{warning.get('check', '')}: {warning.get('message', '')}"
    return str(warning)


def _profiles(engine: Engine, run_id: str) -> dict[str, list[dict[str, Any]]]:
    """The run's profile rows by candidate id, oldest first."""
    query = (
        sa.select(Profile)
        .join(Candidate, Candidate.id == Profile.candidate_id)
        .where(Candidate.run_id == run_id)
        .order_by(Profile.id)
    )
    found: dict[str, list[dict[str, Any]]] = {}
    with repo.session(engine) as s:
        for p in s.scalars(query):
            found.setdefault(p.candidate_id, []).append(
                {
                    "kernel": (p.metrics or {}).get("kernel"),
                    "dram_pct": _finite(p.dram_throughput_pct),
                    "sm_pct": _finite(p.sm_throughput_pct),
                    "occupancy_pct": _finite(p.achieved_occupancy_pct),
                    "duration_ms": _finite(p.duration_ms),
                    "bound": p.bound or "unknown",
                }
            )
    return found


def _candidate_view(
    row: repo.CandidateRow, detail: dict[str, Any], profiles: list[dict[str, Any]]
) -> CandidateView:
    evaluation = detail.get("evaluation") or {}
    build = detail.get("build") or {}
    compiled_ms, vs_compiled, compile_note = compiled_figures(evaluation.get("timing"))
    parents = [str(p) for p in (detail.get("parents") or [])] or (
        [row.parent_id] if row.parent_id else []
    )
    return CandidateView(
        id=row.id,
        anchor=f"c-{row.id}",
        problem=row.problem,
        round=row.round,
        parents=parents,
        status=row.status,
        reason=row.reason,
        speedup=_finite(row.speedup),
        speedup_p20=_finite(row.speedup_p20),
        speedup_p80=_finite(row.speedup_p80),
        candidate_ms=_finite(evaluation.get("candidate_ms")),
        reference_ms=_finite(evaluation.get("reference_ms")),
        compile_s=_finite(build.get("compile_s")),
        cached=bool(build.get("cached")),
        max_abs_error=_finite(evaluation.get("max_abs_error")),
        warnings=[_warning_text(w) for w in detail.get("warnings") or []],
        source=str(detail.get("source") or ""),
        log=str(evaluation.get("log") or ""),
        profiles=profiles,
        torch_compile_ms=_finite(compiled_ms),
        vs_torch_compile=_finite(vs_compiled),
        torch_compile_note=str(compile_note),
    )


def _add_words(view: CandidateView, said: dict[str, Any]) -> None:
    if said["coder_summary"] is not None:
        view.coder_summary = said["coder_summary"]["text"]
    verdict = said["judge_verdict"]
    if verdict is not None and verdict["fields"]:
        view.verdict_fields = list(verdict["fields"].items())
    elif verdict is not None:
        view.verdict_text = verdict["text"]


def _add_diffs(views: list[CandidateView]) -> None:
    """Each candidate's diff from its first parent, where that parent is in the run."""
    by_id = {v.id: v for v in views}
    for view in views:
        parent = by_id.get(view.parents[0]) if view.parents else None
        if parent is None or parent is view:
            continue
        lines = list(
            difflib.unified_diff(
                parent.source.splitlines(keepends=True),
                view.source.splitlines(keepends=True),
                fromfile=parent.id,
                tofile=view.id,
            )
        )
        view.diff = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
        view.diff_lines = sum(
            1 for line in lines[2:] if line[:1] in "+-" and not line.startswith(("+++", "---"))
        )


def _lineage(candidates: list[CandidateView]) -> list[CandidateView]:
    """Each candidate under its first parent when that parent is in the same problem."""
    by_id = {c.id: c for c in candidates}
    roots = []
    for c in candidates:  # ordered by round: parents come first
        parent = by_id.get(c.parents[0]) if c.parents else None
        if parent is None or parent is c:
            roots.append(c)
        else:
            parent.children.append(c)
    return roots


def _problem_view(index: int, name: str, candidates: list[CandidateView]) -> ProblemView:
    correct = [c for c in candidates if c.status == "correct" and c.speedup is not None]
    best = max(correct, key=lambda c: c.speedup or 0.0, default=None)
    dots = []
    for c in candidates:
        timed = c.speedup is not None and c.status == "correct"
        dots.append(
            report_svg.Dot(
                float(c.round),
                c.speedup if timed and c.speedup is not None else 0.0,
                c.status,
                f"{c.id} round {c.round} {c.status} {_xs(c)}",
                c.anchor,
                low=c.speedup_p20 if timed else None,
                high=c.speedup_p80 if timed else None,
            )
        )
    return ProblemView(
        name=name,
        anchor=f"p-{index}",
        candidates=candidates,
        roots=_lineage(candidates),
        best=best,
        chart=report_svg.rounds_chart(dots),
    )


def _roofline(problems: list[ProblemView]) -> str | None:
    dots = [
        report_svg.Dot(
            p["dram_pct"], p["sm_pct"], p["bound"], f"{c.id} ({c.problem}) {p['bound']}", c.anchor
        )
        for view in problems
        for c in view.candidates
        for p in c.profiles
        if p["dram_pct"] is not None and p["sm_pct"] is not None
    ]
    return report_svg.roofline_chart(dots) if dots else None


def _duration(started: str | None, finished: str | None) -> str:
    if not started or not finished:
        return "-"
    seconds = (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def build_context(engine: Engine, run_id: str) -> dict[str, Any]:
    """Everything the template shows, read from the history; unknown ids raise NotFound."""
    run = repo.show_run(engine, run_id)
    rows = repo.candidate_rows(engine, run_id)
    profiles = _profiles(engine, run_id)
    words = review.run_words(engine, run_id)
    grouped: dict[str, list[CandidateView]] = {}
    for row in rows:
        view = _candidate_view(row, repo.get_candidate(engine, row.id), profiles.get(row.id, []))
        if row.id in words:
            _add_words(view, review_words.what_they_said(row.status, words[row.id]))
        grouped.setdefault(row.problem, []).append(view)
    _add_diffs([v for views in grouped.values() for v in views])
    if run["kind"] == "bench":
        # Every problem the run selected counts in fast_p, with candidates or not: the same
        # problems, in the same order, as `bench --json` and `runs show` (bench_summary).
        from kernelwright.bench import bench_summary

        names = [p["name"] for p in bench_summary(engine, run_id)["problems"]]
        grouped = {**{name: grouped.get(name, []) for name in names}, **grouped}
    problems = [_problem_view(i, name, cands) for i, (name, cands) in enumerate(grouped.items())]
    best = {p.name: (p.best.speedup if p.best else None) for p in problems}
    vs_compiled = {p.name: (p.best.vs_torch_compile if p.best else None) for p in problems}
    timed_compiled = any(
        c.torch_compile_ms is not None or c.torch_compile_note
        for p in problems
        for c in p.candidates
    )
    n = len(best)
    fast = []
    for p in FAST_P_THRESHOLDS:
        share = fast_p(best, p)
        fast.append(
            {
                "name": f"fast_{p:g}",
                "p": p,
                "share": share,
                "count": round(share * n),
                "vs_torch_compile": fast_p(vs_compiled, p),
            }
        )
    return {
        "run": run,
        "duration": _duration(run.get("started_at"), run.get("finished_at")),
        "config_json": json.dumps(run.get("config") or {}, indent=2, sort_keys=True, default=str),
        "problems": problems,
        "n_problems": n,
        "n_candidates": len(rows),
        "n_correct_problems": sum(1 for s in best.values() if s is not None),
        "fast": fast,
        "geomean": geomean([s for s in best.values() if s is not None]),
        "torch_compile": timed_compiled,
        "geomean_vs_torch_compile": geomean([s for s in vs_compiled.values() if s is not None]),
        "fast_chart": report_svg.fast_p_chart(list(best.values())),
        "roofline": _roofline(problems),
        "status_colors": report_svg.STATUS_COLORS,
        "model_section": report_model.section(engine, run_id),  # hotspots and apply (issue 24)
    }


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}x"


def _xs(view: CandidateView | None) -> str:
    """A candidate's speedup with its spread: `1.09x (p20-p80 0.99-1.4, within noise)`."""
    if view is None:
        return "-"
    return spread.text(view.speedup, view.speedup_p20, view.speedup_p80)


def _range(view: CandidateView | None) -> str:
    if view is None:
        return "-"
    return spread.range_cell(view.speedup_p20, view.speedup_p80)


def _num(value: float | None, unit: str = "", digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}{unit}"


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("kernelwright", "."),
        undefined=jinja2.StrictUndefined,
        autoescape=True,  # every recorded string is untrusted text
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(x=_x, xs=_xs, range=_range, num=_num)
    return env


def render_report(engine: Engine, run_id: str) -> str:
    """The whole HTML page for one recorded run."""
    return environment().get_template(TEMPLATE).render(**build_context(engine, run_id))


def write_report(engine: Engine, run_id: str, out: Path) -> Path:
    """Render the run's report and write it to `out` atomically; return `out`."""
    out = Path(out)
    check_destination(out)  # before the work: a bad --out fails at once
    write_atomically(out, render_report(engine, run_id))
    return out


def check_destination(out: Path) -> None:
    """BadInput unless `out` names a file that can be (re)placed in an existing folder."""
    if out.is_dir():
        raise BadInput(f"cannot write {out}: it is a folder; give a file name with --out")
    if not out.parent.is_dir():
        raise BadInput(f"cannot write {out}: folder {out.parent} does not exist")


def write_atomically(out: Path, text: str) -> None:
    """Write `text` to `out` through a temp file beside it, so `out` is never half-written; a
    failure (no permission, a read-only or special folder) is BadInput and leaves no temp file."""
    check_destination(out)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise BadInput(f"cannot write {out}: {exc.strerror or exc}") from exc
        raise
