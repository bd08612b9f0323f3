"""Evaluate every shipped problem's handwritten candidate and print one table.

    python benchmarks/suite.py [--target cuda|cpu] [--only 01_gelu,05_matmul_fp32] [--jobs N]

All candidates are built first, several at once (each in its own worker and build directory),
then evaluated one after another so that timings do not disturb each other. Prints, per problem:
status, speedup over PyTorch eager (median of per-round ratios), both median times, the largest
absolute error, and the build seconds; while it runs, each problem's seconds by step (reference,
build wait, candidate: `phases_s`). `--json-out FILE` keeps every full result.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from kernelwright.compiler.build import start_build
from kernelwright.evaluate import EvaluateOptions, evaluate
from kernelwright.problem import load_problem_dir
from kernelwright.records import phases_text
from kernelwright.suite import builtin_dir, candidates_for
from kernelwright.targets import default_target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--target", choices=["cuda", "cpu"], default=None)
    parser.add_argument("--only", default="", help="comma-separated problem names")
    parser.add_argument("--jobs", type=int, default=8, help="builds at once")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    target = args.target or default_target()
    wanted = {n for n in args.only.split(",") if n}
    pairs = [
        (p, candidates_for(p.path)[target])
        for p in load_problem_dir(builtin_dir())
        if target in candidates_for(p.path) and (not wanted or p.name in wanted)
    ]

    start = time.perf_counter()

    def build(pair):
        return start_build(pair[1], target).result()

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        builds = list(pool.map(build, pairs))
    build_wall = time.perf_counter() - start
    print(f"built {len(pairs)} candidates in {build_wall:.1f} s ({args.jobs} at once)", flush=True)

    rows, results = [], []
    for (problem, candidate), built in zip(pairs, builds, strict=True):
        result = evaluate(
            problem.path, candidate, EvaluateOptions(target=target, trials=args.trials)
        )
        results.append(result.to_dict())
        rows.append(
            (
                problem.name,
                result.status.value,
                result.speedup,
                result.candidate_ms,
                result.reference_ms,
                result.max_abs_error,
                built.compile_s,
                result.reason,
            )
        )
        steps = phases_text(result.phases_s)
        print(
            f"  {problem.name}: {result.status.value} ({result.duration_s:.1f} s: {steps})",
            flush=True,
        )

    header = ("problem", "status", "speedup", "cand_ms", "ref_ms", "max_abs_err", "compile_s")
    print("\n" + " | ".join(header) + " | reason")
    print("|".join("---" for _ in range(len(header) + 1)))
    for name, status, speedup, cand, ref, err, compile_s, reason in rows:
        cells = [
            name,
            status,
            _f(speedup, 3),
            _f(cand, 4),
            _f(ref, 4),
            _f(err, 2),
            _f(compile_s, 3),
        ]
        print(" | ".join(cells) + " | " + (reason[:120] if reason else ""))
    correct = sum(1 for r in rows if r[1] == "correct")
    print(
        f"\n{correct} of {len(rows)} correct on {target}; total {time.perf_counter() - start:.0f} s"
    )
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0 if correct == len(rows) else 1


def _f(value, digits):
    return "-" if value is None else f"{value:.{digits}g}"


if __name__ == "__main__":
    sys.exit(main())
