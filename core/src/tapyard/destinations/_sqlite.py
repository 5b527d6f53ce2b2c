"""The SQLite destination, on SQLAlchemy Core: the embedded default.

One table per stream, created from the stream's schema (scalars typed, nested
objects and arrays stored as JSON text), with the stream's primary key as the
table's. Writes are ``INSERT ... ON CONFLICT DO UPDATE`` upserts. Two tables
of tapyard's own live beside them: ``_tapyard_state`` (the cursor and resume
point of each stream) and ``_tapyard_dead_letters`` (records that failed
validation, with their raw payload and the error). A :meth:`write` is one
transaction over all three, so records, dead letters and state never disagree.

The database runs in WAL mode with ``synchronous=NORMAL``: a killed process
loses no committed transaction (a power cut can lose the last few; pass
``?synchronous=full`` in the URL to rule that out too).

The write-ahead log is copied back into the database by a thread of the
destination's own (:class:`_Checkpointer`), not by the commit that happens to
fill it: SQLite's automatic checkpoint runs inside that commit, and copying
and syncing 4 MB there stalled the writer for 15-25 ms every 80 pages or so.
Under a paced quota, each such stall made a request late by as much. The
writer's automatic checkpoint stays on as a backstop, at a much larger size.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import operator
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError

from tapyard.base import (
    Column,
    DeadLetter,
    DestinationError,
    StateError,
    Stream,
    StreamState,
    json_text,
    quoted,
    value_text,
)
from tapyard.destinations._base import (
    Batch,
    StoredDeadLetter,
    cursor_sort_key,
    refuse_odd_target,
    url_path,
)
from tapyard.destinations._tables import (
    CURSOR_KEY,
    DELETED_AT,
    PARTITION,
    PASS,
    TableDestination,
    dead_letter_params,
    json_column,
    quote,
    stage_table,
    stream_file_lock,
    swap_statements,
    text_column,
    wide_integer_columns,
)

__all__ = ["SQLiteDestination"]


def own_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    """tapyard's own tables, on ``metadata`` (each destination has its own, so that no
    process-wide registry of tables is shared between destinations or runs):
    ``_tapyard_state``, the committed state of each stream under each state key, and
    ``_tapyard_dead_letters``, records that failed validation (a payload kept once
    per stream)."""
    state = sa.Table(
        "_tapyard_state",
        metadata,
        sa.Column("state_key", sa.String, primary_key=True),
        sa.Column("stream", sa.String, primary_key=True),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("updated_at", sa.String, nullable=False),
    )
    dead = sa.Table(
        "_tapyard_dead_letters",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("state_key", sa.String, nullable=False, index=True),
        sa.Column("stream", sa.String, nullable=False),
        sa.Column("raw_sha256", sa.String, nullable=False),
        sa.Column("raw", sa.String, nullable=False),
        sa.Column("error", sa.String, nullable=False),
        sa.Column("created_at", sa.String, nullable=False),
        sa.Column("replayed_at", sa.String),
        sa.UniqueConstraint("state_key", "stream", "raw_sha256"),
    )
    return state, dead


#: Column types (:class:`Column.type`) as SQLite declares them; docs/types.md has the whole table.
_SQL_TYPES = {
    "TEXT": "TEXT", "INTEGER": "INTEGER", "REAL": "REAL", "BOOLEAN": "INTEGER", "JSON": "TEXT", "BLOB": "BLOB",
}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


class _TableWriter:
    """The upsert statement of one stream's table and how to turn a row into its parameters."""

    def __init__(self, table: str, columns: Sequence[Column], stream: Stream) -> None:
        names = [c.name for c in columns]
        self.table, self.columns, self.stream = table, list(columns), stream
        self.versions = _Versions(table, names, stream, columns)
        self._stage: _Versions | None = None
        self._names = names
        self._json = [i for i, c in enumerate(columns) if c.is_json]
        # validated records hold datetimes, dates, UUIDs, decimals...: SQLite stores their text
        self._text = [i for i, c in enumerate(columns) if c.type == "TEXT" and c.convert]
        self._real = [i for i, c in enumerate(columns) if c.type == "REAL"]
        self._from_models = _row_builder(
            [c.attribute or c.name for c in columns],
            self._json,
            self._text,
            [i for i, c in enumerate(columns) if c.type == "BOOLEAN"],
            self._real,
        )

    def params(self, batch: Batch) -> list[Sequence[Any]]:
        """The statement's parameters for each record of ``batch``.

        Validated model instances are read from their ``__dict__`` by a
        function built for this table (see :func:`_row_builder`); nested
        values become JSON text and typed scalars (datetimes, UUIDs) their ISO
        or string form. Dict rows written directly may leave columns out; they
        become NULL.
        """
        if batch.items is not None:
            return self._from_models(batch.items)
        names = self._names
        values: list[Any]
        try:
            if len(names) == 1:
                values = [(row[names[0]],) for row in batch.rows]
            else:
                getitems = operator.itemgetter(*names)
                values = [getitems(row) for row in batch.rows]
        except KeyError:
            values = [tuple(row.get(n) for n in names) for row in batch.rows]
        if not self._json and not self._text and not self._real:
            return values
        return [_converted(list(value), self._json, self._text, self._real) for value in values]

    def wide_integers(self, batch: Batch) -> list[Column]:
        """The INTEGER columns that ``batch`` gives an integer past SQLite's 64 bits."""
        return [self.columns[i] for i in wide_integer_columns(self.columns, batch)]

    def versions_for(self, cursor: sqlite3.Cursor, batch: Batch) -> _Versions:
        """The statements for ``batch``: its stream's table, or (for a full refresh's
        pages) its staging table, made like the table when it is not there yet."""
        if not batch.stage:
            return self.versions
        if self._stage is None:
            stage = stage_table(self.table)
            if not list(cursor.execute(f"PRAGMA table_info({quote(stage)})")):
                cursor.execute(_create_sql(stage, self.stream, self.columns, pass_column=True))
            self._stage = _Versions(stage, self._names, self.stream, self.columns)
            self._stage.stage, self._stage.marks = True, False
        return self._stage

    def swap(self, cursor: sqlite3.Cursor, pass_id: int, keep: bool) -> tuple[int, int]:
        """Replace the table's rows with those the pass ``pass_id`` staged (see
        :func:`~tapyard.destinations._tables.swap_statements`); returns rows changed and removed."""
        stage = stage_table(self.table)
        self._stage = None
        if not list(cursor.execute(f"PRAGMA table_info({quote(stage)})")):
            return 0, 0
        versions = self.versions
        versions.ensure_pass(cursor)
        statements = swap_statements(
            table=versions.table, stage=quote(stage), names=self._names, primary_key=versions.primary_key,
            has_key=versions.cursor_attr is not None, marks=versions.marks, keep=keep, param="?",
        )
        before = cursor.connection.total_changes
        cursor.execute(statements[0], (pass_id,))
        changed = cursor.connection.total_changes - before
        deleted = 0
        if not keep:
            cursor.execute(statements[1], (pass_id,))
            deleted = cursor.rowcount
        cursor.execute(statements[-1])
        return changed, deleted

    def write_one_by_one(self, cursor: sqlite3.Cursor, batch: Batch) -> tuple[int, int]:
        """Write ``batch`` one record at a time (those already written are written
        again, harmlessly: an upsert of the same version changes nothing); a record
        the table cannot hold moves to ``batch.dead`` with the reason. Returns what
        :meth:`_Versions.write` does."""
        records: list[Any] = list(batch.items) if batch.items is not None else list(batch.rows)
        kept: list[Any] = []
        changed = 0
        for record in records:
            one = dataclasses.replace(
                batch, rows=[] if batch.items is not None else [record],
                items=[record] if batch.items is not None else None, dead=[], seen=[], sweep=None, state=None,
            )
            try:
                changed += self.versions_for(cursor, batch).write(cursor, one, self.params)[0]
            except _ROW_ERRORS as exc:
                raw = record.model_dump(by_alias=True) if isinstance(record, BaseModel) else record
                params = None
                with contextlib.suppress(*_ROW_ERRORS):
                    params = self.params(dataclasses.replace(one, dead=[]))[0]
                batch.dead.append(DeadLetter(raw=raw, error=_row_error(exc, self._names, params)))
            else:
                kept.append(record)
        if batch.items is not None:
            batch.items = kept
        else:
            batch.rows = kept
        # what the batch carries besides its records: rows seen unchanged, the sweep
        rest = dataclasses.replace(batch, rows=[], items=None, dead=[], state=None)
        return changed, self.versions_for(cursor, batch).write(cursor, rest, self.params)[1]


