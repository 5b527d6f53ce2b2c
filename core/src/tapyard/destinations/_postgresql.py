"""The PostgreSQL destination (``--to postgresql://user:password@host:port/database``),
through psycopg 3: the one for teams and for scale.

One table per stream in the database's current schema (``?schema=NAME`` in the
URL picks another; it is created when missing), typed from the stream's schema
(docs/types.md): ``BIGINT``, ``DOUBLE PRECISION``, ``BOOLEAN``, ``NUMERIC`` for
exact decimals (every digit and the scale kept: ``10.10`` stays ``10.10``),
``TIMESTAMPTZ``, ``DATE``, ``TIME``, ``BYTEA``, ``JSONB`` for nested values,
``TEXT`` for the rest. A write is one transaction: each batch is copied with
``COPY`` into a temporary load table and merged into the stream's table with one
``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` that never replaces a newer
version with an older one (rows whose keys are not stored are copied straight
into the table, converted a slice at a time while the server stores the slice
before); the dead letters and the stream state are written in the same transaction. A record PostgreSQL refuses (a NUL in text, an integer past
64 bits) goes to the dead letters; the rest of its page is written.

One run writes a stream at a time: an advisory lock per stream, held on a
connection of its own for the run, released by the server when the run's
process dies, however it dies. Runs of different partitions of one stream (the
units of a spread job, on several workers) write it at once: each holds the
stream's lock shared and its partition's exclusively (:meth:`lock_partition`). Other libpq URL parameters (``sslmode``,
``connect_timeout``, ...) pass through to the connection.
"""

from __future__ import annotations

import contextlib
import re
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from tapyard.base import Column, DestinationError
from tapyard.destinations._base import Batch, redact_password
from tapyard.destinations._tables import (
    CURSOR_KEY,
    PASS,
    MergeDestination,
    TablePlan,
    first_line,
    quote,
)

__all__ = ["PostgreSQLDestination"]


