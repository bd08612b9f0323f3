"""Reading LLM replies: the candidate file in a coder reply, the verdict in a judge reply.

Coder replies: the candidate is the fenced code block that defines `class ModelNew`; among several
such blocks the last one wins (models often draft, then correct). A reply with no fenced block is
taken whole only if it parses as Python and defines `ModelNew`. Otherwise there is no code, and
the candidate ends `no_code` (a status for the loop, never an exception).

Judge replies: a JSON object (bare, or in a ```json block). Repair mode expects `issue` and `fix`;
optimize mode `bottleneck` and `plan`. A reply that does not parse is passed on as free text.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass

from kernelwright import pyast

_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)```", re.DOTALL)


def _defines_model_new(code: str) -> bool:
    try:
        tree = pyast.parse(code)
    except SyntaxError:
        return "class ModelNew" in code  # still the candidate; the build will report the error
    return any(isinstance(n, ast.ClassDef) and n.name == "ModelNew" for n in tree.body)


def extract_candidate(reply: str) -> str | None:
    """The candidate source in a coder reply, or None (no_code)."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(reply)]
    python = [body for lang, body in blocks if lang in ("", "python", "py", "python3")]
    with_model = [body for body in python if _defines_model_new(body)]
    if with_model:
        return with_model[-1].rstrip() + "\n"
    if not blocks and _defines_model_new(reply):
        try:
            pyast.parse(reply)
        except SyntaxError:
            return None
        return reply.strip() + "\n"
    return None


@dataclass(frozen=True)
class Verdict:
    """What the judge said: `fields` when its JSON parsed, else the raw text only."""

    text: str
    fields: dict[str, str] | None

    @property
    def parsed(self) -> bool:
        return self.fields is not None


REPAIR_KEYS = ("issue", "fix")
OPTIMIZE_KEYS = ("bottleneck", "plan")


def parse_verdict(reply: str, mode: str) -> Verdict:
    """Parse a judge reply for `mode` ("repair" or "optimize")."""
    keys = REPAIR_KEYS if mode == "repair" else OPTIMIZE_KEYS
    for candidate in _json_candidates(reply):
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and all(
            isinstance(data.get(k), str) and data[k].strip() for k in keys
        ):
            return Verdict(
                reply, {k: str(v) for k, v in data.items() if isinstance(v, str | int | float)}
            )
    return Verdict(reply, None)


def _json_candidates(reply: str) -> list[str]:
    found = [body for lang, body in _FENCE.findall(reply) if lang.lower() in ("json", "")]
    start, end = reply.find("{"), reply.rfind("}")
    if start != -1 and end > start:
        found.append(reply[start : end + 1])
    return found
