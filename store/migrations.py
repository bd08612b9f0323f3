"""Schema migrations: an ordered list of named steps, each applied once, in its own transaction.

The table `kw_migrations` records the names applied. `upgrade` applies the missing steps in
order; a database that has a step this version does not know was written by a newer kernelwright
and is refused, untouched, and so is one that holds tables but no ledger (someone else's
database, see `check`). Steps are frozen: once released, a step never changes; a schema change
is a new step appended to `STEPS` (and the models in `store.schema` follow it; a test pins both).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from kernelwright.errors import KernelwrightError
from sqlalchemy.engine import Connection, Engine


class SchemaTooNew(KernelwrightError):
    """The database was written by a newer kernelwright."""


class NotAHistory(KernelwrightError):
    """The database holds tables but no kernelwright ledger: it belongs to something else."""


def _v1_tables(metadata: sa.MetaData) -> None:
    """The first schema, frozen as it was released (not imported from store.schema)."""
    json = sa.JSON
    sa.Table(
        "runs",
        metadata,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("target", sa.String(8), nullable=False),
        sa.Column("models", json, nullable=False),
        sa.Column("config", json, nullable=False),
        sa.Column("environment", json, nullable=False),
        sa.Column("harness_version", sa.String(32), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=True),
        sa.Column("tokens_in", sa.Integer, nullable=False),
        sa.Column("tokens_out", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
    )
    sa.Table(
        "problems",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("content_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
    )
    sa.Table(
        "candidates",
        metadata,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "run_id",
            sa.String(32),
            sa.ForeignKey("runs.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("problem_id", sa.Integer, sa.ForeignKey("problems.id"), nullable=False),
        sa.Column(
            "parent_id",
            sa.String(32),
            sa.ForeignKey("candidates.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("parents", json, nullable=False),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("source_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("build", json, nullable=False),
        sa.Column("warnings", json, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "evaluations",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "candidate_id",
            sa.String(32),
            sa.ForeignKey("candidates.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("speedup", sa.Float, nullable=True),
        sa.Column("candidate_ms", sa.Float, nullable=True),
        sa.Column("reference_ms", sa.Float, nullable=True),
        sa.Column("max_abs_error", sa.Float, nullable=True),
        sa.Column("max_rel_error", sa.Float, nullable=True),
        sa.Column("compile_s", sa.Float, nullable=True),
        sa.Column("cached", sa.Boolean, nullable=False),
        sa.Column("trials", sa.Integer, nullable=False),
        sa.Column("cases", json, nullable=False),
        sa.Column("timing", json, nullable=False),
        sa.Column("environment", json, nullable=False),
        sa.Column("log", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "profiles",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "candidate_id",
            sa.String(32),
            sa.ForeignKey("candidates.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("metrics", json, nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=True),
        sa.Column("sm_throughput_pct", sa.Float, nullable=True),
        sa.Column("dram_throughput_pct", sa.Float, nullable=True),
        sa.Column("achieved_occupancy_pct", sa.Float, nullable=True),
        sa.Column("bound", sa.String(16), nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "llm_calls",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "run_id",
            sa.String(32),
            sa.ForeignKey("runs.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column(
            "candidate_id",
            sa.String(32),
            sa.ForeignKey("candidates.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("reply", sa.Text, nullable=False),
        sa.Column("tokens_in", sa.Integer, nullable=False),
        sa.Column("tokens_out", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("latency_s", sa.Float, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def m0001_initial(conn: Connection) -> None:
    metadata = sa.MetaData()
    _v1_tables(metadata)
    metadata.create_all(conn)


def m0002_lookup_indexes(conn: Connection) -> None:
    """`runs show` and `runs tree` list a run's candidates by status and round."""
    conn.execute(sa.text("CREATE INDEX ix_candidates_run_status ON candidates (run_id, status)"))
    conn.execute(sa.text("CREATE INDEX ix_problems_name ON problems (name)"))


def m0003_loop_columns(conn: Connection) -> None:
    """Why a run ended (rounds done, budget, target speedup, time limit, Ctrl-C), and which
    problem each LLM call was about (a bench run holds many; a failed call has no candidate)."""
    conn.execute(sa.text("ALTER TABLE runs ADD COLUMN stop_reason TEXT NOT NULL DEFAULT ''"))
    conn.execute(
        sa.text("ALTER TABLE llm_calls ADD COLUMN problem VARCHAR(255) NOT NULL DEFAULT ''")
    )


