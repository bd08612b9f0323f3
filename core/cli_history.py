"""`kernelwright runs ...` and `kernelwright candidates ...`: review the history.

Thin: each command opens the store, calls one query in `store.repo`, renders. Unknown ids and
unusable databases print one line and exit 2 (via the shared error handling in `cli`).
"""

from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from kernelwright.errors import KernelwrightError
from rich.markup import escape
from rich.table import Column, Table
from rich.tree import Tree

runs_app = typer.Typer(no_args_is_help=True, help="Review recorded runs.")
candidates_app = typer.Typer(no_args_is_help=True, help="Review recorded candidates.")

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", help="Database URL (default: $KERNELWRIGHT_DB or $KERNELWRIGHT_HOME/history.db)."
    ),
]


RunArg = Annotated[
    str,
    typer.Argument(
        help="A run id, or a unique prefix of it (4+ characters): `kernelwright runs list`."
    ),
]
CandidateArg = Annotated[
    str,
    typer.Argument(
        help="A candidate id, or a unique prefix of it (4+ characters): "
        "`kernelwright runs tree RUN`."
    ),
]


def _engine(db: str | None) -> Any:
    from kernelwright.store.db import open_engine

    return open_engine(db)


def _guard(fn: Any) -> Any:
    """Run a command body; our own errors become one line and exit 2."""
    from kernelwright.cli import fail

    try:
        return fn()
    except KernelwrightError as exc:
        fail(str(exc))


def _runs(db: str | None, *typed: str) -> tuple[Any, list[str]]:
    """The opened history and the full ids of the runs `typed` names (ids or unique prefixes);
    an unknown or ambiguous one is one line and exit 2."""
    from kernelwright.store import ids

    def resolve() -> tuple[Any, list[str]]:
        engine = _engine(db)
        return engine, [ids.run_id(engine, text) for text in typed]

    return _guard(resolve)


def _candidates(db: str | None, *typed: str) -> tuple[Any, list[str]]:
    """As `_runs`, for candidate ids."""
    from kernelwright.store import ids

    def resolve() -> tuple[Any, list[str]]:
        engine = _engine(db)
        return engine, [ids.candidate_id(engine, text) for text in typed]

    return _guard(resolve)


def _out() -> Any:
    from kernelwright.cli import out

    return out


def _err() -> Any:
    from kernelwright.cli import err

    return err


