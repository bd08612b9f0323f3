"""The phases of a long command on a terminal: one line per phase with its seconds, the current
one with a spinner, each finished one left in place (`evaluate`: building, the reference,
verifying and timing, ...). Nothing is shown where stderr is not a terminal (logs, pipes, CI):
there the command's own output says what happened."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


class Phases:
    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress: Progress | None = None
        self._task: Any = None
        self.seen: list[str] = []  # every phase named, in order (also where nothing is shown)

    def __enter__(self) -> Phases:
        if self.console.is_terminal:
            self._progress = Progress(
                SpinnerColumn(finished_text="[green]✓[/]"),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
        return self

    def step(self, description: str) -> None:
        """The previous phase is done; `description` starts (empty: only end the previous)."""
        if self.seen and self.seen[-1] == description:
            return
        if description:
            self.seen.append(description)
        if self._progress is None:
            return
        self._finish()
        if description:
            self._task = self._progress.add_task(escape(description), total=1)

    def _finish(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=1)
            self._task = None

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            if exc[0] is None:
                self._finish()
            self._progress.stop()
