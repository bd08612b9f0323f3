"""What the agents said about a candidate, read from the stored replies with the agents' own
parsers (the store keeps the text; only the core may join it with `agents`)."""

from __future__ import annotations

from typing import Any


def what_they_said(status: str, words: dict[str, Any]) -> dict[str, Any]:
    """The coder's one-line summary of what it tried and the judge's verdict, read from the
    stored replies with the agents' own parsers: what the next prompt was given."""
    from kernelwright.agents.coder import summarize
    from kernelwright.agents.judge import mode_for
    from kernelwright.agents.parsing import parse_verdict

    coder, judge = words["coder"], words["judge"]
    verdict = None
    if judge is not None:
        parsed = parse_verdict(judge["reply"], mode_for(status))
        verdict = {"call": judge["call"], "fields": parsed.fields, "text": parsed.text}
    summary = {"call": coder["call"], "text": summarize(coder["reply"])} if coder else None
    return {"coder_summary": summary, "judge_verdict": verdict}
