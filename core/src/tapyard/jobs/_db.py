"""The control-plane database: its tables, its engine, its migrations.

Jobs, runs, schedule ticks, leases, run logs and alerts live in one database
reached through SQLAlchemy: SQLite (``control.db`` in the data directory) by
default, PostgreSQL when ``TAPYARD_DATABASE_URL`` names one. The schema is
made and evolved by Alembic migrations (``tapyard/jobs/migrations``), run on
first use under a lock so that several schedulers starting at once migrate once.

Times are epoch seconds (float); ``ticks.scheduled_at`` is whole seconds, so
that the unique key (job, scheduled_at) names one scheduled instant exactly.

The destination keeps each stream's state, committed with its records; the
control plane records runs and never owns state.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

__all__ = ["HEAD", "database_url", "engine_for", "metadata"]

metadata = sa.MetaData()

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("name", sa.String(80), primary_key=True),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("paused", sa.Boolean, nullable=False, default=False),
    # schedule-clock times (see tapyard.jobs._clock), like ticks.scheduled_at
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    # schedule from here: ticks before it are not caught up (set on add and resume)
    sa.Column("since", sa.Float, nullable=False),
)

ticks = sa.Table(
    "ticks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job", sa.String(80), nullable=False),
    sa.Column("scheduled_at", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # run: a run was queued for it; skipped: the overlap policy said no
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("run_id", sa.Integer, nullable=True),
    sa.Column("scheduler", sa.String(120), nullable=True),
    sa.UniqueConstraint("job", "scheduled_at", name="uq_ticks_job_scheduled_at"),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job", sa.String(80), nullable=False),
    sa.Column("tick_id", sa.Integer, nullable=True),
    sa.Column("scheduled_at", sa.BigInteger, nullable=True),
    sa.Column("attempt", sa.Integer, nullable=False, default=1),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("credential", sa.String(200), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    # real time before which the run may not start (jitter, retry backoff)
    sa.Column("not_before", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("ended_at", sa.Float, nullable=True),
    # when a scheduler claimed it and started its process (revision 0002)
    sa.Column("claimed_at", sa.Float, nullable=True),
    sa.Column("heartbeat_at", sa.Float, nullable=True),
    sa.Column("deadline", sa.Float, nullable=True),
    # the lease: who runs it, and the fencing token every write of theirs must carry
    sa.Column("owner", sa.String(120), nullable=True),
    sa.Column("token", sa.Integer, nullable=False, default=0),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Column("records", sa.Integer, nullable=False, default=0),
    sa.Column("dead_letters", sa.Integer, nullable=False, default=0),
    sa.Column("requests", sa.Integer, nullable=False, default=0),
    sa.Column("http_retries", sa.Integer, nullable=False, default=0),
    sa.Column("streams", sa.Text, nullable=True),
    sa.Column("http", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("retry_of", sa.Integer, nullable=True),
    # a spread run's units (revision 0003): each unit is a run naming its parent and
    # what it reads (JSON); the parent counts its units once it was split
    sa.Column("parent_id", sa.Integer, nullable=True),
    sa.Column("unit", sa.Text, nullable=True),
    sa.Column("units", sa.Integer, nullable=True),
    sa.Index("ix_runs_status", "status"),
    sa.Index("ix_runs_job_status", "job", "status"),
    sa.Index("ix_runs_parent", "parent_id"),
)

leases = sa.Table(
    "leases",
    metadata,
    # scheduler:<id>: a live scheduler; renewed by its loop, expired when it died
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("owner", sa.String(120), nullable=False),
    sa.Column("token", sa.Integer, nullable=False),
    sa.Column("acquired_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("info", sa.Text, nullable=True),
)

logs = sa.Table(
    "logs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("level", sa.String(10), nullable=False),
    sa.Column("line", sa.Text, nullable=False),
    sa.Index("ix_logs_run", "run_id", "id"),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job", sa.String(80), nullable=False),
    sa.Column("run_id", sa.Integer, nullable=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
)

#: the newest migration; a database at another revision is upgraded on open
HEAD = "0003"


def database_url(url: str | None = None) -> str:
    """``url``, else ``TAPYARD_DATABASE_URL``, else ``control.db`` in the data directory."""
    chosen = url or os.environ.get("TAPYARD_DATABASE_URL")
    if chosen:
        return chosen
    from tapyard_credentials import data_dir

    return f"sqlite:///{data_dir() / 'control.db'}"


def _driver_url(url: str) -> sa.URL:
    """``url`` with the driver tapyard uses (psycopg 3 for PostgreSQL)."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise ValueError(
            "TAPYARD_DATABASE_URL is not a database URL: use sqlite:///path.db or postgresql://user@host/db"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(
            f"the control plane runs on SQLite or PostgreSQL, not {parsed.get_backend_name()!r}"
        )
    return parsed


_engines: dict[str, sa.Engine] = {}
_engines_lock = threading.Lock()


def engine_for(url: str | None = None) -> sa.Engine:
    """The engine of the control plane at ``url`` (see :func:`database_url`), migrated to
    :data:`HEAD`. One engine per URL and process."""
    chosen = database_url(url)
    with _engines_lock:
        engine = _engines.get(chosen)
        if engine is None:
            engine = _make_engine(chosen)
            _migrate(engine)
            _engines[chosen] = engine
        return engine


def dispose_engines() -> None:
    """Close every pooled connection (a forked child must not share them)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose(close=False)
        _engines.clear()


def _make_engine(url: str) -> sa.Engine:
    parsed = _driver_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": 60, "isolation_level": None})

        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi: Any, record: Any) -> None:
            cursor = dbapi.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            # Take the write lock when the transaction starts: a reader that later
            # writes cannot then be refused with "database is locked" mid-way, and
            # check-then-write steps (claims, limits) are serialized.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=5)


@contextlib.contextmanager
def _migration_lock(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection holding the control plane's migration lock."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_lock(7215820117)")
            conn.commit()
            try:
                yield conn
            finally:
                conn.exec_driver_sql("SELECT pg_advisory_unlock(7215820117)")
                conn.commit()
        else:
            yield conn


def _current(conn: sa.Connection) -> str | None:
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def _migrate(engine: sa.Engine) -> None:
    """Bring the schema to :data:`HEAD` through Alembic (once, under a lock)."""
    with engine.connect() as conn:
        if _current(conn) == HEAD:
            return
    with _migration_lock(engine) as conn:
        if engine.dialect.name == "sqlite":
            # SQLite: the write lock of one transaction is the migration lock
            with conn.begin():
                if _current(conn) == HEAD:
                    return
                _upgrade(conn)
        else:
            with conn.begin():
                if _current(conn) == HEAD:
                    return
                _upgrade(conn)


def _upgrade(conn: sa.Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.attributes["connection"] = conn
    command.upgrade(config, "head")