def _create_sql(table: str, stream: Stream, columns: Sequence[Column], *, pass_column: bool = False) -> str:
    """``CREATE TABLE`` for a stream's table (or its staging table, with the pass column)."""
    defs = [
        f"{quote(c.name)} {_SQL_TYPES[c.type]}" + (" NOT NULL" if c.name in stream.primary_key else "")
        for c in columns
    ]
    own = _own_columns(stream)
    if pass_column and PASS not in {name for name, _ in own}:
        own.append((PASS, "INTEGER"))
    defs.extend(f"{quote(name)} {kind}" for name, kind in own)
    defs.append(f"PRIMARY KEY ({', '.join(quote(k) for k in stream.primary_key)})")
    return f"CREATE TABLE {quote(table)} ({', '.join(defs)})"


def _own_columns(stream: Stream) -> list[tuple[str, str]]:
    """tapyard's columns in ``stream``'s table, with their SQL types (the cursor key
    has none, so that integers stay integers and text stays text). The pass
    column is added by the first pass that needs it (see :class:`_Versions`)."""
    own = []
    if stream.cursor_field:
        own.append((CURSOR_KEY, ""))
    if stream.deletes == "listing":
        own.extend([(PASS, "INTEGER"), (DELETED_AT, "TEXT")])
    return own


