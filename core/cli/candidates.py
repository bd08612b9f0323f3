"""`kernelwright candidates show|diff`: one candidate as the history has it (status, speedup
with its spread, the coder's summary, the judge's verdict; or its code, log, metrics), and the
diff of two. Unknown or ambiguous ids are one line and exit 2."""

from __future__ import annotations

import difflib
import sys
from typing import Annotated, Any

import typer
from kernelwright.cli.history import CandidateArg, _candidates, _dump, _guard, _out
from kernelwright.cli.options import DbOption
from rich.markup import escape

candidates_app = typer.Typer(no_args_is_help=True, help="Review recorded candidates.")


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
    from kernelwright import review_words, spread
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
    out.print(
        "speedup: "
        + spread.text(
            evaluation.get("speedup"),
            evaluation.get("speedup_p20"),
            evaluation.get("speedup_p80"),
            len((evaluation.get("timing") or {}).get("round_ratios") or []),
        )
    )
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
