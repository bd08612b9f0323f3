"""The history store on SQLite and, where KERNELWRIGHT_TEST_POSTGRES_URL is set, PostgreSQL.

Data here is recorded results (EvaluationResult records built by hand), as the loop will write them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from kernelwright.records import EvaluationResult, Status
from kernelwright.store import migrations, repo
from kernelwright.store.db import open_engine
from kernelwright.store.schema import Base

PG_URL = os.environ.get("KERNELWRIGHT_TEST_POSTGRES_URL")
BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(
            not PG_URL, reason="set KERNELWRIGHT_TEST_POSTGRES_URL to test PostgreSQL (CI does)"
        ),
    ),
]
PROBLEM = {
    "content_hash": "h" * 64,
    "name": "scale_add",
    "path": "/p/scale_add.py",
    "source": "class Model: ...",
}


def _drop_everything(url: str) -> None:
    """Every table in the database, not a list of ours: a list goes stale when a migration adds
    a table, and the next test then finds "tables of its own" and refuses the database."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for table in sa.inspect(conn).get_table_names():
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{table}" CASCADE'))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    assert PG_URL
    _drop_everything(PG_URL)
    return PG_URL


def result(
    status: Status = Status.CORRECT, speedup: float | None = 1.5, reason: str = ""
) -> EvaluationResult:
    return EvaluationResult(
        status=status,
        reason=reason,
        target="cpu",
        problem="/p/scale_add.py",
        problem_hash="h" * 64,
        candidate="/c.py",
        trials=5,
        speedup=speedup,
        candidate_ms=1.0 if speedup else None,
        reference_ms=speedup,
        compile_s=3.0,
        log="build log text",
        environment={"cpu": "test"},
        phases_s={"reference_s": 1.0, "candidate_s": 2.0},
    )


def _columns(engine: sa.Engine) -> dict[str, dict[str, tuple[str, bool]]]:
    inspector = sa.inspect(engine)
    return {
        table: {
            c["name"]: (type(c["type"]).__name__, bool(c["nullable"]))
            for c in inspector.get_columns(table)
        }
        for table in inspector.get_table_names()
        if table != "kw_migrations"
    }


def test_migrating_an_empty_database_gives_exactly_the_models(url, tmp_path):
    engine = open_engine(url)
    assert migrations.applied(engine) == [name for name, _ in migrations.STEPS]
    reference = sa.create_engine(f"sqlite:///{tmp_path / 'models.db'}")
    Base.metadata.create_all(reference)
    got, want = _columns(engine), _columns(reference)
    assert set(got) == set(want)
    for table, columns in want.items():
        assert set(got[table]) == set(columns), table
        for name, (_, nullable) in columns.items():
            assert got[table][name][1] == nullable, (table, name)
    indexes = {i["name"] for i in sa.inspect(engine).get_indexes("candidates")}
    assert "ix_candidates_run_status" in indexes


def test_an_older_database_upgrades_with_its_data(url):
    engine = sa.create_engine(url)
    assert migrations.upgrade(engine, until="0001_initial") == ["0001_initial"]
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO runs (id, kind, status, target, models, config, environment, "
                "harness_version, started_at, tokens_in, tokens_out, cost_usd) VALUES "
                "('old1', 'evaluate', 'finished', 'cpu', '{}', '{}', '{}', '0.0.1', "
                "'2026-01-01 00:00:00', 0, 0, 0.0)"
            )
        )
    engine.dispose()
    engine = open_engine(url)
    assert migrations.applied(engine)[-1] == migrations.STEPS[-1][0]
    assert [r["id"] for r in repo.list_runs(engine)] == ["old1"]


def test_a_newer_database_is_refused_and_left_untouched(url):
    engine = open_engine(url)
    run_id = repo.start_run(engine, "evaluate", "cpu", {})
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO kw_migrations (name, applied_at) "
                "VALUES ('9999_from_the_future', '2030-01-01 00:00:00')"
            )
        )
    before = _columns(engine)
    engine.dispose()
    with pytest.raises(migrations.SchemaTooNew, match="newer kernelwright"):
        open_engine(url)
    engine = open_engine(url, migrate=False)
    assert _columns(engine) == before
    assert [r["id"] for r in repo.list_runs(engine)] == [run_id]


