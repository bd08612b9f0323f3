"""Write a replay file whose coder answers each shipped problem with its handwritten candidate.

    python benchmarks/shipped_replay.py [--target cuda|cpu] [--out FILE.jsonl]
    kernelwright bench builtin --target cuda --model replay:FILE.jsonl --rounds 1 --json

One coder line per problem that has a candidate for the target (`problem` names it), so `bench`
over the whole shipped suite measures the harness itself (build, verify, time, profile) per
problem, with no LLM in the way: the figure `bench` prints as seconds per problem is the
pipeline's own cost. Problems without a candidate for the target get no line; their run ends as
soon as the replies for them run out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kernelwright.problem import load_problem_dir
from kernelwright.suite import builtin_dir, candidates_for


def lines(target: str) -> list[dict[str, str]]:
    out = []
    for problem in load_problem_dir(builtin_dir()):
        candidate = candidates_for(problem.path).get(target)
        if candidate is None:
            continue
        code = candidate.read_text(encoding="utf-8")
        text = f"The handwritten candidate shipped with kernelwright.\n```python\n{code}```\n"
        out.append({"role": "coder", "problem": problem.name, "text": text})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--target", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--out", type=Path, default=None, help="default: stdout")
    args = parser.parse_args()
    text = "".join(json.dumps(line) + "\n" for line in lines(args.target))
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {text.count(chr(10))} replies to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
