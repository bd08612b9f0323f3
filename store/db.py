"""Opening the history database: where it is, how SQLite is set up, and migrating it.

Where: `--db URL`, else `$KERNELWRIGHT_DB`, else `sqlite:///$KERNELWRIGHT_HOME/history.db`. Any
SQLAlchemy URL works; PostgreSQL (`postgresql+psycopg://...`) is tested in CI for teams that
share history.

SQLite is set up for one writer and many readers that may be killed at any moment: WAL journal,
a 30 s busy timeout, foreign keys on, and write transactions that begin with `BEGIN IMMEDIATE`
(pysqlite's own implicit BEGIN is switched off; a deferred transaction that upgrades to a write
fails at once instead of waiting). A committed transaction survives `kill -9`.

A file that is not an SQLite database, or a database that is not a kernelwright history (tables
but no migration ledger), is refused with one line and left byte for byte as it was: it is
looked at before the WAL pragma (which rewrites the file header) or any migration touches it.
"""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa
from kernelwright import paths
from kernelwright.errors import BadInput
from kernelwright.store.migrations import check, upgrade, where
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker


def database_url(explicit: str | None = None) -> str:
    if explicit:
        return explicit
    return os.environ.get("KERNELWRIGHT_DB") or f"sqlite:///{paths.home() / 'history.db'}"


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def open_engine(url: str | None = None, migrate: bool = True) -> Engine:
    """An engine on the history database, migrated to this version's schema."""
    url = database_url(url)
    try:
        engine = sa.create_engine(url)
    except (sa.exc.ArgumentError, ImportError, ValueError) as exc:
        raise BadInput(f"cannot use history database {url!r}: {exc}") from exc
    try:
        # Read-only look first, on plain connections: a file that is not ours must stay as it is.
        check(engine)
        if engine.dialect.name == "sqlite":
            engine.dispose()  # no plain connection stays pooled; every later one is set up
            _sqlite_setup(engine)
        if migrate:
            upgrade(engine)
    except sa.exc.OperationalError as exc:
        raise BadInput(f"cannot open history database {where(engine)}: {exc.orig}") from exc
    except sa.exc.DatabaseError as exc:
        if engine.dialect.name != "sqlite":
            raise BadInput(f"cannot open history database {where(engine)}: {exc.orig}") from exc
        raise BadInput(
            f"{where(engine)} is not an SQLite database ({exc.orig}); point --db, "
            "$KERNELWRIGHT_DB or $KERNELWRIGHT_HOME elsewhere (it is left unchanged)"
        ) from exc
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