class PostgreSQLDestination(MergeDestination):
    """Records in PostgreSQL tables (``postgresql://...``; ``postgres://`` too)."""

    column_types = {"INTEGER": "BIGINT", "REAL": "DOUBLE PRECISION", "BOOLEAN": "BOOLEAN", "JSON": "JSONB", "BLOB": "BYTEA"}
    decimal_type = "NUMERIC"
    # declared types as PostgreSQL's format_type reports them
    reported_types = {
        "timestamptz": "timestamp with time zone",
        "time": "time without time zone",
        "double precision": "double precision",
    }

    product = "PostgreSQL"
    param = "%s"
    key_types = {"int": "NUMERIC", "float": "DOUBLE PRECISION", "text": "TEXT"}
    widenings = frozenset({("bigint", "numeric")})
    optimistic_loads = True
    add_column = "ADD COLUMN IF NOT EXISTS"

    def __init__(self, url: str) -> None:
        super().__init__()
        try:
            import psycopg
        except ImportError as exc:
            raise DestinationError(
                "the PostgreSQL destination needs psycopg: pip install 'tapyard[postgres]'"
            ) from exc
        self._psycopg = psycopg
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        self.schema = next((v for k, v in query if k == "schema"), "") or None
        rest = urllib.parse.urlencode([(k, v) for k, v in query if k != "schema"])
        self._conninfo = urllib.parse.urlunsplit(("postgresql", parts.netloc, parts.path, rest, ""))
        self.url = redact_password(urllib.parse.urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, "")))
        self._lock_conn: Any = None
        self._held: dict[str, int] = {}
        self._conn = self._connect()
        try:
            with self.transaction() as tx:
                if self.schema:
                    self.execute(tx, f"CREATE SCHEMA IF NOT EXISTS {quote(self.schema)}")
                self.own_tables(tx, "BIGSERIAL PRIMARY KEY")
        except BaseException:
            self._conn.close()
            raise

    # -- the connection -------------------------------------------------------------------

    def _connect(self) -> Any:
        try:
            conn = self._psycopg.connect(self._conninfo, autocommit=True)
        except self._psycopg.Error as exc:
            raise DestinationError(f"cannot connect to {self.url}: {first_line(exc)}") from exc
        # timestamps without a zone are taken as UTC, whatever the server's default
        conn.execute("SET TIME ZONE 'UTC'")
        return conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                yield cur
        except self._psycopg.Error as exc:
            if self.row_error(exc):
                raise
            raise DestinationError(f"{self.url} failed: {first_line(exc)}") from exc

    @contextlib.contextmanager
    def savepoint(self, tx: Any) -> Iterator[None]:
        with self._conn.transaction():
            yield

    def execute(self, tx: Any, sql: str, params: Sequence[Any] = ()) -> int:
        tx.execute(sql, tuple(params) or None)
        return int(tx.rowcount)

    def query(self, tx: Any, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        tx.execute(sql, tuple(params) or None)
        return list(tx.fetchall())

    def qualified(self, table: str) -> str:
        return f"{quote(self.schema)}.{quote(table)}" if self.schema else quote(table)

    def table_columns(self, tx: Any, table: str) -> dict[str, str]:
        rows = self.query(
            tx,
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (self.qualified(table),),
        )
        return {name: kind for name, kind in rows}

    # -- types ----------------------------------------------------------------------------

    def row_error(self, exc: BaseException) -> bool:
        if isinstance(exc, UnicodeError | TypeError | ValueError | OverflowError | RecursionError):
            return True
        if isinstance(exc, self._psycopg.DataError):  # class 22, or psycopg's own refusal (a NUL)
            return True
        state = getattr(exc, "sqlstate", None)
        if isinstance(exc, self._psycopg.Error) and isinstance(state, str):
            # 22: a value the column cannot hold; 23505 cannot happen (one version per key),
            # 23502 (NULL in a primary key column) is the record's own
            return state.startswith("22") or state == "23502"
        return False

    def describe_row_error(self, exc: BaseException, plan: TablePlan) -> str:
        """Why PostgreSQL refused a record: the column (from the server's context
        line, when it names one) and the kind of refusal, never the value."""
        if isinstance(exc, UnicodeError):
            return "cannot be written to PostgreSQL: text that is not valid UTF-8 (a lone surrogate)"
        diag = getattr(exc, "diag", None)
        context = getattr(diag, "context", None) or ""
        found = re.search(r"column ([^:,]+):", context)
        where = f"column {found.group(1)!r}: " if found else ""
        state = getattr(exc, "sqlstate", None) or ""
        if "NUL" in str(exc):
            reason = "text with a NUL character, which PostgreSQL cannot store"
        elif state == "22003":
            reason = "a number outside its column's range (an integer past 64 bits: declare the field as a decimal)"
        elif state == "23502":
            reason = "a primary key column is null"
        else:
            reason = f"{type(exc).__name__} (SQLSTATE {state})" if state else type(exc).__name__
        return f"cannot be written to PostgreSQL: {where}{reason}"

    # -- loading --------------------------------------------------------------------------

    def load(self, tx: Any, plan: TablePlan, columns: list[list[Any]]) -> str:
        name = quote(f"_tapyard_load_{plan.table}"[:63])
        names = [quote(n) for n in plan.names]
        defs = [f"{n} {t}" for n, t in zip(names, plan.types, strict=True)]
        if plan.key_type is not None:
            names.append(quote("_tapyard_cursor"))
            defs.append(f"{quote('_tapyard_cursor')} {plan.key_type}")
        tx.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {name} ({', '.join(defs)}, "
            f"{quote('_tapyard_seq')} BIGINT GENERATED ALWAYS AS IDENTITY) ON COMMIT DELETE ROWS"
        )
        tx.execute(f"TRUNCATE {name}")
        with tx.copy(f"COPY {name} ({', '.join(names)}) FROM STDIN") as copy:
            write = copy.write_row
            for row in zip(*columns, strict=True):
                write(row)
        return name

    #: rows converted at a time while a COPY runs: the server stores one slice while
    #: the next is converted (about 100 KB of COPY data)
    slice_rows = 200

    def load_into(self, tx: Any, plan: TablePlan, table: str, batch: Batch, *, tracked: bool) -> int:
        names = [quote(n) for n in plan.names]
        if plan.key_type is not None:
            names.append(quote(CURSOR_KEY))
        if tracked:
            names.append(quote(PASS))
        count = batch.count
        with tx.copy(f"COPY {self.qualified(table)} ({', '.join(names)}) FROM STDIN") as copy:
            write = copy.write_row
            # a slice at a time: psycopg sends every 32 KB, so PostgreSQL parses and
            # stores what was sent while the next slice is converted here
            for start in range(0, count, self.slice_rows):
                columns = plan.column_values(batch, start, start + self.slice_rows)
                if tracked:
                    columns.append([batch.pass_id] * len(columns[0]))
                for row in zip(*columns, strict=True):
                    write(row)
        return count

    def any_stored(self, tx: Any, plan: TablePlan, table: str, values: list[Any]) -> bool:
        key = plan.stream.primary_key[0]
        sql_type = plan.types[plan.names.index(key)]
        # the keys as one JSON array: psycopg would adapt a list of 2,000 in Python, item by item
        try:
            keys = orjson.dumps(values).decode()
        except TypeError:
            return True  # keys orjson cannot encode: let the merge decide
        tx.execute(
            f"SELECT 1 FROM {self.qualified(table)} WHERE {quote(key)} IN "
            f"(SELECT k::{sql_type} FROM jsonb_array_elements_text(%s::jsonb) AS k) LIMIT 1",
            (keys,),
        )
        return tx.fetchone() is not None

    def unique_violation(self, exc: BaseException) -> bool:
        return getattr(exc, "sqlstate", None) == "23505"

    def forget_load(self, tx: Any, plan: TablePlan) -> None:
        tx.execute(f"DROP TABLE IF EXISTS pg_temp.{quote(f'_tapyard_load_{plan.table}'[:63])}")

    def create_table(self, stream: Any, columns: Sequence[Column]) -> None:
        # a table's load table follows its columns: made again after a change
        with contextlib.suppress(self._psycopg.Error), self._conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS pg_temp.{quote(f'_tapyard_load_{stream.name}'[:63])}")
        super().create_table(stream, columns)

    # -- locks ----------------------------------------------------------------------------

    def lock(self, stream: str, timeout: float) -> contextlib.AbstractContextManager[None]:
        """One run per stream of this database (and schema) at a time: a session-level
        advisory lock on a connection of its own, which the server releases when the
        run ends or its process dies."""
        return self._locked([(stream, False)], stream, timeout)

    def lock_partition(self, stream: str, partition: str, timeout: float) -> contextlib.AbstractContextManager[None]:
        """One run per partition (``partition``, its state name) of ``stream``, while runs
        of its other partitions, in any process or machine, write the stream too: the
        stream's lock shared, the partition's exclusive. A run of the whole stream
        (:meth:`lock`) waits for them all, and they for it."""
        return self._locked([(stream, True), (partition, False)], stream, timeout)

    @contextlib.contextmanager
    def _locked(self, keys: list[tuple[str, bool]], stream: str, timeout: float) -> Iterator[None]:
        if self._lock_conn is None:
            try:
                self._lock_conn = self._psycopg.connect(self._conninfo, autocommit=True)
            except self._psycopg.Error as exc:
                raise DestinationError(f"cannot connect to {self.url}: {first_line(exc)}") from exc
        deadline = time.monotonic() + max(0.0, timeout)
        held: list[tuple[str, bool]] = []
        try:
            for name, shared in keys:
                key = f"tapyard:{self.schema or ''}:{name}"
                mode = "_shared" if shared else ""
                while True:
                    got = self._lock_conn.execute(
                        f"SELECT pg_try_advisory_lock{mode}(hashtextextended(%s, 0))", (key,)
                    ).fetchone()
                    if got and got[0]:
                        held.append((key, shared))
                        break
                    if time.monotonic() >= deadline:
                        waited = f" after waiting {timeout:g}s" if timeout > 0 else ""
                        raise DestinationError(
                            f"stream {stream!r} of {self.url} is busy: another run is writing it{waited}; "
                            "run again when it ends (or wait longer with --wait SECONDS)"
                        )
                    time.sleep(0.1)
            yield
        finally:
            for key, shared in reversed(held):
                with contextlib.suppress(self._psycopg.Error):
                    self._lock_conn.execute(
                        f"SELECT pg_advisory_unlock{'_shared' if shared else ''}(hashtextextended(%s, 0))", (key,)
                    )

    def close(self) -> None:
        for conn in (self._conn, self._lock_conn):
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()

