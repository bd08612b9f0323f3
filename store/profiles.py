"""Profile rows: one per kernel of a profiled candidate, with the judge's block kept beside it.

A profile that produced no metrics (ncu missing, counters not permitted, a failure) writes no
row; how each profile went (status, message, ncu's seconds) is kept in the evaluation's
`environment["profile"]`.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from kernelwright.store.schema import Profile
from sqlalchemy import Engine
from sqlalchemy.orm import Session


def add_rows(s: Session, candidate_id: str, profile: dict[str, Any] | None) -> int:
    """Rows for a profile's kernels (a `ProfileResult.to_json()`, each kernel with its figures
    and the judge's block); how many were added."""
    if not profile or profile.get("status") != "ok":
        return 0
    for kernel in profile.get("kernels", []):
        s.add(
            Profile(
                candidate_id=candidate_id,
                metrics={
                    **kernel,
                    "device_name": profile.get("device_name"),
                    "report": profile.get("report"),
                    "ncu_seconds": profile.get("seconds"),
                },
                duration_ms=kernel.get("duration_ms"),
                sm_throughput_pct=kernel.get("sm_pct"),
                dram_throughput_pct=kernel.get("dram_pct"),
                achieved_occupancy_pct=kernel.get("occupancy_pct"),
                bound=kernel.get("bound"),
            )
        )
    return len(profile.get("kernels", []))


def with_outcome(environment: dict[str, Any], profile: dict[str, Any] | None) -> dict[str, Any]:
    if not profile:
        return environment
    outcome = {k: profile.get(k) for k in ("status", "message", "seconds", "device_name")}
    return {**environment, "profile": outcome}


def add_profile(engine: Engine, candidate_id: str, profile: dict[str, Any]) -> int:
    from kernelwright.store.repo import _candidate, session

    with session(engine) as s:
        _candidate(s, candidate_id)  # NotFound for an unknown id
        s.execute(sa.delete(Profile).where(Profile.candidate_id == candidate_id))
        return add_rows(s, candidate_id, profile)


def judge_metrics(engine: Engine, candidate_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The judge's block per candidate id (kernel name → labelled lines), for those profiled."""
    if not candidate_ids:
        return {}
    found: dict[str, dict[str, Any]] = {}
    with Session(engine) as s:
        query = sa.select(Profile).where(Profile.candidate_id.in_(candidate_ids))
        for row in s.scalars(query.order_by(Profile.id)):
            kernel = row.metrics.get("kernel", f"kernel {row.id}")
            found.setdefault(row.candidate_id, {})[kernel] = row.metrics.get("judge", {})
    return found


def kernel_rows(s: Session, candidate_id: str) -> list[dict[str, Any]]:
    """A candidate's profiled kernels, each with its figures and the judge's block."""
    query = sa.select(Profile).where(Profile.candidate_id == candidate_id)
    return [dict(row.metrics) for row in s.scalars(query.order_by(Profile.id))]
