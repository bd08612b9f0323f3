"""Rendering the prompt templates in `kernelwright.prompts` (jinja2 only; no prompt text here).

Undefined variables are errors (StrictUndefined), so a template and its caller cannot drift
apart silently. Every template starts with a `{# variables: ... #}` header; a test holds each
header equal to the variables the template uses.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2
from kernelwright.agents.llm import Message


def _ms(value: float) -> str:
    return f"{value:.4g} ms"  # 4 significant digits: 0.04512 ms and 812.3 ms alike


def _speedup(value: float) -> str:
    return f"{value:.3g}x"


def _cell(value: str) -> str:
    """Text made safe for one markdown table cell."""
    return " ".join(str(value).split()).replace("|", "\\|")


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("kernelwright.prompts", "."),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        autoescape=False,  # plain text for a model, not HTML
    )
    env.filters.update(ms=_ms, speedup=_speedup, cell=_cell)
    return env


def render(template: str, **variables: Any) -> str:
    text = environment().get_template(template).render(**variables)
    return _squeeze(text).strip() + "\n"


def _squeeze(text: str) -> str:
    """At most one blank line in a row outside code blocks, so optional sections leave no
    holes; inside a fenced block (code, logs) every line stays as it was."""
    out: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        blank = not line.strip()
        if blank and not fenced and out and not out[-1].strip():
            continue
        out.append("" if blank and not fenced else line)
    return "\n".join(out)


def messages(system: str, user: str, **variables: Any) -> list[Message]:
    """A system and a user message from two templates sharing one set of variables."""
    system_vars = {k: v for k, v in variables.items() if k == "target"}
    return [
        Message("system", render(system, **system_vars)),
        Message("user", render(user, **variables)),
    ]


def as_text(messages: list[Message]) -> str:
    """How a prompt is stored in the history: each message under its role."""
    return "\n".join(f"### {m.role}\n{m.content}" for m in messages)
