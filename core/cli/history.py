"""`kernelwright runs ...` and `kernelwright report`: review the history (`candidates ...` is in
kernelwright.cli.candidates, `runs calls` and `calls ...` in kernelwright.cli.calls).

Thin: each command opens the store, calls one query in `store.repo`, renders. Unknown ids and
unusable databases print one line and exit 2 (via the shared error handling in `cli`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from kernelwright.cli.options import DbOption
from kernelwright.errors import KernelwrightError
from rich.markup import escape
from rich.table import Column, Table
from rich.tree import Tree

runs_app = typer.Typer(no_args_is_help=True, help="Review recorded runs.")


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
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    wide: Annotated[
        bool,
        typer.Option("--wide", help="Every column in full (target, start time, cost, problems)."),
    ] = False,
) -> None:
    """All runs, newest first. Fits 80 columns; --wide for every column in full."""
    from kernelwright import spread
    from kernelwright.store import repo

    rows = _guard(lambda: repo.list_runs(_engine(db)))
    if as_json:
        _dump(rows)
        return
    if not rows:
        _out().print("no runs in this history yet (`kernelwright optimize 02_row_sum` makes one)")
        return
    # The id is what every other command takes: it is never cut. The problems column gives
    # way (cut to what is left of the terminal's width; --wide folds it instead).
    headers = ["run", "kind", "status", *(["target"] if wide else []), "started"]
    headers += ["cand.", "ok", "best", *(["p20-p80", "cost"] if wide else [])]
    right = {"cand.", "ok"}
    lines = []
    noisy = False
    for r in rows:
        low, high = r.get("speedup_p20"), r.get("speedup_p80")
        noisy = noisy or bool(r.get("within_noise"))
        started = r["started_at"].replace("T", " ")
        cells = [r["id"], r["kind"], r["status"]]
        cells += [r["target"], started] if wide else [started[5:16]]
        cells += [str(r["candidates"]), str(r["correct"])]
        cells.append(spread.cell(r["best_speedup"], low, high))
        if wide:
            cells += [spread.range_cell(low, high), f"${r['cost_usd']:.4f}"]
        lines.append((cells, ", ".join(r["problems"])))
    widths = [max([len(h), *(len(c[i]) for c, _ in lines)]) for i, h in enumerate(headers)]
    room = max(12, _out().width - sum(widths) - 2 * len(widths))
    table = Table(
        *[
            Column(
                h,
                no_wrap=True,
                justify="right" if h in right else "left",
                min_width=widths[0] if h == "run" else None,  # the id never gives way
            )
            for h in headers
        ],
        Column("problems", overflow="fold", no_wrap=False)
        if wide
        else Column("problems", no_wrap=True, max_width=room),
        box=None,
        pad_edge=False,
    )
    for cells, problems in lines:
        if not wide and len(problems) > room:
            problems = problems[: room - 1] + "…"
        table.add_row(*cells, escape(problems))
    out = _out()
    if wide:  # as wide as it needs: a narrower terminal wraps its lines
        from rich.console import Console

        longest = max((len(p) for _, p in lines), default=0)
        out = Console(width=max(out.width, sum(widths) + 2 * len(widths) + longest))
    out.print(table)
    if noisy:
        out.print(f"{spread.NOISE_MARK}: {spread.NOISE_NOTE}")


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
    from kernelwright import spread

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
        f"best: {spread.text(best['speedup'], best['speedup_p20'], best['speedup_p80'])} "
        f"by candidate {best['candidate']}"
        if best
        else "best: none correct"
    )
    out.print(
        f"tokens in/out: {data['tokens_in']}/{data['tokens_out']}, cost ${data['cost_usd']:.4f}"
    )
    out.print(rounds_table(data["rounds"]))
    if any(r["within_noise"] for r in data["rounds"]):
        out.print(f"{spread.NOISE_MARK}: {spread.NOISE_NOTE}")
    if data["kind"] == "bench":
        from kernelwright.bench import bench_summary
        from kernelwright.cli.bench import render_summary

        render_summary(out, bench_summary(engine, run))


def rounds_table(rounds: list[dict[str, Any]]) -> Table:
    """Per round: candidates, how they ended, and the best correct speedup with its p20-p80
    (`runs show`, and the end of `optimize` and `bench`)."""
    from kernelwright import spread

    table = Table(
        Column("round", justify="right"),
        Column("cand.", justify="right"),
        Column("ok", justify="right"),
        "best",
        "p20-p80",
        Column("how they ended", overflow="fold"),
    )
    for r in rounds:
        low, high = r.get("speedup_p20"), r.get("speedup_p80")
        statuses = r.get("statuses") or {}
        table.add_row(
            str(r["round"]),
            str(r["candidates"]),
            str(r["correct"]),
            spread.cell(r["best_speedup"], low, high),
            spread.range_cell(low, high),
            escape(", ".join(f"{n} {status}" for status, n in statuses.items())),
        )
    return table


@runs_app.command("tree")
def runs_tree(run: RunArg, db: DbOption = None) -> None:
    """The run's lineage: each candidate under its parent, with status and speedup."""
    from kernelwright import spread
    from kernelwright.store import repo

    engine, (run,) = _runs(db, run)
    rows = _guard(lambda: repo.candidate_rows(engine, run))
    ids = {r.id for r in rows}
    root = Tree(f"run {run}")
    nodes: dict[str | None, Any] = {}
    for row in rows:  # ordered by round, so parents come first
        parent = nodes.get(row.parent_id) if row.parent_id in ids else root
        shown = spread.text(row.speedup, row.speedup_p20, row.speedup_p80)
        label = f"{row.id} r{row.round} {row.status} {shown} {escape(row.problem)}"
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
    from kernelwright import spread
    from kernelwright.cli import fail
    from kernelwright.store import repo

    engine, (run_a, run_b) = _runs(db, run_a, run_b)
    if run_a == run_b:  # the table and --json are keyed by run id: one run would be one column
        fail(f"runs compare needs two different runs; both are {run_a}")
    rows_a, rows_b = _guard(
        lambda: (repo.candidate_rows(engine, run_a), repo.candidate_rows(engine, run_b))
    )

    def best(rows: list[Any]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for r in rows:
            found.setdefault(r.problem, None)
            if r.status == "correct" and r.speedup is not None:
                if found[r.problem] is None or found[r.problem].speedup < r.speedup:
                    found[r.problem] = r
        return found

    def figures(row: Any) -> dict[str, Any] | None:
        if row is None:
            return None
        return {"speedup": row.speedup, **spread.fields(row.speedup_p20, row.speedup_p80)}

    best_a, best_b = best(rows_a), best(rows_b)
    problems = sorted(set(best_a) | set(best_b))
    if as_json:  # per run: the best speedup, and its spread beside it
        _dump(
            [
                {
                    "problem": p,
                    run_a: getattr(best_a.get(p), "speedup", None),
                    run_b: getattr(best_b.get(p), "speedup", None),
                    "spread": {run_a: figures(best_a.get(p)), run_b: figures(best_b.get(p))},
                }
                for p in problems
            ]
        )
        return

    def shown(row: Any) -> str:
        if row is None:
            return "-"
        low, high = row.speedup_p20, row.speedup_p80
        ranged = spread.range_cell(low, high)
        return spread.cell(row.speedup, low, high) + (f" ({ranged})" if low is not None else "")

    table = Table("problem", run_a, run_b)
    for p in problems:
        table.add_row(escape(p), shown(best_a.get(p)), shown(best_b.get(p)))
    out = _out()
    out.print(table)
    out.print(f"best speedup (p20-p80 of its per-round ratios); {spread.NOISE_MARK}: within noise")


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