def m0004_speedup_spread(conn: Connection) -> None:
    """Each evaluation's speedup spread: p20 and p80 of its timing's per-round ratios (linear
    interpolation), filled in for the evaluations already stored from their `timing` JSON."""
    conn.execute(sa.text("ALTER TABLE evaluations ADD COLUMN speedup_p20 FLOAT"))
    conn.execute(sa.text("ALTER TABLE evaluations ADD COLUMN speedup_p80 FLOAT"))
    table = sa.table(
        "evaluations",
        sa.column("id", sa.Integer),
        sa.column("timing", sa.JSON),
        sa.column("speedup_p20", sa.Float),
        sa.column("speedup_p80", sa.Float),
    )

    def quantile(ordered: list[float], q: float) -> float:
        pos = q * (len(ordered) - 1)
        low = int(pos)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)

    rows = conn.execute(
        sa.select(table.c.id, table.c.timing).where(table.c.speedup_p20.is_(None))
    ).all()
    for row_id, timing in rows:
        ratios = (timing or {}).get("round_ratios") if isinstance(timing, dict) else None
        values = sorted(float(r) for r in ratios or [] if isinstance(r, int | float))
        if values:
            conn.execute(
                table.update()
                .where(table.c.id == row_id)
                .values(speedup_p20=quantile(values, 0.2), speedup_p80=quantile(values, 0.8))
            )


def m0005_model_runs(conn: Connection) -> None:
    """`kernelwright hotspots` measurements and `kernelwright apply` results (issue 24)."""
    metadata = sa.MetaData()
    sa.Table("runs", metadata, sa.Column("id", sa.String(32), primary_key=True))
    sa.Table(
        "hotspots",
        metadata,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("target", sa.String(8), nullable=False),
        sa.Column("forward_ms", sa.Float, nullable=True),
        sa.Column("out_dir", sa.Text, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    sa.Table(
        "applies",
        metadata,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "run_id",
            sa.String(32),
            sa.ForeignKey("runs.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("target", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("speedup", sa.Float, nullable=True),
        sa.Column("speedup_p20", sa.Float, nullable=True),
        sa.Column("speedup_p80", sa.Float, nullable=True),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    metadata.tables["hotspots"].create(conn)
    metadata.tables["applies"].create(conn)


STEPS: list[tuple[str, Callable[[Connection], None]]] = [
    ("0001_initial", m0001_initial),
    ("0002_lookup_indexes", m0002_lookup_indexes),
    ("0003_loop_columns", m0003_loop_columns),
    ("0004_speedup_spread", m0004_speedup_spread),
    ("0005_model_runs", m0005_model_runs),
]

_LEDGER = sa.Table(
    "kw_migrations",
    sa.MetaData(),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("applied_at", sa.DateTime, nullable=False, server_default=sa.func.now()),
)


# Every table kernelwright has ever created, ledger aside.
OUR_TABLES = frozenset(
    {"runs", "problems", "candidates", "evaluations", "profiles", "llm_calls"}
    | {"hotspots", "applies"}
)


def where(engine: Engine) -> str:
    """The database as a user knows it: the file for SQLite, else the URL without password."""
    if engine.dialect.name == "sqlite" and engine.url.database:
        return engine.url.database
    return engine.url.render_as_string(hide_password=True)


def check(engine: Engine) -> None:
    """Refuse, untouched, a database that has tables but no ledger.

    The ledger is created (and committed) before any other table, so a kernelwright history
    without it has no tables at all. An SQLite file is the history's own, so any table there
    means someone else's file. A PostgreSQL database may be shared with other applications,
    so there only a table named like one of ours (which creating ours would clash with) does."""
    tables = set(sa.inspect(engine).get_table_names())
    if "kw_migrations" in tables:
        return
    foreign = tables if engine.dialect.name == "sqlite" else tables & OUR_TABLES
    if foreign:
        raise NotAHistory(
            f"{where(engine)} is not a kernelwright history (it has tables of its own: "
            f"{', '.join(sorted(foreign)[:5])}); point --db, $KERNELWRIGHT_DB or "
            "$KERNELWRIGHT_HOME elsewhere (it is left unchanged)"
        )


def applied(engine: Engine) -> list[str]:
    if not sa.inspect(engine).has_table("kw_migrations"):
        return []
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(sa.select(_LEDGER.c.name).order_by(_LEDGER.c.name))]


def upgrade(engine: Engine, until: str | None = None) -> list[str]:
    """Apply the missing steps (up to and including `until`); return the names applied."""
    check(engine)
    done = applied(engine)
    known = [name for name, _ in STEPS]
    unknown = [name for name in done if name not in known]
    if unknown:
        raise SchemaTooNew(
            f"the history database {engine.url.render_as_string(hide_password=True)} was written "
            f"by a newer kernelwright (migration {unknown[-1]}); upgrade kernelwright to use it"
        )
    new = []
    with engine.begin() as conn:
        _LEDGER.create(conn, checkfirst=True)
    for name, step in STEPS:
        if name in done:
            continue
        with engine.begin() as conn:
            # Another process may have applied it since we looked: the ledger row is the lock.
            if conn.execute(sa.select(_LEDGER.c.name).where(_LEDGER.c.name == name)).first():
                continue
            step(conn)
            conn.execute(_LEDGER.insert().values(name=name))
        new.append(name)
        if name == until:
            break
    return new
