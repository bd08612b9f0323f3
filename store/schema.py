"""The history's tables, as typed SQLAlchemy 2.0 models.

What is stored: runs (config snapshot, models, target, environment, status, times, totals),
problems (content hash, name, source), candidates (lineage, round, source, status, build facts),
evaluations (verdict, timing statistics, errors, environment, log), profiles (metrics and key
columns) and LLM calls (role, provider, model, prompt, reply, tokens, cost, latency, error).
API keys are never stored: no column holds configuration taken from the environment.

The migrations in `store.migrations` create exactly these tables; a test pins the two together.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # stored as naive UTC, the same on every backend


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # evaluate | optimize | bench
    status: Mapped[str] = mapped_column(String(16))  # running | finished | failed | interrupted
    target: Mapped[str] = mapped_column(String(8))
    models: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    environment: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    harness_version: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    stop_reason: Mapped[str] = mapped_column(Text, default="", server_default="")


class Problem(Base):
    __tablename__ = "problems"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)


class Candidate(Base):
    __tablename__ = "candidates"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    problem_id: Mapped[int] = mapped_column(ForeignKey("problems.id"))
    parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("candidates.id", ondelete="SET NULL"), nullable=True
    )
    parents: Mapped[list[Any]] = mapped_column(JSON, default=list)  # all parents, for merges
    round: Mapped[int] = mapped_column(Integer, default=0)
    source: Mapped[str] = mapped_column(Text)
    source_hash: Mapped[str] = mapped_column(String(64))
    # pending (written, not yet evaluated), no_code, or an evaluation status
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    build: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # compile_s, cached, regs...
    warnings: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class Evaluation(Base):
    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    candidate_id: Mapped[str] = mapped_column(
        ForeignKey("candidates.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    speedup: Mapped[float | None] = mapped_column(Float, nullable=True)
    # p20 and p80 of the timing's per-round ratios (kernelwright.spread), added by 0004
    speedup_p20: Mapped[float | None] = mapped_column(Float, nullable=True)
    speedup_p80: Mapped[float | None] = mapped_column(Float, nullable=True)
    candidate_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    reference_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_abs_error: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_rel_error: Mapped[float | None] = mapped_column(Float, nullable=True)
    compile_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    trials: Mapped[int] = mapped_column(Integer, default=0)
    cases: Mapped[list[Any]] = mapped_column(JSON, default=list)
    timing: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    environment: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    log: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class Profile(Base):
    __tablename__ = "profiles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    candidate_id: Mapped[str] = mapped_column(
        ForeignKey("candidates.id", ondelete="CASCADE"), index=True
    )
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    duration_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    sm_throughput_pct: Mapped[float | None] = mapped_column(Float, nullable=True)
    dram_throughput_pct: Mapped[float | None] = mapped_column(Float, nullable=True)
    achieved_occupancy_pct: Mapped[float | None] = mapped_column(Float, nullable=True)
    bound: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class LlmCall(Base):
    __tablename__ = "llm_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    candidate_id: Mapped[str | None] = mapped_column(
        ForeignKey("candidates.id", ondelete="SET NULL"), nullable=True
    )
    role: Mapped[str] = mapped_column(String(16))  # coder | judge
    problem: Mapped[str] = mapped_column(String(255), default="", server_default="")
    provider: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(128))
    prompt: Mapped[str] = mapped_column(Text)
    reply: Mapped[str] = mapped_column(Text, default="")
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    latency_s: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class HotspotsRecord(Base):
    """One `kernelwright hotspots` measurement of a model (added by 0005)."""

    __tablename__ = "hotspots"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(Text)
    target: Mapped[str] = mapped_column(String(8))
    forward_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    out_dir: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the command's JSON
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class ApplyRecord(Base):
    """One `kernelwright apply` of a run's best candidates to a model (added by 0005)."""

    __tablename__ = "applies"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(Text)
    target: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))  # applied | nothing_applied
    speedup: Mapped[float | None] = mapped_column(Float, nullable=True)
    speedup_p20: Mapped[float | None] = mapped_column(Float, nullable=True)
    speedup_p80: Mapped[float | None] = mapped_column(Float, nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the command's JSON
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