class _Versions:
    """The statements that keep one table's rows at their newest version.

    The upsert updates a row only when the incoming version's cursor is not
    older than the stored one (``_tapyard_cursor``, a sort key that orders
    timestamps in any offset and precision as time does; see
    :func:`~tapyard.destinations._base.cursor_sort_key`) and when some column
    differs, so its row count is what was inserted or changed. A full refresh
    (``Batch.replace``) drops the cursor condition. A pass that may sweep
    (``Batch.tracked``) stamps every row it saw with its id (``_tapyard_pass``,
    added to the table then), changed or not; the sweep then marks (or
    deletes) the rows whose stamp is another pass's.
    """

    def __init__(self, table: str, names: Sequence[str], stream: Stream, columns: Sequence[Column]) -> None:
        self.table = quote(table)
        self.names = list(names)
        self.cursor_attr: str | None = None
        if stream.cursor_field:
            column = {c.name: c for c in columns}.get(stream.cursor_field)
            self.cursor_attr = (column.attribute or column.name) if column else stream.cursor_field
        self.primary_key = list(stream.primary_key)
        self._key_index = [self.names.index(k) for k in self.primary_key]
        self.marks = stream.deletes == "listing"
        self._has_pass = self.marks
        self._has_partition = False
        self._sql: dict[tuple[bool, bool, bool], str] = {}
        #: this is the stream's staging table (a full refresh's rows): the pass column
        #: is always there, and a row another pass staged is replaced whatever its cursor
        self.stage = False

    def statement(self, tracked: bool, replace: bool, scoped: bool = False) -> str:
        """The upsert: with the pass column when ``tracked`` (and the partition column
        when ``scoped``), without the cursor condition when ``replace``."""
        found = self._sql.get((tracked, replace, scoped))
        if found is not None:
            return found
        own = ([CURSOR_KEY] if self.cursor_attr else []) + ([PASS] if tracked else [])
        own += [PARTITION] if tracked and scoped else []
        every = [*self.names, *own]
        insert = (
            f"INSERT INTO {self.table} ({', '.join(quote(n) for n in every)}) "
            f"VALUES ({', '.join('?' for _ in every)})"
        )
        conflict = f" ON CONFLICT({', '.join(quote(k) for k in self.primary_key)})"
        data = [n for n in self.names if n not in self.primary_key]
        if not data:
            sql = insert + conflict + " DO NOTHING"
        else:
            sets = [f"{quote(n)}=excluded.{quote(n)}" for n in [*data, *own]]
            differs = [f"{self.table}.{quote(n)} IS NOT excluded.{quote(n)}" for n in data]
            if self.marks:
                sets.append(f"{quote(DELETED_AT)}=NULL")
                differs.append(f"{self.table}.{quote(DELETED_AT)} IS NOT NULL")
            other_pass = f"{self.table}.{quote(PASS)} IS NOT excluded.{quote(PASS)}"
            if self.stage:
                differs.append(other_pass)
            sql = f"{insert}{conflict} DO UPDATE SET {', '.join(sets)} WHERE ({' OR '.join(differs)})"
            if self.cursor_attr and not replace:
                key, table = quote(CURSOR_KEY), self.table
                guard = f"excluded.{key} IS NULL OR {table}.{key} IS NULL OR excluded.{key} >= {table}.{key}"
                sql += f" AND ({guard}{' OR ' + other_pass if self.stage else ''})"
        self._sql[(tracked, replace, scoped)] = sql
        return sql

    def write(
        self, cursor: sqlite3.Cursor, batch: Batch, params: Callable[[Batch], list[Sequence[Any]]]
    ) -> tuple[int, int]:
        """Write ``batch``'s rows (and its sweep) through ``cursor``; returns how many
        rows were inserted or changed and how many the sweep marked or removed."""
        changed = deleted = 0
        rows = params(batch) if batch.count else []
        tracked = batch.tracked or self.stage
        if tracked and not self.stage:
            self._stamp(cursor, batch, rows)
        if rows:
            changed = self._upsert(cursor, batch, rows, tracked)
        if self.stage:
            # after the upsert: a row an abandoned refresh staged must meet it with its own pass
            self._stamp(cursor, batch, rows)
        if batch.sweep is not None:
            # the rows of this stream (or of this partition) that the pass did not see
            scope = self._scope(batch)
            unseen = f"{quote(PASS)} IS NOT ?" + (f" AND {quote(PARTITION)} = ?" if scope is not None else "")
            args = (batch.sweep,) if scope is None else (batch.sweep, scope)
            if batch.hard_delete or not self.marks:
                cursor.execute(f"DELETE FROM {self.table} WHERE {unseen}", args)
            else:
                cursor.execute(
                    f"UPDATE {self.table} SET {quote(DELETED_AT)}=? WHERE {unseen} AND {quote(DELETED_AT)} IS NULL",
                    (_now(), *args),
                )
            deleted = cursor.rowcount
        return changed, deleted

    def _scope(self, batch: Batch) -> str | None:
        """The partition a tracked pass stamps on its rows (none outside a staging table's)."""
        return batch.scope if batch.tracked and not self.stage else None

    def _stamps(self, batch: Batch) -> tuple[Any, ...]:
        scope = self._scope(batch)
        return (batch.pass_id,) if scope is None else (batch.pass_id, scope)

    def _stamp(self, cursor: sqlite3.Cursor, batch: Batch, rows: list[Sequence[Any]]) -> None:
        """Stamp every row the pass saw (sent or seen unchanged) with its id."""
        self.ensure_pass(cursor)
        scoped = self._scope(batch) is not None
        if scoped and not self._has_partition:
            existing = {row[1] for row in cursor.execute(f"PRAGMA table_info({self.table})")}
            if PARTITION not in existing:
                cursor.execute(f"ALTER TABLE {self.table} ADD COLUMN {quote(PARTITION)} TEXT")
            self._has_partition = True
        keys = [tuple(row.get(k) for k in self.primary_key) for row in batch.seen]
        keys.extend(tuple(row[i] for i in self._key_index) for row in rows)
        unmark = f", {quote(DELETED_AT)}=NULL" if self.marks else ""
        part = f", {quote(PARTITION)}=?" if scoped else ""
        where = " AND ".join(f"{quote(k)} = ?" for k in self.primary_key)
        stamps = self._stamps(batch)
        cursor.executemany(
            f"UPDATE {self.table} SET {quote(PASS)}=?{part}{unmark} WHERE {where}",
            [(*stamps, *key) for key in keys],
        )

    def ensure_pass(self, cursor: sqlite3.Cursor) -> None:
        """Add the pass column to the table when it has none yet."""
        if not self._has_pass:
            existing = {row[1] for row in cursor.execute(f"PRAGMA table_info({self.table})")}
            if PASS not in existing:
                cursor.execute(f"ALTER TABLE {self.table} ADD COLUMN {quote(PASS)} INTEGER")
            self._has_pass = True

    def _upsert(self, cursor: sqlite3.Cursor, batch: Batch, rows: list[Sequence[Any]], tracked: bool) -> int:
        """Upsert ``rows`` (the batch's parameters) with their cursor key and pass; returns rows changed."""
        if self.cursor_attr is not None:
            attr = self.cursor_attr
            if batch.items is not None:
                values = [getattr(item, attr, None) for item in batch.items]
            else:
                values = [row.get(attr) for row in batch.rows]
            key = cursor_sort_key
            if tracked:
                stamps = self._stamps(batch)
                rows = [(*r, key(v), *stamps) for r, v in zip(rows, values, strict=True)]
            else:
                rows = [(*r, key(v)) for r, v in zip(rows, values, strict=True)]
        elif tracked:
            stamps = self._stamps(batch)
            rows = [(*r, *stamps) for r in rows]
        before = cursor.connection.total_changes
        scoped = tracked and self._scope(batch) is not None
        cursor.executemany(self.statement(tracked, batch.replace and not self.stage, scoped), rows)
        return cursor.connection.total_changes - before


