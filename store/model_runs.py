"""The history of whole models: `kernelwright hotspots` measurements and `kernelwright apply`
results (tables `hotspots` and `applies`, migration 0005). Each write is one transaction."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from kernelwright.store.schema import ApplyRecord, HotspotsRecord, Problem
from sqlalchemy.engine import Engine


def add_hotspots(engine: Engine, result: dict[str, Any]) -> str:
    from kernelwright.store.repo import new_id, session

    record_id = new_id()
    with session(engine) as s:
        s.add(
            HotspotsRecord(
                id=record_id,
                model=result["model"],
                target=result["target"],
                forward_ms=result.get("forward_ms"),
                out_dir=result["out_dir"],
                data=result,
            )
        )
    return record_id


def add_apply(engine: Engine, run_id: str, result: dict[str, Any]) -> str:
    from kernelwright.store.repo import new_id, session

    record_id = new_id()
    with session(engine) as s:
        s.add(
            ApplyRecord(
                id=record_id,
                run_id=run_id,
                model=result["model"],
                target=result["target"],
                status=result["status"],
                speedup=result.get("speedup"),
                speedup_p20=result.get("speedup_p20"),
                speedup_p80=result.get("speedup_p80"),
                data=result,
            )
        )
    return record_id


def for_run(engine: Engine, run_id: str) -> dict[str, Any]:
    """What the report shows of a run's model: its apply results (newest first) and the hotspots
    measurements whose problems the run worked on (matched by problem file)."""
    from kernelwright.store.repo import session
    from kernelwright.store.schema import Candidate

    with session(engine) as s:
        applies = s.scalars(
            sa.select(ApplyRecord)
            .where(ApplyRecord.run_id == run_id)
            .order_by(ApplyRecord.created_at.desc())
        ).all()
        files = set(
            s.scalars(
                sa.select(Problem.path)
                .join(Candidate, Candidate.problem_id == Problem.id)
                .where(Candidate.run_id == run_id)
            ).all()
        )
        found = []
        if files:
            for record in s.scalars(
                sa.select(HotspotsRecord).order_by(HotspotsRecord.created_at.desc())
            ):
                written = {p["file"] for p in (record.data or {}).get("problems", [])}
                if written & files:
                    found.append(
                        {"id": record.id, "created_at": str(record.created_at)[:19], **record.data}
                    )
                    break  # the latest measurement that wrote them
        return {
            "applies": [
                {"id": a.id, "created_at": str(a.created_at)[:19], **(a.data or {})}
                for a in applies
            ],
            "hotspots": found,
        }
