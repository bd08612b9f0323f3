"""`kernelwright suite [FOLDER]`: the problems of a folder or of the shipped suite, with the
shipped suite's handwritten candidates."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from kernelwright.errors import KernelwrightError
from rich.markup import escape
from rich.table import Table


def suite(
    folder: Annotated[
        Path | None,
        typer.Argument(
            help="A folder of problems (a KernelBench checkout's KernelBench/); default: the suite."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List problems (and, for the shipped suite, their handwritten candidates)."""
    from kernelwright.cli import fail
    from kernelwright.problem import load_problem_dir
    from kernelwright.suite import builtin_dir, candidates_for

    try:
        problems = load_problem_dir(folder or builtin_dir())
    except KernelwrightError as exc:
        fail(str(exc))
        return
    rows = []
    for p in problems:
        cands = candidates_for(p.path) if folder is None else {}
        rows.append(
            {
                "name": p.name,
                "level": p.level,
                "path": str(p.path),
                "hash": p.content_hash[:12],
                "candidates": {k: str(v) for k, v in cands.items()},
            }
        )
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    _render_suite(folder or builtin_dir(), rows)


def _render_suite(root: Path, rows: list[dict[str, Any]]) -> None:
    """Paths are never cut: the folder on a line of its own, each file relative to it (folded,
    not cut, in a narrow terminal), and where the candidates are."""
    from kernelwright.cli import out
    from rich.table import Column

    plain = {"markup": False, "highlight": False, "soft_wrap": True}
    out.print(f"problems in {root.resolve()}:", **plain)
    levels = any(row["level"] is not None for row in rows)

    def relative(row: dict[str, Any]) -> str:
        path = Path(row["path"])
        inside = path.is_relative_to(root.resolve())
        return str(path.relative_to(root.resolve())) if inside else str(path)

    # a file named PROBLEM.py right in the folder needs no column of its own
    files = any(relative(row) != f"{row['name']}.py" for row in rows)
    table = Table(
        Column("problem", overflow="fold"),
        *([Column("level")] if levels else []),
        Column("hash", no_wrap=True),
        Column("candidates", no_wrap=True),
        *([Column("file", overflow="fold")] if files else []),
    )
    for row in rows:
        level = "-" if row["level"] is None else str(row["level"])
        cells = [escape(row["name"]), *([level] if levels else []), row["hash"]]
        cells.append(", ".join(row["candidates"]) or "-")
        table.add_row(*cells, *([escape(relative(row))] if files else []))
    out.print(table)
    found = [Path(p) for row in rows for p in row["candidates"].values()]
    if found:
        folders = sorted({str(p.parent) for p in found})
        out.print(
            f"handwritten candidates: {', '.join(f + '/' for f in folders)} (PROBLEM.py)", **plain
        )
        example = next((p for p in found if p.parent.name == "cpu"), found[0])
        out.print(
            f"e.g. kernelwright evaluate {example.stem} {example}"
            + (" --target cpu" if example.parent.name == "cpu" else ""),
            **plain,
        )
