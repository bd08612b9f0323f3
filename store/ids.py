"""Ids as a person types them: a full id, or any unique prefix of at least 4 characters.

Only the review side resolves prefixes (the CLI, before it asks `store.repo` anything); what the
loop writes always names full ids, so a prefix can never make a write land on the wrong row.
LLM call ids are numbers, taken whole (`store.review`). An unknown id raises `NotFound`, an
ambiguous prefix `AmbiguousId`: both are one line that says what to do, and both are `BadInput`
(exit code 2).
"""

from __future__ import annotations

import sqlalchemy as sa
from kernelwright.errors import BadInput
from kernelwright.store.repo import NotFound, session
from kernelwright.store.schema import Candidate, Run
from sqlalchemy.engine import Engine

MIN_PREFIX = 4
SHOWN_MATCHES = 6  # an ambiguous prefix lists this many matches, then how many more


class AmbiguousId(BadInput):
    """A prefix that starts more than one id."""


def run_id(engine: Engine, text: str) -> str:
    """The full id of the run `text` names."""
    return _resolve(engine, Run, text, "run", "`kernelwright runs list` shows the runs")


def candidate_id(engine: Engine, text: str) -> str:
    """The full id of the candidate `text` names."""
    hint = "`kernelwright runs tree RUN` lists a run's candidates"
    return _resolve(engine, Candidate, text, "candidate", hint)


def _resolve(
    engine: Engine, table: type[Run] | type[Candidate], text: str, what: str, hint: str
) -> str:
    with session(engine) as s:
        if s.get(table, text) is not None:
            return text
        if len(text) < MIN_PREFIX:
            # a 1-3 character prefix would match by accident more often than on purpose
            raise NotFound(
                f"no {what} {text!r} in the history (a prefix needs at least {MIN_PREFIX} "
                f"characters); {hint}"
            )
        query = sa.select(table.id).where(table.id.startswith(text, autoescape=True))
        matches = list(s.scalars(query.order_by(table.id)))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotFound(f"no {what} {text!r} in the history; {hint}")
    shown = ", ".join(matches[:SHOWN_MATCHES])
    more = f" and {len(matches) - SHOWN_MATCHES} more" if len(matches) > SHOWN_MATCHES else ""
    raise AmbiguousId(
        f"{what} id {text!r} is ambiguous: it starts {len(matches)} {what}s ({shown}{more}); "
        "give more of the id"
    )