def _row_builder(
    attributes: Sequence[str],
    json_idx: Sequence[int],
    text_idx: Sequence[int],
    bool_idx: Sequence[int],
    real_idx: Sequence[int] = (),
) -> Callable[[Sequence[BaseModel]], list[Sequence[Any]]]:
    """A function from validated models to parameter tuples, specialised to one table.

    This is the innermost loop of a sync (it runs once per record), so nothing
    in it loops over columns in Python: each record's values come out of its
    ``__dict__`` in one ``itemgetter`` call, and each column that needs it is
    converted in one comprehension (the rows turned into columns and back by
    ``zip``, in C). It replaced a builder generated with ``exec``, within 2% of
    its speed (0.3 us a record; docs/performance.md). A model whose ``__dict__``
    lacks a column (a computed field, a property) is read by ``getattr``; a
    JSON column orjson refuses (an integer past 64 bits, a lone surrogate) is
    encoded exactly by :func:`tapyard.base._values.json_text`. orjson writes a NaN
    nested in a JSON value as null; tapyard's own readers never hand it one
    (docs/types.md).

    Booleans are bound as 0 and 1, what SQLite stores for them anyway: the
    sqlite3 module binds only exact ints, floats and strings directly, and
    sends every other value through its adapter lookup, which for a ``bool``
    costs two failed attribute lookups, each raising and clearing an
    AttributeError (about a tenth of a record's whole cost in a sync).

    NaN is bound as the text ``'NaN'``: SQLite would store a NaN REAL as NULL.
    """
    converters: list[Callable[[Sequence[Any]], list[Any]] | None] = [None] * len(attributes)
    for i in json_idx:
        converters[i] = json_column
    for i in text_idx:
        converters[i] = text_column
    for i in bool_idx:
        converters[i] = _bits
    for i in real_idx:
        converters[i] = _nan_text
    get = operator.itemgetter(*attributes) if len(attributes) > 1 else None

    def build(items: Sequence[BaseModel]) -> list[Sequence[Any]]:
        if not items:
            return []
        try:
            if get is None:
                rows: list[Any] = [(item.__dict__[attributes[0]],) for item in items]
            else:
                rows = [get(item.__dict__) for item in items]
        except KeyError:  # a computed field or a property: read by getattr
            rows = [tuple(getattr(item, name) for name in attributes) for item in items]
        if not any(converters):
            return rows
        # the rows turned into columns (one C call), the columns that need it converted
        # in one comprehension each, and back into rows
        columns = list(zip(*rows, strict=True))
        return list(zip(*[c if f is None else f(c) for c, f in zip(columns, converters, strict=True)], strict=True))

    return build