def _dump(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def _f(value: float | None, unit: str = "x") -> str:
    return "-" if value is None else f"{value:.3g}{unit}"


@runs_app.command("list")
def runs_list(
    db: DbOption = None, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """All runs, newest first."""
    from kernelwright.store import repo

    rows = _guard(lambda: repo.list_runs(_engine(db)))
    if as_json:
        _dump(rows)
        return
    # The id is what every other command takes: in a narrow or piped terminal the other
    # columns give way (the problem list folds), the id is never cut.
    id_width = max((len(r["id"]) for r in rows), default=3)
    table = Table(
        Column("run", no_wrap=True, min_width=id_width),
        "kind",
        "status",
        "target",
        "started",
        "candidates",
        "correct",
        "best",
        Column("problems", overflow="fold"),
    )
    for r in rows:
        table.add_row(
            r["id"],
            r["kind"],
            r["status"],
            r["target"],
            r["started_at"],
            str(r["candidates"]),
            str(r["correct"]),
            _f(r["best_speedup"]),
            escape(", ".join(r["problems"])),
        )
    _out().print(table)


@runs_app.command("show")
def runs_show(
    run: RunArg, db: DbOption = None, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """One run: best speedup, progress per round, tokens and cost."""
    from kernelwright.store import repo

    engine, (run,) = _runs(db, run)
    data = _guard(lambda: repo.show_run(engine, run))
    if as_json:
        _dump(data)
        return
    best = data["best"]
    out = _out()
    out.print(
        f"run [bold]{data['id']}[/] ({data['kind']}, {data['target']}, {data['status']}), "
        f"started {data['started_at']}"
    )
    if data["stop_reason"]:
        out.print(f"stopped: {escape(data['stop_reason'])}")
    if data["status"] in ("interrupted", "running") and data["kind"] in ("optimize", "bench"):
        out.print(f"resume: kernelwright {data['kind']} --resume {data['id']}")
    out.print(
        f"best: {_f(best['speedup'])} by candidate {best['candidate']}"
        if best
        else "best: none correct"
    )
    out.print(
        f"tokens in/out: {data['tokens_in']}/{data['tokens_out']}, cost ${data['cost_usd']:.4f}"
    )
    table = Table("round", "candidates", "correct", "best speedup")
    for r in data["rounds"]:
        table.add_row(
            str(r["round"]), str(r["candidates"]), str(r["correct"]), _f(r["best_speedup"])
        )
    out.print(table)
    if data["kind"] == "bench":
        from kernelwright.bench import bench_summary
        from kernelwright.cli_bench import render_summary

        render_summary(out, bench_summary(engine, run))


@runs_app.command("tree")
def runs_tree(run: RunArg, db: DbOption = None) -> None:
    """The run's lineage: each candidate under its parent, with status and speedup."""
    from kernelwright.store import repo

    engine, (run,) = _runs(db, run)
    rows = _guard(lambda: repo.candidate_rows(engine, run))
    ids = {r.id for r in rows}
    root = Tree(f"run {run}")
    nodes: dict[str | None, Any] = {}
    for row in rows:  # ordered by round, so parents come first
        parent = nodes.get(row.parent_id) if row.parent_id in ids else root
        label = f"{row.id} r{row.round} {row.status} {_f(row.speedup)} {escape(row.problem)}"
        nodes[row.id] = (parent or root).add(label)
    _out().print(root)


@runs_app.command("compare")
def runs_compare(
    run_a: RunArg,
    run_b: RunArg,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Two runs side by side: per problem, the best correct speedup of each."""
    from kernelwright.cli import fail
    from kernelwright.store import repo

    engine, (run_a, run_b) = _runs(db, run_a, run_b)
    if run_a == run_b:  # the table and --json are keyed by run id: one run would be one column
        fail(f"runs compare needs two different runs; both are {run_a}")
    rows_a, rows_b = _guard(
        lambda: (repo.candidate_rows(engine, run_a), repo.candidate_rows(engine, run_b))
    )

    def best(rows: list[Any]) -> dict[str, float | None]:
        found: dict[str, float | None] = {}
        for r in rows:
            found.setdefault(r.problem, None)
            if r.status == "correct" and r.speedup is not None:
                found[r.problem] = max(found[r.problem] or 0.0, r.speedup)
        return found

    best_a, best_b = best(rows_a), best(rows_b)
    problems = sorted(set(best_a) | set(best_b))
    data = [{"problem": p, run_a: best_a.get(p), run_b: best_b.get(p)} for p in problems]
    if as_json:
        _dump(data)
        return
    table = Table("problem", run_a, run_b)
    for p in problems:
        table.add_row(escape(p), _f(best_a.get(p)), _f(best_b.get(p)))
    _out().print(table)


@runs_app.command("delete")
def runs_delete(
    run: RunArg,
    db: DbOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking.")] = False,
) -> None:
    """Delete a run and everything recorded under it (asks first, unless --yes)."""
    import shutil

    from kernelwright import paths
    from kernelwright.store import repo

    engine, (run,) = _runs(db, run)  # the full id: it also names the run's folder below
    if not yes:
        facts = _guard(lambda: repo.show_run(engine, run))
        question = (
            f"delete run {run} ({facts['kind']}, {_count(len(facts['candidates']), 'candidate')}, "
            f"started {facts['started_at']})?"
        )
        if not _confirm(question):
            _err().print(f"run {run} kept; add --yes to delete without asking", highlight=False)
            raise typer.Exit(1)
    count = _guard(lambda: repo.delete_run(engine, run))
    shutil.rmtree(paths.home() / "runs" / run, ignore_errors=True)  # the loop's candidate files
    _out().print(f"deleted run {run} ({_count(count, 'candidate')})", highlight=False)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _confirm(question: str) -> bool:
    """Ask on stderr (stdout stays the command's output); no answer at all keeps the run."""
    try:
        answer = typer.confirm(question, default=False, err=True, prompt_suffix=" ")
        echoed = sys.stdin.isatty()  # a terminal shows the answer and its newline; a pipe does not
    except typer.Abort:  # Ctrl-D, or nothing to read: no answer is no
        answer, echoed = False, False
    if not echoed:
        _err().print()  # end the question's line
    return answer


@runs_app.command("export")
def runs_export(
    run: RunArg,
    db: DbOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="File to write (default: stdout).")
    ] = None,
) -> None:
    """The run's best correct candidate as a standalone drop-in file."""
    from kernelwright.export import render
    from kernelwright.report import check_destination, write_atomically
    from kernelwright.store import repo

    if out is not None:
        _guard(lambda: check_destination(out))
    engine, (run,) = _runs(db, run)
    text = render(_guard(lambda: repo.best_candidate(engine, run)))
    if out is None:
        sys.stdout.write(text)
        return
    _guard(lambda: write_atomically(out, text))  # never a half-written file at the destination
    _out().print(f"wrote {out}", highlight=False)


@candidates_app.command("show")
def candidates_show(
    candidate: CandidateArg,
    db: DbOption = None,
    code: Annotated[bool, typer.Option("--code", help="Print the source.")] = False,
    log: Annotated[bool, typer.Option("--log", help="Print the build/run log.")] = False,
    metrics: Annotated[
        bool,
        typer.Option("--metrics", help="Print timing, environment and ncu profile as JSON."),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print everything stored about it as JSON.")
    ] = False,
) -> None:
    """One candidate: status, speedup, the coder's summary, the judge's verdict; or its code,
    log or metrics."""
    from kernelwright import review_words
    from kernelwright.store import repo, review

    engine, (candidate,) = _candidates(db, candidate)
    data, words = _guard(
        lambda: (repo.get_candidate(engine, candidate), review.candidate_words(engine, candidate))
    )
    evaluation = data["evaluation"] or {}
    if code:
        sys.stdout.write(data["source"])
        return
    if log:
        sys.stdout.write(evaluation.get("log", ""))
        return
    if metrics:
        _dump(
            {
                "timing": evaluation.get("timing"),
                "environment": evaluation.get("environment"),
                "build": data["build"],
                "profile": data["profiles"],
            }
        )
        return
    said = review_words.what_they_said(data["status"], words)
    if as_json:
        _dump({**data, **said})
        return
    out = _out()
    out.print(
        f"candidate [bold]{data['id']}[/] of run {data['run_id']} (round {data['round']}, "
        f"parent {data['parent_id'] or '-'}), problem {escape(data['problem']['name'])}"
    )
    out.print(f"status: {data['status']} {escape(data['reason'])}")
    out.print(f"speedup: {_f(evaluation.get('speedup'))}")
    for kernel in data["profiles"]:
        judge = kernel.get("judge", {})
        out.print(f"kernel {escape(str(kernel.get('kernel')))}: {escape(judge.get('bound', '-'))}")
    for warning in data["warnings"]:
        out.print(
            f"warning: {escape(str(warning.get('check')))}: {escape(str(warning.get('message')))}"
        )
    _print_words(out, said)


VERDICT_CHARS = 300  # an unparsed verdict is shown as a line; `calls show` has all of it


def _print_words(out: Any, said: dict[str, Any]) -> None:
    # model text: printed as it is (markup off), never read as rich tags
    plain = {"markup": False, "highlight": False}
    coder, verdict = said["coder_summary"], said["judge_verdict"]
    if coder is not None:
        out.print(f"coder said (call {coder['call']}): {coder['text'] or '-'}", **plain)
    if verdict is None:
        out.print("judge: not reviewed", **plain)
        return
    if verdict["fields"]:
        out.print(f"judge's verdict (call {verdict['call']}):", **plain)
        for key, value in verdict["fields"].items():
            out.print(f"  {key}: {value}", **plain)
        return
    line = " ".join(verdict["text"].split())
    if len(line) > VERDICT_CHARS:
        line = line[: VERDICT_CHARS - 1] + "…"
    out.print(f"judge's verdict (call {verdict['call']}, not JSON): {line}", **plain)


@candidates_app.command("diff")
def candidates_diff(
    candidate_a: CandidateArg, candidate_b: CandidateArg, db: DbOption = None
) -> None:
    """Unified diff of two candidates' sources."""
    from kernelwright.store import repo

    engine, (candidate_a, candidate_b) = _candidates(db, candidate_a, candidate_b)
    a, b = _guard(
        lambda: (repo.get_candidate(engine, candidate_a), repo.get_candidate(engine, candidate_b))
    )
    diff = difflib.unified_diff(
        a["source"].splitlines(keepends=True),
        b["source"].splitlines(keepends=True),
        fromfile=candidate_a,
        tofile=candidate_b,
    )
    sys.stdout.writelines(diff)


def report(
    run: RunArg,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="HTML file to write (default: kernelwright-report-RUN.html)."),
    ] = None,
    db: DbOption = None,
) -> None:
    """One self-contained HTML page for a run: fast_p, speedup per round, lineage, code, logs."""
    from kernelwright.report import write_report

    engine, (run,) = _runs(db, run)
    target = out or Path(f"kernelwright-report-{run}.html")
    written = _guard(lambda: write_report(engine, run, target))
    _out().print(f"wrote {written}", highlight=False)
