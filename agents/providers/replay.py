"""A model that replays scripted replies from a JSONL file: for demos and for testing the loop.

Each line is an object with `role` ("coder" or "judge"), `text`, and optionally `problem` (a
problem's file name without `.py`). A request takes the first unused line, in file order, whose
role matches and whose problem matches or is absent. When none is left the model raises
`RepliesExhausted`, and the run ends as if its budget were spent, results kept. A file with no
reply at all is bad input (`BadInput`), and so, for a new run, is one with no coder reply for its
problem (`has_reply`, checked by the CLI before the run exists).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from kernelwright.agents.llm import Completion, Message, RepliesExhausted, Usage
from kernelwright.errors import BadInput

ROLES = ("coder", "judge")


@dataclass
class _Reply:
    role: str
    text: str
    problem: str | None
    used: bool = False


class ReplayModel:
    provider = "replay"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.model = self.path.name
        self._replies = _load(self.path)
        self._lock = threading.Lock()  # the loop asks from several threads at once

    def skip(self, role: str, problem: str | None, count: int) -> None:
        """Mark the first `count` replies for role and problem used: a resumed run goes on where
        the interrupted one stopped instead of replaying its replies again."""
        with self._lock:
            for reply in self._replies:
                if count <= 0:
                    break
                if not reply.used and reply.role == role and reply.problem in (None, problem):
                    reply.used = True
                    count -= 1

    def has_reply(self, role: str, problem: str | None) -> bool:
        """Whether a request for role and problem would get a reply now."""
        return self.remaining(role, problem) > 0

    def remaining(self, role: str, problem: str | None) -> int:
        """How many requests for role and problem would still get a reply (a problem's run
        shows how many rounds its script holds from this)."""
        with self._lock:
            return sum(
                not r.used and r.role == role and r.problem in (None, problem)
                for r in self._replies
            )

    def complete(
        self,
        messages: list[Message],
        *,
        role: str,
        problem: str | None = None,
        max_tokens: int = 8192,
    ) -> Completion:
        with self._lock:
            reply = next(
                (
                    r
                    for r in self._replies
                    if not r.used and r.role == role and r.problem in (None, problem)
                ),
                None,
            )
            if reply is not None:
                reply.used = True
        if reply is not None:
            prompt_chars = sum(len(m.content) for m in messages)
            usage = Usage(prompt_chars // 4, len(reply.text) // 4)
            return Completion(reply.text, usage, 0.0, self.model, self.provider, 0.0)
        where = f" for problem {problem!r}" if problem else ""
        raise RepliesExhausted(f"replay file {self.path.name} has no more {role} replies{where}")


def _load(path: Path) -> list[_Reply]:
    if not path.is_file():
        raise BadInput(f"replay file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(
            f"replay file {path} is not UTF-8 text (byte {exc.start}); give a JSONL file"
        ) from exc
    except OSError as exc:
        raise BadInput(f"cannot read replay file {path}: {exc.strerror or exc}") from exc
    replies = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInput(f"replay file {path} line {number} is not JSON: {exc.msg}") from exc
        if (
            not isinstance(data, dict)
            or data.get("role") not in ROLES
            or not isinstance(data.get("text"), str)
        ):
            raise BadInput(
                f'replay file {path} line {number} needs "role" (coder or judge) and "text"'
            )
        problem = data.get("problem")
        if problem is not None and not isinstance(problem, str):
            raise BadInput(f'replay file {path} line {number}: "problem" must be a string')
        replies.append(_Reply(data["role"], data["text"], problem))
    if not replies:  # a run from it would "finish" at once, with nothing asked or written
        raise BadInput(
            f'replay file {path} holds no replies; give one JSON object per line with "role" '
            '(coder or judge) and "text"'
        )
    return replies
