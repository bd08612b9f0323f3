"""`kernelwright hotspots`: where a model's time goes, and problems for its hottest modules
(`kernelwright.hotspots` does the work; this parses, records and prints)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from kernelwright.cli.options import DbOption, InitArgsOption, JsonOption, TargetOption
from kernelwright.errors import KernelwrightError
from rich.console import Console


def hotspots(
    model: Annotated[str, typer.Argument(help="The model: path/to/module.py:ClassName.")],
    inputs: Annotated[
        str,
        typer.Option(help='forward() arguments, e.g. "float32[8,1024,768] int64[8]".'),
    ],
    init_args: InitArgsOption = None,
    top: Annotated[int, typer.Option(help="Write problems for this many hottest groups.")] = 3,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for the problems; default $KERNELWRIGHT_HOME/hotspots/NAME."),
    ] = None,
    target: TargetOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds allowed for the measurement.")] = 300.0,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Time every submodule of MODEL and write KernelBench problems for the hottest ones."""
    from kernelwright.cli import fail
    from kernelwright.cli import out as console
    from kernelwright.hotspots import find_hotspots
    from kernelwright.store import model_runs
    from kernelwright.store.db import open_engine
    from kernelwright.targets import default_target

    try:
        engine = open_engine(db)  # a bad database fails before the model runs
        result = find_hotspots(
            model, inputs, init_args, target or default_target(), top, out, timeout
        )
        result["hotspots_id"] = model_runs.add_hotspots(engine, result)
    except KernelwrightError as exc:
        fail(str(exc))
        return
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    render(console, result)


def render(console: Console, r: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    console.print(
        f"{escape(r['model'])} on {r['target']}: forward {r['forward_ms']:.3g} ms "
        f"(shares below: {r['clock']} under torch.profiler)"
    )
    table = Table("module", "type", "calls", "total ms", "share", "self ms", "self share")
    for m in r["modules"]:
        if not m["calls"] and m["path"] != "(whole model)":
            continue
        table.add_row(
            escape(m["path"]),
            escape(m["type"]),
            str(m["calls"]),
            f"{m['total_ms']:.3g}",
            f"{m['share']:.1%}",
            f"{m['self_ms']:.3g}",
            f"{m['self_share']:.1%}",
        )
    console.print(table)
    problems = Table("problem", "module", "instances", "share", "inputs", "constructor")
    for p in r["problems"]:
        problems.add_row(
            p["name"],
            escape(p["type"]),
            str(p["count"]),
            f"{p['share']:.1%}",
            escape(p["inputs"]),
            escape(f"{p['init']} ({p['init_from']})"),
        )
    console.print(problems)
    for s in r["skipped"]:
        console.print(escape(f"skipped {s['type']} ({', '.join(s['paths'])}): {s['why']}"))
    console.print(f"problems written to {escape(r['out_dir'])} (hotspots {r['hotspots_id']})")
    console.print(f"next: {escape(r['bench_command'])}")
