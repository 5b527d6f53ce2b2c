"""The DuckDB destination (``--to duckdb:///path.duckdb``): the embedded choice for
analytics.

One table per stream, typed from the stream's schema (docs/types.md):
``BIGINT``, ``DOUBLE``, ``BOOLEAN``, ``TIMESTAMPTZ``, ``DATE``, ``TIME``,
``BLOB``, ``JSON`` for nested values, ``VARCHAR`` for text and for exact
decimals (their digits as they came: DuckDB's ``DECIMAL`` holds at most 38
digits at one fixed scale, so ``10.10`` and ``12345678901234806.89`` could not
both keep theirs). Each batch becomes an Arrow table, a column at a time, which
DuckDB reads directly; one ``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` merges
it into the stream's table, never replacing a newer version with an older one.
Rows whose keys are not stored go in with a plain ``INSERT``: in a table this run
found empty without asking (a key stored after all fails the transaction, which
is then written again, asking first), elsewhere after one lookup of the batch's
keys. The dead letters and the stream state are written in the same transaction.

A value Arrow cannot hold in its column's type (an integer past 64 bits, a lone
surrogate) is found before anything is sent, and its record goes to the dead
letters. DuckDB lets one process write a database file at a time; within it,
one run per stream (a lock file per stream in ``<database>-locks/``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tapyard.base import Column, DestinationError
from tapyard.destinations._base import Batch, refuse_odd_target, url_path
from tapyard.destinations._tables import (
    CURSOR_KEY,
    PASS,
    MergeDestination,
    TablePlan,
    first_line,
    quote,
    stream_file_lock,
    text_column,
)

__all__ = ["DuckDBDestination"]


class RecordValueError(ValueError):
    """One record's value cannot be held by its column's type (its message names the column, not the value)."""


class DuckDBDestination(MergeDestination):
    """Records in a DuckDB file (``duckdb:///path.duckdb``)."""

    column_types = {"INTEGER": "BIGINT", "REAL": "DOUBLE", "BOOLEAN": "BOOLEAN", "JSON": "JSON", "BLOB": "BLOB"}
    text_type = "VARCHAR"
    # DuckDB's DECIMAL holds 38 digits: decimals are kept as text, every digit
    decimal_type = None
    reported_types = {"timestamptz": "timestamp with time zone", "json": "json"}

    product = "DuckDB"
    param = "?"
    key_types = {"int": "BIGINT", "float": "DOUBLE", "text": "VARCHAR"}
    widenings = frozenset({("integer", "bigint")})
    # a first load into a table found empty goes straight in; a key stored after all
    # fails the transaction (no savepoints), which is then written again, asking first
    optimistic_loads = True
    savepoints = False

    def __init__(self, url: str) -> None:
        super().__init__()
        try:
            import duckdb
            import pyarrow
        except ImportError as exc:
            raise DestinationError("the DuckDB destination needs duckdb and pyarrow: pip install 'tapyard[duckdb]'") from exc
        self._duckdb = duckdb
        self._pa = pyarrow
        self.path = Path(url_path(url, "duckdb")).expanduser()
        self.url = f"duckdb:///{self.path}"
        refuse_odd_target(self.path, "a DuckDB database")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DestinationError(f"cannot create the folder for {self.path}: {exc.strerror or exc}") from exc
        self._loads = 0
        self._open: Any = None
        # Opened on first use: DuckDB lets one process hold the file, and a run that
        # waits for another (--wait) waits here, in lock(), not when it is named.

    # -- the connection -------------------------------------------------------------------

    @property
    def _conn(self) -> Any:
        return self._open if self._open is not None else self._connect(0.0)

    def _connect(self, timeout: float) -> Any:
        """Open the file (waiting up to ``timeout`` seconds while another process holds
        it) and make tapyard's own tables."""
        duckdb = self._duckdb
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            try:
                conn = duckdb.connect(str(self.path))
                break
            except duckdb.Error as exc:
                if "lock" not in str(exc).lower():
                    raise DestinationError(f"cannot open {self.path} as a DuckDB database: {first_line(exc)}") from exc
                if time.monotonic() >= deadline:
                    waited = f" after waiting {timeout:g}s" if timeout > 0 else ""
                    raise DestinationError(
                        f"{self.path} is busy: another process has it open{waited} (DuckDB lets one process "
                        "write a database); run again when it ends (or wait longer with --wait SECONDS)"
                    ) from exc
                time.sleep(0.1)
        self._open = conn
        try:
            conn.execute("SET TimeZone = 'UTC'")
            with self.transaction() as tx:
                self.execute(tx, "CREATE SEQUENCE IF NOT EXISTS _tapyard_dead_letter_ids")
                self.own_tables(tx, "BIGINT PRIMARY KEY DEFAULT nextval('_tapyard_dead_letter_ids')")
        except BaseException:
            self._open = None
            conn.close()
            raise
        return conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        conn = self._conn
        conn.begin()
        try:
            yield conn
        except BaseException as exc:
            with contextlib.suppress(self._duckdb.Error):
                conn.rollback()
            if isinstance(exc, self._duckdb.Error):
                raise DestinationError(f"{self.url} failed: {first_line(exc)}") from exc
            raise
        else:
            try:
                conn.commit()
            except self._duckdb.Error as exc:
                raise DestinationError(f"{self.url} failed: {first_line(exc)}") from exc

    @contextlib.contextmanager
    def savepoint(self, tx: Any) -> Iterator[None]:
        # DuckDB has no savepoints. None is needed: a record's bad value is found while
        # its Arrow column is built (row_error), before any statement of its batch runs;
        # an error from DuckDB itself fails the whole transaction.
        yield

    def execute(self, tx: Any, sql: str, params: Sequence[Any] = ()) -> int:
        result = tx.execute(sql, list(params)) if params else tx.execute(sql)
        if sql.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
            row = result.fetchone()
            return int(row[0]) if row else 0
        return -1

    def query(self, tx: Any, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        result = tx.execute(sql, list(params)) if params else tx.execute(sql)
        return [tuple(row) for row in result.fetchall()]

    def table_columns(self, tx: Any, table: str) -> dict[str, str]:
        rows = self.query(
            tx,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = ? AND table_schema = current_schema() ORDER BY ordinal_position",
            (table,),
        )
        return {name: kind for name, kind in rows}

    # -- types ----------------------------------------------------------------------------

    #: an integer column meeting a value past 64 bits keeps every digit as text, as SQLite does
    wide_integer_type = "VARCHAR"

    def converter_for(self, column: Column, sql_type: str) -> Callable[[list[Any]], list[Any]] | None:
        return text_column if sql_type == "VARCHAR" else self.converter(column)

    def _arrow_type(self, sql_type: str) -> Any:
        pa = self._pa
        return {
            "BIGINT": pa.int64(), "DOUBLE": pa.float64(), "BOOLEAN": pa.bool_(), "JSON": pa.string(),
            "BLOB": pa.binary(), "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"), "DATE": pa.date32(),
            "TIME": pa.time64("us"), "VARCHAR": pa.string(),
        }[sql_type]

    def row_error(self, exc: BaseException) -> bool:
        return isinstance(exc, RecordValueError)

    def describe_row_error(self, exc: BaseException, plan: TablePlan) -> str:
        return str(exc)

    # -- loading --------------------------------------------------------------------------

    def load(self, tx: Any, plan: TablePlan, columns: list[list[Any]]) -> str:
        return self._register(tx, plan, columns, numbered=True)

    def _register(self, tx: Any, plan: TablePlan, columns: list[list[Any]], *, numbered: bool) -> str:
        """``columns`` as an Arrow table DuckDB reads by name (with ``_tapyard_seq``
        numbering the rows when ``numbered``: the merge's order)."""
        pa = self._pa
        names = list(plan.names)
        types = list(plan.types)
        if plan.key_type is not None:
            names.append("_tapyard_cursor")
            types.append(plan.key_type)
        arrays = []
        for name, sql_type, values in zip(names, types, columns, strict=True):
            if name in plan.stream.primary_key and any(v is None for v in values):
                raise RecordValueError(f"primary key column {name!r} is null")
            try:
                arrays.append(pa.array(values, type=self._arrow_type(sql_type)))
            except (OverflowError, UnicodeError, TypeError, ValueError, pa.ArrowException) as exc:
                raise RecordValueError(_value_reason(name, sql_type, exc)) from None
        if numbered:
            rows = len(columns[0]) if columns else 0
            arrays.append(pa.array(range(rows), type=pa.int64()))
            names.append("_tapyard_seq")
        table = pa.Table.from_arrays(arrays, names=names)
        self._loads += 1
        view = f"_tapyard_load_{self._loads % 2}"
        tx.register(view, table)
        return quote(view)

    def load_into(self, tx: Any, plan: TablePlan, table: str, batch: Batch, *, tracked: bool) -> int:
        source = self._register(tx, plan, plan.column_values(batch), numbered=False)
        names = [quote(n) for n in plan.names] + ([quote(CURSOR_KEY)] if plan.key_type is not None else [])
        if tracked:
            return self.execute(
                tx, f"INSERT INTO {self.qualified(table)} ({', '.join([*names, quote(PASS)])}) "
                f"SELECT {', '.join(names)}, ? FROM {source}", (batch.pass_id,),
            )
        return self.execute(tx, f"INSERT INTO {self.qualified(table)} ({', '.join(names)}) SELECT {', '.join(names)} FROM {source}")

    def unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, self._duckdb.ConstraintException) and "duplicate key" in str(exc).lower()

    def any_stored(self, tx: Any, plan: TablePlan, table: str, values: list[Any]) -> bool:
        key = plan.stream.primary_key[0]
        keys = self._pa.table({"k": values})
        tx.register("_tapyard_keys", keys)
        found = tx.execute(
            f"SELECT 1 FROM {self.qualified(table)} WHERE {quote(key)} IN (SELECT k FROM _tapyard_keys) LIMIT 1"
        ).fetchall()
        tx.unregister("_tapyard_keys")
        return bool(found)

    # -- locks ----------------------------------------------------------------------------

    def lock(self, stream: str, timeout: float) -> contextlib.AbstractContextManager[None]:
        """One run per stream of this database at a time: a lock file per stream in
        ``<database>-locks/`` beside it, held with ``flock``."""
        if self._open is None:
            self._connect(timeout)
        return stream_file_lock(self.path, stream, timeout)

    def close(self) -> None:
        conn, self._open = self._open, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def _value_reason(column: str, sql_type: str, exc: BaseException) -> str:
    if isinstance(exc, OverflowError) and sql_type == "BIGINT":
        return (
            f"column {column!r}: integer outside DuckDB's 64-bit BIGINT range; "
            "declare the field as a decimal to keep it (docs/types.md)"
        )
    if isinstance(exc, UnicodeError):
        return f"column {column!r}: text with a lone surrogate cannot be stored as UTF-8"
    return f"column {column!r}: cannot be held as {sql_type} in DuckDB ({type(exc).__name__})"

