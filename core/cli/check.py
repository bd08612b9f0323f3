"""`kernelwright check CANDIDATE`: the static pre-screen alone.

What `evaluate` runs first, before anything of the candidate is built or run (the rules of
`kernelwright.verifier.static`, docs/checks.md): no build, no GPU, no torch, so it runs in well
under a second on any machine and in a CI without a GPU. A candidate it passes may still be
rejected at run time (the ATen op record, the harness guards, the timing checks).

Exit codes: 0 whenever the check ran (the verdict is in the output), 2 on bad input (a candidate
or problem file that cannot be read or parsed, an unknown target).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from kernelwright.errors import BadInput, KernelwrightError


def check(
    candidate: Annotated[Path, typer.Argument(help="Candidate file defining ModelNew.")],
    problem: Annotated[
        str | None,
        typer.Option(
            help="Problem file or shipped problem's name: its literal inputs (`dim = -1`) are "
            "sizes, not tensors, as `evaluate` reads them, and ModelNew must match its Model.",
        ),
    ] = None,
    target: Annotated[
        str, typer.Option(help="cuda (the candidate must define a __global__ kernel) or cpu.")
    ] = "cuda",
    as_json: Annotated[
        bool, typer.Option("--json", help='Print {"verdict", "findings"} as JSON.')
    ] = False,
) -> None:
    """Run the static anti-cheat checks on CANDIDATE (no build, no GPU)."""
    from kernelwright.cli import fail

    try:
        verdict, findings = run_check(candidate, problem, target)
    except KernelwrightError as exc:
        fail(str(exc))
        return
    if as_json:
        sys.stdout.write(json.dumps({"verdict": verdict, "findings": findings}, indent=2) + "\n")
        return
    rejected = [f["check"] for f in findings if f["severity"] == "reject"]
    head = f"rejected by {', '.join(dict.fromkeys(rejected))}" if rejected else "pass"
    warned = len(findings) - len(rejected)
    typer.echo(f"{head}" + (f" ({warned} warning{'s' * (warned != 1)})" if warned else ""))
    for f in findings:
        where = f"line {f['line']}" if f["line"] is not None else "-"
        typer.echo(f"  {f['check']}  {f['severity']}  {where}  {f['message']}")


def run_check(
    candidate: Path, problem: str | None, target: str
) -> tuple[str, list[dict[str, Any]]]:
    """("pass" or "rejected", the findings as dicts), or BadInput."""
    from kernelwright.compiler.findings import REJECT
    from kernelwright.problem import load_candidate, load_problem
    from kernelwright.targets import TARGETS
    from kernelwright.user_problem import resolve_problem
    from kernelwright.verifier.static_checks import check_candidate

    if target not in TARGETS:
        raise BadInput(f"unknown target {target!r}; use cuda or cpu")
    literals: dict[str, Any] = {}
    if problem is not None:
        loaded = load_problem(resolve_problem(problem))
        source = load_candidate(candidate, loaded).source  # ModelNew must fit its Model
        literals = {
            "scalar_inputs": loaded.scalar_inputs,
            "scalar_init_inputs": loaded.scalar_init_inputs,
            "passed": loaded.input_counts,
        }
    else:
        source = _read(candidate)
    found = check_candidate(source, target, **literals)
    findings = [
        {"check": str(f.check), "severity": f.severity, "line": f.line, "message": f.message}
        for f in found
    ]
    verdict = "rejected" if any(f.severity == REJECT for f in found) else "pass"
    return verdict, findings


def _read(path: Path) -> str:
    """The candidate's source, read and parsed as `evaluate` reads it (the same messages)."""
    from kernelwright.problem import _parse
    from kernelwright.problem import _read as read_file

    path = path.expanduser().resolve()
    source = read_file(path, "candidate")
    _parse(source, path, "candidate")
    return source