def test_runs_candidates_lineage_and_totals(url):
    engine = open_engine(url)
    run_id = repo.start_run(engine, "optimize", "cpu", {"rounds": 2}, {"coder": "replay:x"})
    first = repo.add_candidate(
        engine, run_id, PROBLEM, "src0", "s0", result(Status.COMPILE_ERROR, None, "error: x")
    )
    second = repo.add_candidate(
        engine, run_id, PROBLEM, "src1", "s1", result(speedup=1.2), parents=[first], round_index=1
    )
    third = repo.add_candidate(
        engine, run_id, PROBLEM, "src2", "s2", result(speedup=2.5), parents=[second], round_index=2
    )
    repo.add_llm_call(
        engine,
        run_id,
        role="coder",
        provider="replay",
        model="x",
        prompt="p",
        reply="r",
        tokens_in=100,
        tokens_out=40,
        cost_usd=0.01,
        latency_s=0.5,
    )
    repo.finish_run(engine, run_id)
    shown = repo.show_run(engine, run_id)
    assert shown["status"] == "finished"
    assert shown["best"] == {
        "candidate": third,
        "speedup": 2.5,
        "speedup_p20": None,  # no timing, so no per-round ratios to take a spread from
        "speedup_p80": None,
        "within_noise": None,
        "problem": "scale_add",
    }
    assert [r["round"] for r in shown["rounds"]] == [0, 1, 2]
    assert shown["rounds"][0]["correct"] == 0 and shown["rounds"][2]["best_speedup"] == 2.5
    assert (shown["tokens_in"], shown["tokens_out"]) == (100, 40)
    assert shown["cost_usd"] == pytest.approx(0.01)
    rows = repo.candidate_rows(engine, run_id)
    assert [(r.id, r.parent_id) for r in rows] == [(first, None), (second, first), (third, second)]
    cand = repo.get_candidate(engine, third)
    assert cand["source"] == "src2" and cand["evaluation"]["log"] == "build log text"
    assert cand["evaluation"]["environment"]["phases_s"] == {"reference_s": 1.0, "candidate_s": 2.0}
    assert repo.best_candidate(engine, run_id)["id"] == third
    # one problem row, shared by all candidates
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM problems")).scalar() == 1
    assert repo.delete_run(engine, run_id) == 3
    with pytest.raises(repo.NotFound, match="runs list"):
        repo.show_run(engine, run_id)
    with engine.connect() as conn:
        for table in ("candidates", "evaluations", "llm_calls"):
            assert conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar() == 0


def test_unknown_ids(url):
    engine = open_engine(url)
    with pytest.raises(repo.NotFound, match="no candidate 'zzz'"):
        repo.get_candidate(engine, "zzz")
    with pytest.raises(repo.NotFound, match="no run 'zzz'"):
        repo.delete_run(engine, "zzz")
    run_id = repo.start_run(engine, "evaluate", "cpu", {})
    repo.add_candidate(engine, run_id, PROBLEM, "src", "s", result(Status.INCORRECT, None))
    with pytest.raises(repo.NotFound, match="no correct candidate"):
        repo.best_candidate(engine, run_id)