def _bits(values: Sequence[Any]) -> list[Any]:
    return [None if v is None else (1 if v else 0) for v in values]


def _nan_text(values: Sequence[Any]) -> list[Any]:
    return [v if v == v else "NaN" for v in values]


#: What a record's own values can raise while being bound: the record goes to the
#: dead letters. Anything else (a full disk, a locked file) fails the write.
_ROW_ERRORS = (
    TypeError, ValueError, OverflowError, RecursionError,
    sqlite3.InterfaceError, sqlite3.ProgrammingError, sqlite3.DataError, sqlite3.IntegrityError,
)


def _row_error(exc: BaseException, names: Sequence[str], params: Sequence[Any] | None) -> str:
    """Why a record could not be written, naming the column but no value."""
    for name, value in zip(names, params or (), strict=False):
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            return (
                f"column {name!r}: integer outside SQLite's 64-bit range; "
                "declare the field as a decimal to keep it (docs/types.md)"
            )
        if isinstance(value, str):
            try:
                value.encode()
            except UnicodeEncodeError:
                return f"column {name!r}: text with a lone surrogate cannot be stored as UTF-8"
    detail = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, UnicodeError | OverflowError):
        detail = ""  # their messages quote the value
    detail = detail[:200]
    return f"cannot be written to SQLite: {type(exc).__name__}" + (f": {detail}" if detail else "")


def _converted(
    values: list[Any], json_idx: Sequence[int], text_idx: Sequence[int], real_idx: Sequence[int] = ()
) -> list[Any]:
    """``values`` (one row, in column order) with nested values as JSON text, typed
    scalars as text and NaN as ``'NaN'``."""
    for i in json_idx:
        if values[i] is not None:
            values[i] = json_text(values[i])
    for i in text_idx:
        if values[i] is not None and not isinstance(values[i], str):
            values[i] = value_text(values[i])
    for i in real_idx:
        if values[i] != values[i]:
            values[i] = "NaN"
    return values


