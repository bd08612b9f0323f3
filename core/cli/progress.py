"""What `optimize` and `bench` print while they run: one line that stays per finished candidate
(round, id, status, speedup with its spread), above one live status line on a terminal; and
the per-round rows of the summary."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape


class Display:
    """On a terminal: one line that stays per finished candidate, above one live status line.
    Elsewhere (logs, CI): the same lines, and each status change as a plain line."""

    def __init__(self, console: Console, enabled: bool) -> None:
        self.console = console
        self.enabled = enabled
        self._status: Any = None

    def __enter__(self) -> Display:
        if self.enabled and self.console.is_terminal:
            self._status = self.console.status("starting")
            self._status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)

    def update(self, p: Any) -> None:
        if not self.enabled:
            return
        from kernelwright import spread

        if p.finished is not None:
            # model and candidate text: printed as text, never read as markup
            self.console.print(finished_line(p.finished), markup=False, highlight=False)
        shown = spread.cell(p.best_speedup, p.best_speedup_p20, p.best_speedup_p80)
        best = f"{shown} ({p.best_id})" if p.best_speedup is not None else "-"
        line = (
            f"round {p.round}/{p.rounds} · {p.candidates} candidates, {p.correct} correct · "
            f"best {best} · ${p.cost_usd:.4f} · {p.message}"
        )
        if self._status is not None:
            self._status.update(escape(line))
        elif p.finished is None:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)


REASON_CHARS = 90


def finished_line(f: dict[str, Any], problem: str | None = None) -> str:
    """One finished candidate: `round 2 · 3aeb039655bc · correct · 0.0412x (p20-p80 ...)`; a
    failed one with the start of its reason."""
    from kernelwright import spread

    head = f"round {f['round']} · {f['id']}" + (f" · {problem}" if problem else "")
    if f["status"] == "correct":
        shown = spread.text(f["speedup"], f.get("speedup_p20"), f.get("speedup_p80"))
        return f"{head} · correct · {shown}"
    reason = " ".join(str(f.get("reason") or "").split())
    if len(reason) > REASON_CHARS:
        reason = reason[: REASON_CHARS - 1] + "…"
    return f"{head} · {f['status']}" + (f": {reason}" if reason else "")


def per_round(engine: Any, run_id: str) -> list[dict[str, Any]]:
    """Per round: candidates, how they ended, the best speedup and its spread (as `runs show`)."""
    from kernelwright.store import repo

    return list(repo.show_run(engine, run_id)["rounds"])
