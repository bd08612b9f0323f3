"""`kernelwright profile PROBLEM CANDIDATE`: Nsight Compute metrics and roofline for one kernel.

CANDIDATE is a candidate file or the id of a stored candidate; with an id the profile is also
saved in the history beside it (where `report` and the judge find it). The candidate is built
through the harness first (a cache hit when it was evaluated before), so a build error is
reported as one, not as a profiling failure.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from kernelwright.cli.options import DbOption, JsonOption
from rich.console import Console
from rich.markup import escape
from rich.table import Table


def profile(
    problem: Annotated[str, typer.Argument(help="Problem file or shipped problem name.")],
    candidate: Annotated[
        str, typer.Argument(help="Candidate file defining ModelNew, or a stored candidate id.")
    ],
    timeout: Annotated[float, typer.Option(help="Seconds allowed for ncu.")] = 300.0,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Keep ncu's report here (open it in Nsight Compute)."),
    ] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Profile a correct CUDA candidate's kernels with Nsight Compute (ncu)."""
    from kernelwright.cli import fail
    from kernelwright.compiler.build import build_candidate
    from kernelwright.errors import KernelwrightError
    from kernelwright.problem import load_candidate, load_problem
    from kernelwright.profiler import ncu
    from kernelwright.profiling import profile_candidate
    from kernelwright.targets import check_toolchain
    from kernelwright.user_problem import resolve_problem

    with tempfile.TemporaryDirectory(prefix="kw-profile-") as tmp:
        try:
            problem_path = resolve_problem(problem)
            spec = load_problem(problem_path)
            candidate_path, stored_id, engine = _candidate_file(candidate, Path(tmp), db)
            load_candidate(candidate_path, spec)
            check_toolchain("cuda")
        except KernelwrightError as exc:
            fail(str(exc))
            return
        if ncu.find_ncu() is None:
            fail(ncu.MISSING_HELP)
        build = build_candidate(candidate_path, "cuda")
        if not build.ok:
            fail(
                f"the candidate does not build ({build.reason}); `kernelwright evaluate` shows why"
            )
        if report is None and stored_id is not None:
            from kernelwright import paths

            report = paths.home() / "profiles" / f"{stored_id}.ncu-rep"
        keep = report.expanduser().resolve() if report is not None else None
        result = profile_candidate(
            problem_path, candidate_path, timeout_s=timeout, keep_report=keep
        )
    data: dict[str, Any] = result.to_json()
    if result.ok and stored_id is not None and engine is not None:
        from kernelwright.store import profiles

        profiles.add_profile(engine, stored_id, data)
        data["candidate_id"] = stored_id
    if result.status == "unavailable":
        fail(result.message)
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        _render(data)
    if not result.ok:
        raise typer.Exit(1)


def _candidate_file(ref: str, tmp: Path, db: str | None) -> tuple[Path, str | None, Any]:
    """A candidate file path, or a stored candidate's source written to `tmp`."""
    path = Path(ref).expanduser()
    if path.is_file():
        return path.resolve(), None, None
    if path.suffix == ".py" or "/" in ref:
        from kernelwright.errors import BadInput

        raise BadInput(f"candidate file not found: {ref}")
    from kernelwright.store import repo
    from kernelwright.store.db import open_engine

    engine = open_engine(db)
    stored = repo.get_candidate(engine, ref)  # NotFound names the id
    written = tmp / f"candidate_{ref}.py"
    written.write_text(stored["source"], encoding="utf-8")
    return written, ref, engine


def _render(data: dict[str, Any]) -> None:
    out = Console()
    if data["status"] != "ok":
        out.print(f"[bold red]profile {data['status']}:[/] {escape(data['message'])}")
        tail = "\n".join(data.get("log", "").rstrip().splitlines()[-15:])
        if tail:
            out.print(tail, markup=False, highlight=False)
        return
    for kernel in data["kernels"]:
        table = Table(title=escape(kernel["kernel"]), show_header=False, box=None)
        for label, value in kernel["judge"].items():
            table.add_row(label, escape(value))
        out.print(table)
    where = f" on {data['device_name']}" if data.get("device_name") else ""
    out.print(f"ncu took {data['seconds']:.1f} s{where}; durations are at ncu's base clock")
    if data.get("report"):
        out.print(f"report: {data['report']}")
    if data.get("candidate_id"):
        out.print(f"saved with candidate {data['candidate_id']}")