def test_api_keys_never_reach_the_database(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-never-store-me")
    db = tmp_path / "history.db"
    engine = open_engine(f"sqlite:///{db}")
    run_id = repo.start_run(engine, "optimize", "cpu", {"model": "openai:gpt-x"})
    repo.add_candidate(engine, run_id, PROBLEM, "src", "s", result())
    repo.add_llm_call(
        engine, run_id, role="judge", provider="openai", model="gpt-x", prompt="p", reply="r"
    )
    engine.dispose()
    for path in tmp_path.glob("history.db*"):
        assert b"sk-live-never-store-me" not in path.read_bytes()


WRITER = """
import sys
from kernelwright.records import EvaluationResult, Status
from kernelwright.store import repo
from kernelwright.store.db import open_engine

engine = open_engine(sys.argv[1])
run_id = repo.start_run(engine, "optimize", "cpu", {})
problem = {"content_hash": "k" * 64, "name": "p", "path": "/p.py", "source": "x"}
result = EvaluationResult(status=Status.CORRECT, reason="", target="cpu", problem="/p.py",
                          problem_hash="k" * 64, candidate="/c.py", trials=1, speedup=1.0)
parent = None
for i in range(100000):
    parent = repo.add_candidate(engine, run_id, problem, f"src{i}", f"h{i}", result,
                                parents=[parent] if parent else None, round_index=i)
    print(parent, flush=True)
"""


def test_kill_minus_nine_loses_nothing_committed(tmp_path):
    db = tmp_path / "history.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, f"sqlite:///{db}"], stdout=subprocess.PIPE, text=True
    )
    acknowledged = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while len(acknowledged) < 25 and time.monotonic() < deadline:
        acknowledged.append(proc.stdout.readline().strip())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(acknowledged) == 25
    engine = open_engine(f"sqlite:///{db}")  # recovers the WAL
    [run] = repo.list_runs(engine)
    stored = {r.id for r in repo.candidate_rows(engine, run["id"])}
    assert set(acknowledged) <= stored  # at most the one in flight is missing beyond these
    assert len(stored) <= len(acknowledged) + 1


def test_bad_database_url_is_bad_input():
    from kernelwright.errors import BadInput

    with pytest.raises(BadInput, match="cannot use history database"):
        open_engine("nosuchdialect://x")
    with pytest.raises(BadInput, match="cannot open history database"):
        open_engine("sqlite:////nonexistent-dir/sub/history.db")


def test_history_lives_under_kernelwright_home(kw_home):
    engine = open_engine()
    assert Path(engine.url.database).parent == kw_home


def test_a_file_that_is_not_sqlite_is_refused_and_left_untouched(tmp_path):
    from kernelwright.errors import BadInput

    db = tmp_path / "history.db"
    db.write_bytes(b"this is not sqlite garbage\n")
    with pytest.raises(BadInput, match="is not an SQLite database") as raised:
        open_engine(f"sqlite:///{db}")
    assert str(db) in str(raised.value) and "elsewhere" in str(raised.value)
    assert db.read_bytes() == b"this is not sqlite garbage\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.db"]


def test_someone_elses_sqlite_database_is_refused_byte_for_byte_unchanged(tmp_path):
    import sqlite3

    db = tmp_path / "history.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO runs VALUES ('mine', 'x')")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    for migrate in (True, False):
        with pytest.raises(migrations.NotAHistory, match="not a kernelwright history"):
            open_engine(f"sqlite:///{db}", migrate=migrate)
    with pytest.raises(migrations.NotAHistory):
        migrations.upgrade(sa.create_engine(f"sqlite:///{db}"))
    # no kernelwright table, no added column, no WAL mode (it rewrites the header)
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.db"]


def test_a_database_with_only_other_tables_is_shared_on_postgres_but_not_on_sqlite(tmp_path):
    """On PostgreSQL other applications' tables may live beside ours; only a clash refuses."""
    sqlite = sa.create_engine(f"sqlite:///{tmp_path / 'h.db'}")
    with sqlite.begin() as conn:
        conn.execute(sa.text("CREATE TABLE users (id INTEGER)"))
    with pytest.raises(migrations.NotAHistory, match="users"):
        migrations.check(sqlite)

    class Fake:  # the check reads only the dialect name, the URL and the table names
        dialect = type("D", (), {"name": "postgresql"})()
        url = sa.make_url("postgresql+psycopg://u:secret@host/db")

    for tables, refused in ((["users"], False), (["users", "runs"], True), ([], False)):
        inspector = type("I", (), {"get_table_names": lambda self, t=tables: t})()
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(migrations.sa, "inspect", lambda _engine, i=inspector: i)
            if refused:
                with pytest.raises(migrations.NotAHistory) as raised:
                    migrations.check(Fake())  # type: ignore[arg-type]
                assert "secret" not in str(raised.value) and "runs" in str(raised.value)
            else:
                migrations.check(Fake())  # type: ignore[arg-type]
