"""`kernelwright runs calls RUN` and `kernelwright calls show ID`: what the agents were asked and
what they answered.

Thin, as `cli_history`: one query in `store.review`, then rendering. Prompts and replies are
model text full of `[brackets]` and code: they go to stdout as they are, never through rich
markup.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from kernelwright.cli.history import RunArg, _dump, _engine, _guard, _out, _runs
from kernelwright.cli.options import DbOption
from rich import box
from rich.markup import escape
from rich.table import Column, Table

calls_app = typer.Typer(no_args_is_help=True, help="Review the LLM calls of a run.")


def _seconds(value: float) -> str:
    return f"{value:.1f}"


def _ended(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def _round(value: int | None) -> str:
    return "-" if value is None else str(value)


def runs_calls(
    run: RunArg,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """Every LLM call of a run: round, role, model, candidate written or judged, cost, error."""
    from kernelwright.store import review

    engine, (run,) = _runs(db, run)
    rows = _guard(lambda: review.run_calls(engine, run))
    if as_json:
        _dump(rows)
        return
    out = _out()
    if not rows:
        out.print("no LLM calls in this run", highlight=False)
        return
    _print_calls(out, rows)


def _print_calls(out: Any, rows: list[dict[str, Any]]) -> None:
    """A header with what every call shares, one row per call, then each failure in full: the
    table fits 80 columns because a column that would say the same on every row is left out."""
    models = {r["role"]: f"{r['provider']}:{r['model']}" for r in rows}
    one_model = len({f"{r['provider']}:{r['model']}" for r in rows}) == 1
    several_problems = len({r["problem"] for r in rows}) > 1  # a bench run
    tokens = (sum(r["tokens_in"] for r in rows), sum(r["tokens_out"] for r in rows))
    out.print(
        f"{len(rows)} LLM calls, tokens in/out {tokens[0]}/{tokens[1]}, "
        f"${sum(r['cost_usd'] for r in rows):.4f}; "
        + (
            f"model {rows[0]['provider']}:{rows[0]['model']}"
            if one_model
            else ", ".join(f"{role} {model}" for role, model in sorted(models.items()))
        ),
        markup=False,
        highlight=False,
    )
    table = Table(
        Column("call", justify="right", no_wrap=True),
        Column("round", justify="right", no_wrap=True),
        Column("role", no_wrap=True),
        # the id is what `candidates show` takes: never cut
        Column("candidate", no_wrap=True, min_width=12),
        Column("tokens in/out", justify="right", no_wrap=True),
        Column("cost", justify="right", no_wrap=True),
        Column("s", justify="right", no_wrap=True),
        *([] if one_model else [Column("model", overflow="fold")]),
        *([Column("problem", overflow="fold")] if several_problems else []),
        Column("ok", no_wrap=True),
        box=box.SIMPLE_HEAD,
    )
    for r in rows:
        table.add_row(
            str(r["id"]),
            _round(r["round"]),
            r["role"],
            r["candidate_id"] or "-",
            f"{r['tokens_in']}/{r['tokens_out']}",
            f"${r['cost_usd']:.4f}",
            _seconds(r["latency_s"]),
            *([] if one_model else [escape(r["model"])]),
            *([escape(r["problem"])] if several_problems else []),
            "failed" if r["error"] else "ok",
        )
    out.print(table)
    for r in rows:
        if r["error"]:
            out.print(f"call {r['id']} failed: {r['error']}", markup=False, highlight=False)
    out.print("a call's prompt and reply: kernelwright calls show CALL", highlight=False)


@calls_app.command("show")
def calls_show(
    call: Annotated[str, typer.Argument(help="A call id, as `kernelwright runs calls RUN` lists.")],
    db: DbOption = None,
    prompt: Annotated[
        bool, typer.Option("--prompt", help="Print only the prompt, as stored.")
    ] = False,
    reply: Annotated[
        bool, typer.Option("--reply", help="Print only the reply, as stored.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the call, prompt and reply included, as JSON.")
    ] = False,
) -> None:
    """One LLM call: what the coder or judge was asked, and its answer."""
    from kernelwright.store import review

    data = _guard(lambda: review.get_call(_engine(db), review.parse_call_id(call)))
    if as_json:
        _dump(data)
        return
    if prompt or reply:
        parts = ([data["prompt"]] if prompt else []) + ([data["reply"]] if reply else [])
        sys.stdout.write("".join(_ended(p) for p in parts))
        return
    out = _out()
    relation = (
        f", {data['candidate_relation']} candidate {data['candidate_id']}"
        if data["candidate_id"]
        else ""
    )
    out.print(
        f"call {data['id']} of run {data['run_id']}: {data['role']}, round "
        f"{_round(data['round'])}{relation}",
        markup=False,
        highlight=False,
    )
    out.print(
        f"model {data['provider']}:{data['model']}, tokens in/out {data['tokens_in']}/"
        f"{data['tokens_out']}, ${data['cost_usd']:.4f}, {_seconds(data['latency_s'])} s, "
        f"at {data['created_at']}",
        markup=False,
        highlight=False,
    )
    if data["error"]:
        out.print(f"error: {data['error']}", markup=False, highlight=False)
    # plain writes: the texts are the model's own, in full, with their brackets and backticks
    sys.stdout.flush()
    for title, text in (("prompt", data["prompt"]), ("reply", data["reply"])):
        sys.stdout.write(f"--- {title} ---\n{_ended(text)}")
