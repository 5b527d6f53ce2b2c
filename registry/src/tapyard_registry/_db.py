"""The registry's index database: tables, engine, and migrations to the current schema.

SQLite is the default (one file in the data directory); PostgreSQL works the
same through its URL. The schema is created and upgraded by Alembic (the
migrations beside this module), never by ``create_all``, so that a database
made by an older registry is upgraded in place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine

__all__ = ["metadata", "open_engine", "packages", "publisher_keys", "publishers", "releases", "tokens", "tuf_metadata"]

metadata = MetaData()

publishers = Table(
    "publishers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("namespace", String(64), nullable=False, unique=True),
    Column("display_name", String(200), nullable=False),
    Column("verified", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

publisher_keys = Table(
    "publisher_keys",
    metadata,
    Column("keyid", String(64), primary_key=True),
    Column("publisher_id", Integer, ForeignKey("publishers.id"), nullable=False, index=True),
    Column("public_key", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("publisher_id", Integer, ForeignKey("publishers.id"), nullable=False, index=True),
    Column("digest", String(64), nullable=False),
    Column("scopes", String(200), nullable=False),
    Column("description", String(200), nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

packages = Table(
    "packages",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("display_name", String(100), nullable=False),
    Column("publisher_id", Integer, ForeignKey("publishers.id"), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

releases = Table(
    "releases",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("package", String(100), ForeignKey("packages.name"), nullable=False, index=True),
    Column("version", String(64), nullable=False),
    Column("filename", String(250), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("requires_core", String(100), nullable=True),
    Column("summary", Text, nullable=False, default=""),
    Column("manifest", JSON, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("kit_score", Float, nullable=True),
    Column("support_level", String(40), nullable=True),
    Column("kit_passed_at", DateTime(timezone=True), nullable=True),
    Column("kit_report", Text, nullable=False, default=""),
    Column("yanked", Boolean, nullable=False, default=False),
    Column("yank_reason", String(200), nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("package", "version", name="uq_release_version"),
)

tuf_metadata = Table(
    "tuf_metadata",
    metadata,
    Column("role", String(80), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("data", LargeBinary, nullable=False),
)


def open_engine(url: str) -> Engine:
    """An engine for ``url`` with the schema migrated to the newest revision.

    ``postgresql://`` means psycopg 3 (SQLAlchemy's own default is psycopg2).
    """
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            url = "postgresql+psycopg://" + url[len(plain):]
    options: dict[str, Any] = {}
    if url.startswith("sqlite"):
        options["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        options["pool_pre_ping"] = True
    engine = create_engine(url, future=True, **options)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi: Any, _record: Any) -> None:
            cursor = dbapi.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    migrate(engine)
    return engine


def migrate(engine: Engine) -> None:
    """Bring the database at ``engine`` to the newest schema (Alembic ``upgrade head``)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