class SQLiteDestination(TableDestination):
    """Records in a local SQLite file (``sqlite:///path.db``)."""

    sweeps_partitions = True

    def __init__(self, url: str) -> None:
        raw_path, _, query = url_path(url, "sqlite").partition("?")
        options = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
        synchronous = options.get("synchronous", "normal").upper()
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise DestinationError(f"unknown synchronous mode {synchronous!r} in {url!r}")
        self.path = Path(raw_path).expanduser()
        self.url = f"sqlite:///{self.path}"
        self._writers: dict[str, _TableWriter] = {}
        self._open_file()
        self.engine = sa.create_engine(f"sqlite:///{self.path}")
        self.metadata = sa.MetaData()
        own_tables(self.metadata)

        @event.listens_for(self.engine, "connect")
        def _pragmas(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
            # Let sqlite3's own transaction handling step aside: SQLAlchemy
            # issues BEGIN itself (see the "begin" listener below).
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute(f"PRAGMA wal_autocheckpoint={_BACKSTOP_PAGES}")
            cursor.close()

        @event.listens_for(self.engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        try:
            self.metadata.create_all(self.engine)
            with self.engine.begin() as conn:
                known = {row[1] for row in conn.exec_driver_sql("PRAGMA table_info(_tapyard_dead_letters)")}
                if "replayed_at" not in known:  # a database from before replay
                    conn.exec_driver_sql("ALTER TABLE _tapyard_dead_letters ADD COLUMN replayed_at VARCHAR")
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise DestinationError(self._describe(exc)) from exc
        self._checkpointer = _Checkpointer(self.path, synchronous)
        # A destination dropped without close() must not leave the thread behind.
        weakref.finalize(self, self._checkpointer.stop)

    def _open_file(self) -> None:
        refuse_odd_target(self.path, "a SQLite database")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DestinationError(
                f"cannot create the folder for {self.path}: {exc.strerror or exc}"
            ) from exc
        if self.path.exists():
            with self.path.open("rb") as fh:
                head = fh.read(16)
            if head and head != b"SQLite format 3\x00":
                raise DestinationError(f"{self.path} exists and is not a SQLite database; choose another file")
        try:
            with self.path.open("ab"):
                pass
        except OSError as exc:
            raise DestinationError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def _describe(self, exc: Exception) -> str:
        detail = getattr(exc, "orig", None) or exc
        return f"SQLite database {self.path} failed: {detail}"

    def create_table(self, stream: Stream, columns: Sequence[Column]) -> None:
        table = stream.name
        try:
            with self.engine.begin() as conn:
                existing = [row[1] for row in conn.exec_driver_sql(f"PRAGMA table_info({quote(table)})")]
                if not existing:
                    conn.exec_driver_sql(_create_sql(table, stream, columns))
                else:
                    _retype(conn.exec_driver_sql, table, columns)
                    _widen_timestamps(conn.exec_driver_sql, table, columns, existing)
                    for c in columns:
                        if c.name not in existing:
                            conn.exec_driver_sql(
                                f"ALTER TABLE {quote(table)} ADD COLUMN {quote(c.name)} {_SQL_TYPES[c.type]}"
                            )
                    for name, kind in _own_columns(stream):
                        if name not in existing:
                            conn.exec_driver_sql(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(name)} {kind}")
                stored = {row[1]: str(row[2]) for row in conn.exec_driver_sql(f"PRAGMA table_info({quote(table)})")}
        except SQLAlchemyError as exc:
            raise DestinationError(self._describe(exc)) from exc
        columns = [_as_text(c) if c.type == "INTEGER" and _affinity(stored.get(c.name, "")) == "TEXT" else c
                   for c in columns]
        self._writers[table] = _TableWriter(table, columns, stream)

    def load_state(self, state_key: str) -> dict[str, StreamState]:
        try:
            with self.engine.connect() as conn:
                rows = conn.exec_driver_sql(
                    "SELECT stream, state FROM _tapyard_state WHERE state_key = ?", (state_key,)
                ).all()
        except SQLAlchemyError as exc:
            raise DestinationError(self._describe(exc)) from exc
        states = {}
        for stream, text in rows:
            try:
                states[stream] = StreamState.from_json(orjson.loads(text))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise StateError(
                    f"saved state of stream {quoted(stream)} in {self.path} is unreadable ({exc}); "
                    f"rerun with --full-refresh to start over"
                ) from exc
        return states

    def write(self, state_key: str, batches: Sequence[Batch]) -> None:
        # a column widened by a write that rolls back is narrow again: so is its writer
        writers = dict(self._writers)
        try:
            self._write(state_key, batches)
        except BaseException:
            self._writers.clear()
            self._writers.update(writers)
            raise

    def _write(self, state_key: str, batches: Sequence[Batch]) -> None:
        now = _now()
        try:
            with self.engine.begin() as conn:
                raw = conn.connection.driver_connection
                assert raw is not None
                cursor = raw.cursor()
                changes: list[tuple[Batch, int, int]] = []
                for batch in batches:
                    if batch.stream not in self._writers and not batch.count and not batch.seen and batch.sweep is None:
                        # a batch of state alone (tapyard state reset/set): no table needed
                        changed, deleted = 0, 0
                    else:
                        changed, deleted = self._write_batch(cursor, batch)
                        if batch.stage:
                            changed = 0  # staged rows reach the table when the pass swaps them in
                        if batch.swap is not None:
                            changed, deleted = self._writers[batch.stream].swap(cursor, batch.swap, batch.keep_unseen)
                    changes.append((batch, changed, deleted))
                    if batch.dead:
                        cursor.executemany(
                            "INSERT INTO _tapyard_dead_letters (state_key, stream, raw_sha256, raw, error, created_at) "
                            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                            [dead_letter_params(state_key, batch.stream, d.raw, d.error, now) for d in batch.dead],
                        )
                    if batch.state is not None:
                        cursor.execute(
                            "INSERT INTO _tapyard_state (state_key, stream, state, updated_at) VALUES (?, ?, ?, ?) "
                            "ON CONFLICT(state_key, stream) DO UPDATE SET state=excluded.state, updated_at=excluded.updated_at",
                            (state_key, batch.state_name, orjson.dumps(batch.state.to_json()).decode(), now),
                        )
                cursor.close()
        except (SQLAlchemyError, sqlite3.Error) as exc:
            raise DestinationError(self._describe(exc)) from exc
        for batch, changed, deleted in changes:
            batch.changed, batch.deleted = changed, deleted
        self._checkpointer.nudge()

    def _write_batch(self, cursor: sqlite3.Cursor, batch: Batch) -> tuple[int, int]:
        """Write one batch in a savepoint of the caller's transaction. An integer past
        64 bits in an INTEGER column makes that column TEXT (every value as its
        digits, docs/types.md) and the batch is written again; a record SQLite
        cannot hold otherwise goes to the dead letters, and the rest is written."""
        cursor.execute("SAVEPOINT tapyard_batch")
        writer = self._writers[batch.stream]
        try:
            result = writer.versions_for(cursor, batch).write(cursor, batch, writer.params)
        except _ROW_ERRORS:
            cursor.execute("ROLLBACK TO tapyard_batch")
            wide = writer.wide_integers(batch)
            if wide:
                writer = self._widen(cursor, writer, wide)
                # the rebuild stays whatever the second attempt does
                cursor.execute("RELEASE tapyard_batch")
                cursor.execute("SAVEPOINT tapyard_batch")
                try:
                    result = writer.versions_for(cursor, batch).write(cursor, batch, writer.params)
                except _ROW_ERRORS:
                    cursor.execute("ROLLBACK TO tapyard_batch")
                    result = writer.write_one_by_one(cursor, batch)
            else:
                # one record SQLite cannot hold: find it, and write the rest
                result = writer.write_one_by_one(cursor, batch)
        cursor.execute("RELEASE tapyard_batch")
        return result

    def _widen(self, cursor: sqlite3.Cursor, writer: _TableWriter, wide: Sequence[Column]) -> _TableWriter:
        """Store ``wide`` columns of ``writer``'s table as TEXT from now on (the table
        is rebuilt in the caller's transaction, stored integers becoming their digits)."""
        names = {c.name for c in wide}
        columns = [_as_text(c) if c.name in names else c for c in writer.columns]
        _retype(cursor.execute, writer.table, columns)
        _retype(cursor.execute, stage_table(writer.table), columns)  # a full refresh's staged rows too
        widened = _TableWriter(writer.table, columns, writer.stream)
        self._writers[writer.table] = widened
        return widened


    def staged(self, stream: str, pass_id: int) -> bool:
        stage = quote(stage_table(stream))
        try:
            with self.engine.connect() as conn:
                if not list(conn.exec_driver_sql(f"PRAGMA table_info({stage})")):
                    return False
                found = conn.exec_driver_sql(f"SELECT 1 FROM {stage} WHERE {quote(PASS)} = ? LIMIT 1", (pass_id,))
                return found.first() is not None
        except SQLAlchemyError as exc:
            raise DestinationError(self._describe(exc)) from exc

    def lock(self, stream: str, timeout: float) -> contextlib.AbstractContextManager[None]:
        """One run per stream of this database at a time: a lock file per stream in
        ``<database>-locks/`` beside it, held with ``flock`` (see :class:`FileLock`)."""
        return stream_file_lock(self.path, stream, timeout)

    def dead_letters(
        self, state_key: str | None = None, streams: Sequence[str] | None = None, *, replayed: bool = False
    ) -> list[StoredDeadLetter]:
        sql = "SELECT id, state_key, stream, raw, error, created_at, replayed_at FROM _tapyard_dead_letters WHERE 1=1"
        args: list[Any] = []
        if state_key is not None:
            sql += " AND state_key = ?"
            args.append(state_key)
        if streams:
            sql += f" AND stream IN ({', '.join('?' for _ in streams)})"
            args.extend(streams)
        if not replayed:
            sql += " AND replayed_at IS NULL"
        try:
            with self.engine.connect() as conn:
                rows = conn.exec_driver_sql(sql + " ORDER BY id", tuple(args)).all()
        except SQLAlchemyError as exc:
            raise DestinationError(self._describe(exc)) from exc
        return [StoredDeadLetter(*row) for row in rows]

    def mark_replayed(self, ids: Sequence[int]) -> None:
        now = _now()
        try:
            with self.engine.begin() as conn:
                conn.exec_driver_sql(
                    "UPDATE _tapyard_dead_letters SET replayed_at = ? WHERE id = ?", [(now, i) for i in ids]
                )
        except SQLAlchemyError as exc:
            raise DestinationError(self._describe(exc)) from exc

    def purge_dead_letters(self, ids: Sequence[int]) -> int:
        try:
            with self.engine.begin() as conn:
                return sum(
                    conn.exec_driver_sql("DELETE FROM _tapyard_dead_letters WHERE id = ?", (i,)).rowcount for i in ids
                )
        except SQLAlchemyError as exc:
            raise DestinationError(self._describe(exc)) from exc

    def count(self, stream: str) -> int | None:
        try:
            with self.engine.connect() as conn:
                return int(conn.exec_driver_sql(f"SELECT count(*) FROM {quote(stream)}").scalar_one())
        except SQLAlchemyError:
            return None

    def close(self) -> None:
        # The checkpointer's connection first, so that the writer's is the last
        # one closed: SQLite then checkpoints the whole log and removes it.
        self._checkpointer.stop()
        self.engine.dispose()


def _affinity(declared: str) -> str:
    """The affinity SQLite gives a declared column type (its rules, in their order)."""
    upper = declared.upper()
    if "INT" in upper:
        return "INTEGER"
    if any(t in upper for t in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in upper or not upper:
        return "BLOB"
    if any(t in upper for t in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def _as_text(column: Column) -> Column:
    """An integer column stored as TEXT: every value as its decimal digits (the
    schema still declares an integer; docs/types.md)."""
    return dataclasses.replace(column, type="TEXT", format="integer", convert=True)


def _retype(execute: Callable[[str], Iterable[Any]], table: str, columns: Sequence[Column]) -> None:
    """Rebuild ``table`` when a column that must now hold text (a field that became a
    decimal, say) has a numeric affinity: SQLite would turn ``'12.50'`` into ``12.5``
    there, and ALTER TABLE cannot change a column's type. Values already stored are
    copied as they are; the rebuild is part of the caller's transaction."""
    info = list(execute(f"PRAGMA table_info({quote(table)})"))
    wanted = {c.name: _SQL_TYPES[c.type] for c in columns}
    changed = {
        row[1]
        for row in info
        if row[1] in wanted
        and _affinity(wanted[row[1]]) in ("TEXT", "BLOB")
        and _affinity(str(row[2])) in ("INTEGER", "REAL", "NUMERIC")
    }
    if not changed:
        return
    keys = [row[1] for row in sorted((r for r in info if r[5]), key=lambda r: r[5])]
    defs = [
        f"{quote(row[1])} {wanted[row[1]] if row[1] in changed else row[2]}" + (" NOT NULL" if row[3] else "")
        for row in info
    ]
    if keys:
        defs.append(f"PRIMARY KEY ({', '.join(quote(k) for k in keys)})")
    names = ", ".join(quote(row[1]) for row in info)
    temporary = quote(f"_tapyard_retype_{table}")
    execute(f"DROP TABLE IF EXISTS {temporary}")
    execute(f"CREATE TABLE {temporary} ({', '.join(defs)})")
    execute(f"INSERT INTO {temporary} ({names}) SELECT {names} FROM {quote(table)}")
    execute(f"DROP TABLE {quote(table)}")
    execute(f"ALTER TABLE {temporary} RENAME TO {quote(table)}")


#: timestamps as tapyard stored them before nine fractional digits (aware, naive)
_SIX_DIGITS = ("????-??-??T??:??:??.??????Z", "????-??-??T??:??:??.??????")


def _widen_timestamps(
    execute: Callable[[str], Iterable[Any]], table: str, columns: Sequence[Column], existing: Sequence[str]
) -> None:
    """Give timestamps stored with six fractional digits (``...05.000000Z``, before
    tapyard kept nanoseconds) their nine, so that old and new rows sort together.
    A column is either all old or all new (the widening is one transaction), so
    one stored value says which; the old form then takes one UPDATE."""
    for column in columns:
        if column.format != "date-time" or column.name not in existing:
            continue
        name = quote(column.name)
        first = list(execute(f"SELECT {name} FROM {quote(table)} WHERE {name} IS NOT NULL LIMIT 1"))
        if not first or not isinstance(first[0][0], str) or len(first[0][0]) not in (26, 27):
            continue
        old = " OR ".join(f"{name} GLOB '{pattern}'" for pattern in _SIX_DIGITS)
        execute(f"UPDATE {quote(table)} SET {name} = substr({name}, 1, 26) || '000' || substr({name}, 27) WHERE {old}")


#: SQLite's automatic checkpoint for the writer, in pages: only a backstop, for a
#: log the checkpointer could not keep up with (its default is 1,000)
_BACKSTOP_PAGES = 20_000


class _Checkpointer:
    """Copies committed pages from the write-ahead log back into the database,
    from a thread and a connection of its own.

    After a commit (:meth:`nudge`), and at most every ``interval`` seconds, it runs
    a PASSIVE checkpoint: one that never waits for, or blocks, the writer or a
    reader; what it cannot copy yet is copied next time. sqlite3 releases the GIL
    while SQLite works, so the writer goes on meanwhile. A failure is kept in
    :attr:`error` (the writer's backstop checkpoint still bounds the log) and
    never reaches the writer.
    """

    def __init__(self, path: Path, synchronous: str = "NORMAL", interval: float = 0.2) -> None:
        self._path = path
        self._synchronous = synchronous
        self._interval = interval
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self.checkpoints = 0
        self.error: str | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def nudge(self) -> None:
        """Say that a transaction was committed (the first call starts the thread)."""
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stopped.is_set():
                    self._thread = threading.Thread(target=self._run, name="tapyard-sqlite-checkpoint", daemon=True)
                    self._thread.start()
        self._wake.set()

    def stop(self) -> None:
        """Finish the checkpoint under way, if any, and close the connection."""
        with self._lock:
            self._stopped.set()
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            self.error = f"cannot open {self._path}: {exc}"
            return
        try:
            # A checkpoint syncs the database as its connection's mode says: the writer's.
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            while True:
                self._wake.wait()
                if self._stopped.is_set():
                    return
                self._wake.clear()
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self.checkpoints += 1
                # at most one checkpoint per interval, whatever the commit rate
                if self._stopped.wait(self._interval):
                    return
        except sqlite3.Error as exc:
            self.error = f"checkpoint of {self._path} failed: {exc}"
        finally:
            conn.close()
