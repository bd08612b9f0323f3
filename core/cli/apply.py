"""`kernelwright apply`: a run's best kernels in the user's model, checked and timed whole
(`kernelwright.apply` does the work; this parses, records and prints)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from kernelwright.cli.options import DbOption, InitArgsOption, JsonOption
from kernelwright.errors import KernelwrightError
from rich.console import Console


def apply(
    run: Annotated[str, typer.Argument(help="The run (a bench or optimize run id, or a prefix).")],
    model: Annotated[str, typer.Option(help="The model: path/to/module.py:ClassName.")],
    inputs: Annotated[
        str,
        typer.Option(help='forward() arguments, e.g. "float32[8,1024,768] int64[8]".'),
    ],
    init_args: InitArgsOption = None,
    out: Annotated[Path, typer.Option(help="Where to write the patched model.")] = Path(
        "patched.py"
    ),
    target: Annotated[
        str | None, typer.Option(help="cuda or cpu; default: the run's target.")
    ] = None,
    trials: Annotated[int, typer.Option(help="Seeded correctness trials of the whole model.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the first trial.")] = 42,
    timeout: Annotated[
        float, typer.Option(help="Seconds allowed per check (verify + time).")
    ] = 300.0,
    build_timeout: Annotated[float, typer.Option(help="Seconds allowed per build.")] = 600.0,
    compile_baseline: Annotated[
        bool,
        typer.Option(
            "--compile-baseline", help="Also time the original model under torch.compile."
        ),
    ] = False,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Swap RUN's best kernels into MODEL, check its outputs, time it whole, write patched.py."""
    from kernelwright import options as check_options
    from kernelwright.apply import apply_run
    from kernelwright.cli import fail
    from kernelwright.cli import out as console
    from kernelwright.store import ids, model_runs, repo
    from kernelwright.store.db import open_engine

    try:
        check_options.evaluation(trials, seed, None, None, timeout, build_timeout)
        engine = open_engine(db)
        run_id = ids.run_id(engine, run)
        settings = {
            "target": target or repo.run_facts(engine, run_id)["target"],
            "trials": trials,
            "seed": seed,
            "timeout_s": timeout,
            "build_timeout_s": build_timeout,
        }
        result = apply_run(
            engine, run_id, model, inputs, init_args, settings, out, compile_baseline
        )
        result["apply_id"] = model_runs.add_apply(engine, run_id, result)
    except KernelwrightError as exc:
        fail(str(exc))
        return
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    render(console, result)


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}x"


def speedup_text(r: dict[str, Any]) -> str:
    text = _x(r.get("speedup"))
    if r.get("speedup_p20") is not None and r.get("speedup_p80") is not None:
        noise = ", within noise" if r["speedup_p20"] <= 1.0 <= r["speedup_p80"] else ""
        text += f" (p20-p80 {r['speedup_p20']:.3g}-{r['speedup_p80']:.3g}{noise})"
    return text


def render(console: Console, r: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    if r["status"] == "applied":
        console.print(
            f"end to end: {speedup_text(r)}, {r['reference_ms']:.4g} ms -> "
            f"{r['patched_ms']:.4g} ms per forward ({r['target']}; speedup: the median of the "
            "per-round ratios)"
        )
        compiled = r.get("compiled_reference")
        if compiled and compiled.get("speedup") is not None:
            console.print(
                f"against torch.compile of the original: {compiled['speedup']:.3g}x "
                f"({compiled['median_ms']:.4g} ms compiled)"
            )
        elif compiled:
            console.print(escape(f"torch.compile of the original not timed: {compiled['note']}"))
        worst = max((c["max_abs_error"] or 0.0 for c in r.get("cases", [])), default=0.0)
        console.print(
            f"outputs match the original on {len(r.get('cases', []))} cases "
            f"(max abs error {worst:.3g})"
        )
        table = Table("replaced", "instances", "share", "own speedup (p20-p80)", "candidate")
        for k in r["replaced"]:
            spread = ""
            if k.get("speedup_p20") is not None and k.get("speedup_p80") is not None:
                spread = f" ({k['speedup_p20']:.3g}-{k['speedup_p80']:.3g})"
            table.add_row(
                escape(f"{k['type']} ({k['problem']})"),
                str(k["count"]),
                f"{k['share']:.1%}",
                _x(k["speedup"]) + spread,
                k["candidate"],
            )
        console.print(table)
    else:
        console.print("nothing applied: no kernel of the run works in the model")
    for left in r["left_out"]:
        console.print(
            escape(
                f"left out {left['type']} ({left['problem']}, {left['candidate']}): {left['why']}"
            )
        )
    for s in r["skipped"]:
        console.print(escape(f"skipped problem {s['problem']}: {s['why']}"))
    for note in r.get("notes", []):
        console.print(escape(f"note: {note}"))
    if r.get("patched"):
        console.print(f"patched model written to {escape(r['patched'])} (apply {r['apply_id']})")
