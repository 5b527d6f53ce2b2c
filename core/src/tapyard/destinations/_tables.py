"""The contract of a destination that keeps each stream in a table, and the
shared machinery of the destinations that load into a database through a
staging table and merge from it (PostgreSQL, DuckDB).

:class:`TableDestination` is what a new table destination implements, and what
``tests/test_destination_contract.py`` checks for every one of them:

- **tables from schemas**: :meth:`~TableDestination.create_table` makes (or
  evolves) the stream's table from its columns, with the stream's primary key
  as the table's; a new field adds a column; a field whose type changes in a
  way the stored values cannot follow is refused with one line;
- **a batch with its state in one transaction**: :meth:`Destination.write`
  upserts the records, keeps the dead letters and saves the stream state in one
  transaction, or does nothing;
- **the upsert guard**: a stored row is never replaced by a version whose
  cursor is older (``_tapyard_cursor``, :func:`cursor_sort_key` of the record's
  cursor), except by a full refresh (``Batch.replace``);
- **deletes**: a pass that may sweep stamps every row it saw with its id
  (``_tapyard_pass``); its last batch marks the rows it did not see
  (``_tapyard_deleted_at``), or removes them;
- **replace in one transaction**: a full refresh writes its pages into the
  stream's staging table (``Batch.stage``) and its last batch (``Batch.swap``)
  replaces the table's rows with the staged ones in one transaction, so that a
  reader sees the old rows until then and the new ones after, never a half-empty
  table, and a killed refresh leaves the table as it was;
- **per-stream locks**: :meth:`Destination.lock` holds one stream for one run.

:class:`MergeDestination` implements all of it in SQL that PostgreSQL and
DuckDB share (``INSERT ... SELECT ... ON CONFLICT DO UPDATE ... WHERE``); a
subclass says how rows reach the database in bulk (COPY, Arrow) and how its
driver runs statements.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import datetime as dt
import hashlib
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel

from tapyard.base import (
    Column,
    DeadLetter,
    DestinationError,
    Stream,
    StreamState,
    json_default,
    json_text,
    value_text,
)
from tapyard.destinations._base import Batch, Destination, FileLock, cursor_sort_key

__all__ = [
    "CURSOR_KEY",
    "DELETED_AT",
    "EXACT",
    "PARTITION",
    "PASS",
    "MergeDestination",
    "TableDestination",
    "TablePlan",
    "dead_letter_params",
    "exact_timestamps",
    "first_line",
    "json_column",
    "merge_sql",
    "quote",
    "stage_table",
    "stream_file_lock",
    "swap_statements",
    "text_column",
    "wide_integer_columns",
]

#: tapyard's own columns in a stream's table: a sort key of the record's cursor
#: (to never replace a newer version with an older one), the pass that last saw
#: the row, and when a complete listing found it gone (``deletes="listing"``)
CURSOR_KEY = "_tapyard_cursor"
PASS = "_tapyard_pass"
#: the partition whose pass last saw a row, in a stream read in several partitions
#: (a destination that sweeps per partition: ``Destination.sweeps_partitions``)
PARTITION = "_tapyard_partition"
DELETED_AT = "_tapyard_deleted_at"


def quote(name: str) -> str:
    """An SQL identifier, double-quoted (SQLite, PostgreSQL and DuckDB alike)."""
    return '"' + name.replace('"', '""') + '"'


def stage_table(table: str) -> str:
    """The name of ``table``'s staging table, where a full refresh collects its rows."""
    return f"_tapyard_stage_{table}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def first_line(exc: BaseException) -> str:
    """The first line of an error's message, bounded: what a destination's one-line error quotes."""
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def stream_file_lock(database: Path, stream: str, timeout: float) -> contextlib.AbstractContextManager[None]:
    """One run per stream of a database file at a time: a lock file per stream in
    ``<database>-locks/`` beside it, held with ``flock`` (see :class:`FileLock`)."""
    folder = database.with_name(database.name + "-locks")
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise DestinationError(f"cannot create {folder}: {exc.strerror or exc}") from exc
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", stream)[:60]
    digest = hashlib.sha256(stream.encode()).hexdigest()[:12]
    return FileLock(folder / f"{slug}-{digest}.lock", f"stream {stream!r} of {database}").held(timeout)


def dead_letter_params(state_key: str, stream: str, raw: Any, error: str, now: str) -> tuple[Any, ...]:
    """A dead letter's row: its state key, stream, the SHA-256 of its raw JSON (a
    payload is kept once per stream), the JSON, the reason and when."""
    try:
        text = json_text(raw, sort_keys=True)
    except ValueError:  # nested too deeply for any encoder (and for repr): its reason only
        text = "null"
    digest = hashlib.sha256(text.encode()).hexdigest()
    return (state_key, stream, digest, text, error, now)


class TableDestination(Destination):
    """A destination that keeps each stream in a table of its own (see the module's
    docstring for the whole contract, which the shared conformance test checks).

    A subclass implements :meth:`create_table`, :meth:`write`, :meth:`load_state`,
    :meth:`lock` and :meth:`count`; :meth:`prepare` checks the primary key first.
    """

    supports_sweep = True
    sweeps_partitions = True
    #: whether a full refresh may go through the staging table (``Batch.stage``/``swap``)
    supports_replace = True

    def prepare(self, stream: Stream, columns: Sequence[Column]) -> None:
        missing = [k for k in stream.primary_key if k not in {c.name for c in columns}]
        if missing:
            raise DestinationError(f"stream {stream.name!r}: primary key {missing} is not a column")
        self.create_table(stream, columns)

    @abc.abstractmethod
    def create_table(self, stream: Stream, columns: Sequence[Column]) -> None:
        """Create ``stream``'s table from ``columns`` (with tapyard's own columns), or
        evolve the table that is there: add the columns it lacks; refuse, with a
        :class:`DestinationError` of one line, a column whose stored type cannot
        hold what the schema now declares."""

    @abc.abstractmethod
    def lock(self, stream: str, timeout: float) -> contextlib.AbstractContextManager[None]:
        """Hold ``stream`` for one run (see :meth:`Destination.lock`); released however
        the process ends."""


def refused_change(stream: str, column: str, stored: str, wanted: str, where: str) -> DestinationError:
    """The one line that refuses a column type change the stored values cannot follow."""
    return DestinationError(
        f"stream {stream!r}: column {column!r} is {stored} in {where} but the schema now makes it "
        f"{wanted}; tapyard does not convert stored values: rename or drop the column (or the table) "
        "and sync again with --full-refresh"
    )


# -- turning records into column values ---------------------------------------------------


def json_column(values: Sequence[Any]) -> list[Any]:
    """A column of nested values as JSON text (``None`` stays NULL), every number
    exact: orjson for the whole column in one comprehension (this runs for every
    nested value of every record), :func:`~tapyard.base._values.json_text` value by
    value when orjson refuses one (an integer past 64 bits, a lone surrogate).
    As in SQLite, a NaN a connector nests in a value lands as ``null``
    (docs/types.md: tapyard's own readers never nest one)."""
    dumps, default, option = orjson.dumps, json_default, orjson.OPT_PASSTHROUGH_DATETIME
    try:
        return [None if v is None else dumps(v, default=default, option=option).decode() for v in values]
    except TypeError:
        return [None if v is None else json_text(v) for v in values]


#: the suffix of the column beside a ``TIMESTAMPTZ`` column that keeps a timestamp's
#: whole text (``value_text``) where the instant alone would lose something: an
#: offset other than UTC, digits 7-9, or no zone at all; NULL otherwise
EXACT = "__exact"


def exact_timestamps(values: Sequence[Any]) -> list[Any]:
    """The ``__exact`` column of a timestamp column: the stored text of each value that
    ``TIMESTAMPTZ`` cannot hold whole, NULL for the others (UTC, to the microsecond)."""
    out: list[Any] = []
    append = out.append
    for value in values:
        if not isinstance(value, dt.datetime):
            append(None)
            continue
        offset = value.utcoffset() if value.tzinfo is not None else None
        nanoseconds: int = getattr(value, "_nanosecond", 0)
        append(value_text(value) if offset is None or bool(offset) or nanoseconds != 0 else None)
    return out


def text_column(values: Sequence[Any]) -> list[Any]:
    """A column of scalars as their text (timestamps, UUIDs...; strings as they are)."""
    return [v if v is None or v.__class__ is str else value_text(v) for v in values]


@dataclass(slots=True)
class TablePlan:
    """One stream's table as a merge destination writes it: the columns, the
    statements, and how to turn a batch's records into column values."""

    stream: Stream
    table: str
    columns: list[Column]
    #: the SQL type of each column, in order
    types: list[str]
    #: what each column's values go through before loading, a column at a time (``None``: nothing)
    converters: list[Callable[[list[Any]], list[Any]] | None]
    #: the SQL type of the cursor key column, or None for a stream without a cursor
    key_type: str | None
    #: how a cursor value becomes its key
    key_of: Callable[[Any], Any]
    #: the attribute of the cursor in validated records
    cursor_attr: str | None
    #: whether the table has the pass column yet
    has_pass: bool = False
    #: the table was empty when this run began and no load has met a stored key
    #: since: rows are loaded straight in without asking whether their keys are stored
    fresh: bool = False
    #: the index of the cursor's column when its values are their own keys (integers)
    key_column: int | None = None
    #: tapyard's columns added to the table since (the partition column)
    extra: set[str] = dataclasses.field(default_factory=set)
    #: the staging table is there (made or found by a write whose transaction has not rolled back)
    stage_ready: bool = False
    #: the staging table was empty when this run first wrote to it and no load has met a
    #: stored key since (None: not asked yet): staged rows go straight in, as in ``fresh``
    stage_fresh: bool | None = None

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def marks(self) -> bool:
        return self.stream.deletes == "listing"

    def key_values(self, batch: Batch) -> list[list[Any]]:
        """The primary key's columns of ``batch``, converted as :meth:`column_values`
        converts them (what the merge compares)."""
        out = []
        for key in self.stream.primary_key:
            i = self.names.index(key)
            attr, convert = self.columns[i].attribute or key, self.converters[i]
            if batch.items is not None:
                try:
                    values = [item.__dict__[attr] for item in batch.items]
                except KeyError:  # a computed field or a property
                    values = [getattr(item, attr) for item in batch.items]
            else:
                values = [row.get(key) for row in batch.rows]
            out.append(values if convert is None else convert(values))
        return out

    def column_values(self, batch: Batch, start: int = 0, stop: int | None = None) -> list[list[Any]]:
        """The batch's records (those from ``start`` to ``stop``) as one list per
        column (then the cursor key's, when the stream has a cursor), converted for
        loading. Validated records are read from their ``__dict__``, a column at a time."""
        out: list[list[Any]] = []
        whole = start == 0 and stop is None
        if batch.items is not None:
            items = batch.items if whole else batch.items[start:stop]
            attrs = [c.attribute or c.name for c in self.columns]
            try:
                # each record's values in one C call, then the rows turned into columns
                if len(attrs) == 1:
                    columns: list[Any] = [[item.__dict__[attrs[0]] for item in items]]
                else:
                    get = operator.itemgetter(*attrs)
                    columns = list(zip(*[get(item.__dict__) for item in items], strict=True)) or [
                        () for _ in attrs
                    ]
            except KeyError:  # a computed field or a property
                columns = [[getattr(item, attr) for item in items] for attr in attrs]
            for values, convert in zip(columns, self.converters, strict=True):
                out.append(list(values) if convert is None else convert(values))
            if self.key_type is not None:
                if self.key_column is not None:
                    out.append(out[self.key_column])  # an integer cursor is its own key
                else:
                    cursor = self.cursor_attr or ""
                    key = self.key_of
                    out.append([key(getattr(item, cursor, None)) for item in items])
            return out
        rows = batch.rows if whole else batch.rows[start:stop]
        for column, convert in zip(self.columns, self.converters, strict=True):
            values = [row.get(column.name) for row in rows]
            out.append(values if convert is None else convert(values))
        if self.key_type is not None:
            cursor = self.cursor_attr or ""
            out.append([self.key_of(row.get(cursor)) for row in rows])
        return out


def _number_key(value: Any) -> Any:
    return cursor_sort_key(value)


def _text_key(value: Any) -> Any:
    """A text cursor's key: timestamps as zero-padded nanoseconds (so that text order
    is time order across offsets), any other text as it is."""
    key = cursor_sort_key(value)
    if key is None or isinstance(key, str):
        return key
    return f"{int(key):020d}" if key >= 0 else f"-{int(-key):019d}"


def cursor_kind(stream: Stream, columns: Sequence[Column]) -> str | None:
    """How the cursor's sort key is typed: ``"int"`` (timestamps as nanoseconds,
    integers, booleans), ``"float"``, ``"text"``, or None without a cursor."""
    if not stream.cursor_field:
        return None
    column = {c.name: c for c in columns}.get(stream.cursor_field)
    if column is None:
        return "text"
    if column.type in ("INTEGER", "BOOLEAN") or (
        column.type == "TEXT" and column.convert and column.format in ("date-time", "date")
    ):
        return "int"
    if column.type == "REAL":
        return "float"
    return "text"


def wide_integer_columns(columns: Sequence[Column], batch: Batch, *, skip: Sequence[int] = ()) -> list[int]:
    """The indexes of the integer columns to which ``batch`` gives a value past 64
    bits (those in ``skip`` left out)."""
    found = []
    records: list[Any] = list(batch.items) if batch.items is not None else list(batch.rows)
    for i, column in enumerate(columns):
        if column.type != "INTEGER" or i in skip:
            continue
        attr = column.attribute or column.name
        for record in records:
            value = getattr(record, attr, None) if batch.items is not None else record.get(column.name)
            if isinstance(value, int) and not -(2**63) <= value < 2**63:
                found.append(i)
                break
    return found


def _state_only(batch: Batch) -> bool:
    return not batch.count and not batch.seen and batch.sweep is None and batch.swap is None and not batch.dead


def _runs(batches: Sequence[Batch]) -> list[list[Batch]]:
    """``batches`` cut into runs of consecutive pages that can be merged together:
    same stream, state, pass and flags; a batch that ends a pass (sweep, swap)
    closes its run."""
    runs: list[list[Batch]] = []
    for batch in batches:
        if runs:
            last = runs[-1][-1]
            if (
                last.stream == batch.stream and last.state_name == batch.state_name
                and last.pass_id == batch.pass_id and last.tracked == batch.tracked
                and last.replace == batch.replace and last.stage == batch.stage
                and last.sweep is None and last.swap is None
                and (last.items is None) == (batch.items is None)
            ):
                runs[-1].append(batch)
                continue
        runs.append([batch])
    return runs


def _joined(group: list[Batch]) -> Batch:
    """One batch holding the records and the seen keys of ``group`` (in order), and
    the sweep and swap of its last batch."""
    last = group[-1]
    items = None if last.items is None else [i for b in group for i in (b.items or ())]
    rows = [] if items is not None else [r for b in group for r in b.rows]
    return dataclasses.replace(
        last, items=items, rows=rows, dead=[], seen=[k for b in group for k in b.seen], state=None,
    )


def _split_back(group: list[Batch], whole: Batch) -> None:
    """After ``whole`` moved records it could not write to its dead letters: drop
    them from the batches of ``group`` too, and give the dead letters to the last."""
    kept = {id(r) for r in (whole.items if whole.items is not None else whole.rows)}
    for batch in group:
        if batch.items is not None:
            batch.items = [i for i in batch.items if id(i) in kept]
        else:
            batch.rows = [r for r in batch.rows if id(r) in kept]
    group[-1].dead.extend(whole.dead)


def merge_sql(
    *, target: str, source: str, names: Sequence[str], primary_key: Sequence[str], has_key: bool,
    tracked: bool, pass_value: str, replace: bool, marks: bool, stage: bool = False, dedupe: bool = True,
    partition_value: str | None = None,
) -> str:
    """``INSERT INTO target SELECT ... FROM source ON CONFLICT DO UPDATE ... WHERE``, in
    the SQL that SQLite, PostgreSQL and DuckDB share.

    With ``dedupe``, one version per key is taken from ``source`` (the newest
    cursor key, then the last loaded, by its ``_tapyard_seq``), as upserting the
    rows one after the other would leave it. A stored row is changed only when
    some column differs and, unless ``replace``, when the incoming cursor is not
    older (the upsert guard). ``tracked`` sets the pass column from ``pass_value``;
    ``stage`` lets a row of another pass be replaced whatever its cursor (what an
    abandoned refresh staged is no version to keep); ``marks`` clears the deleted mark.
    """
    keys = [quote(k) for k in primary_key]
    own = [CURSOR_KEY] if has_key else []
    every = [*names, *own]
    scoped = tracked and partition_value is not None
    columns = [quote(n) for n in every] + ([quote(PASS)] if tracked else []) + ([quote(PARTITION)] if scoped else [])
    selected = [quote(n) for n in every] + ([pass_value] if tracked else []) + ([partition_value or ""] if scoped else [])
    if dedupe:
        order = [*keys, *([f"{quote(CURSOR_KEY)} DESC NULLS LAST"] if has_key else []), f"{quote('_tapyard_seq')} DESC"]
        select = f"SELECT DISTINCT ON ({', '.join(keys)}) {', '.join(selected)} FROM {source} ORDER BY {', '.join(order)}"
    else:
        # WHERE true: SQLite would read the ON of ON CONFLICT as a join's
        select = f"SELECT {', '.join(selected)} FROM {source} WHERE true"
    sql = f"INSERT INTO {target} ({', '.join(columns)}) {select} ON CONFLICT ({', '.join(keys)})"
    data = [n for n in names if n not in primary_key]
    if not data:
        return sql + " DO NOTHING"
    sets = [f"{quote(n)} = excluded.{quote(n)}" for n in [*data, *own]]
    if tracked:
        sets.append(f"{quote(PASS)} = excluded.{quote(PASS)}")
    if scoped:
        sets.append(f"{quote(PARTITION)} = excluded.{quote(PARTITION)}")
    differs = [f"{target}.{quote(n)} IS DISTINCT FROM excluded.{quote(n)}" for n in data]
    if marks:
        sets.append(f"{quote(DELETED_AT)} = NULL")
        differs.append(f"{target}.{quote(DELETED_AT)} IS NOT NULL")
    if stage:
        differs.append(f"{target}.{quote(PASS)} IS DISTINCT FROM excluded.{quote(PASS)}")
    sql += f" DO UPDATE SET {', '.join(sets)} WHERE ({' OR '.join(differs)})"
    if has_key and not replace:
        key = quote(CURSOR_KEY)
        guard = f"excluded.{key} IS NULL OR {target}.{key} IS NULL OR excluded.{key} >= {target}.{key}"
        if stage:
            guard += f" OR {target}.{quote(PASS)} IS DISTINCT FROM excluded.{quote(PASS)}"
        sql += f" AND ({guard})"
    return sql


def swap_statements(
    *, table: str, stage: str, names: Sequence[str], primary_key: Sequence[str], has_key: bool,
    marks: bool, keep: bool, param: str,
) -> list[str]:
    """The statements that replace ``table``'s rows with those one pass staged in
    ``stage`` (both qualified names), each taking the pass id as its one parameter
    (the last takes none): the staged rows upserted whatever their cursor, the
    rows the pass did not stage removed (unless ``keep``), the staging table dropped.
    Run in one transaction, a reader sees the old rows or the new, never a mix."""
    source = f"(SELECT * FROM {stage} WHERE {quote(PASS)} = {param}) AS staged"
    statements = [
        merge_sql(
            target=table, source=source, names=names, primary_key=primary_key, has_key=has_key, tracked=True,
            pass_value=quote(PASS), replace=True, marks=marks, dedupe=False,
        )
    ]
    if not keep:
        match = " AND ".join(f"s.{quote(k)} = {table}.{quote(k)}" for k in primary_key)
        statements.append(
            f"DELETE FROM {table} WHERE NOT EXISTS (SELECT 1 FROM {stage} AS s "
            f"WHERE s.{quote(PASS)} = {param} AND {match})"
        )
    statements.append(f"DROP TABLE {stage}")
    return statements


# -- the merge destination -----------------------------------------------------------


#: SQLSTATE classes of errors a record's own values cause (22: data exception,
#: 23: integrity constraint violation): that record goes to the dead letters
_ROW_ERROR_CLASSES = ("22", "23")


class _KeyStored(Exception):
    """A load into a table found empty met a stored key, in a database whose
    transaction that fails (no savepoint to go back to): the write starts again."""


@dataclass(slots=True)
class _PlanState:
    """What a write may change in a :class:`TablePlan` while its transaction runs
    (types widened, columns added), to put back when the transaction rolls back.
    ``fresh`` and ``stage_fresh`` are left out: they only ever turn false (a staging
    table a rollback takes away is made again empty), which is always safe."""

    types: list[str]
    converters: list[Callable[[list[Any]], list[Any]] | None]
    key_column: int | None
    has_pass: bool
    extra: set[str]
    stage_ready: bool

    @classmethod
    def of(cls, plan: TablePlan) -> _PlanState:
        return cls(list(plan.types), list(plan.converters), plan.key_column, plan.has_pass, set(plan.extra),
                   plan.stage_ready)

    def restore(self, plan: TablePlan) -> None:
        plan.types[:] = self.types
        plan.converters[:] = self.converters
        plan.key_column, plan.has_pass, plan.extra = self.key_column, self.has_pass, set(self.extra)
        plan.stage_ready = self.stage_ready


class MergeDestination(TableDestination):
    """A table destination that loads a batch in bulk into a load table and merges
    it into the stream's table with one ``INSERT ... SELECT ... ON CONFLICT DO
    UPDATE ... WHERE`` (PostgreSQL, DuckDB).

    A subclass gives the SQL types (:meth:`sql_type`, :attr:`key_types`), a
    transaction and savepoints, the bulk load (:meth:`load`), statement execution
    (:meth:`execute`, returning the row count), and how to read a table's columns.
    """

    #: the SQL type of the cursor key column by :func:`cursor_kind`
    key_types: dict[str, str] = {"int": "NUMERIC", "float": "DOUBLE PRECISION", "text": "TEXT"}
    #: the name of the database for messages ("PostgreSQL")
    product = ""
    #: the placeholder of a statement parameter
    param = "%s"
    #: load new rows straight into a table that was empty without asking first;
    #: a key met after all rolls back to a savepoint (then merges), or, where
    #: :attr:`savepoints` is false, the whole write is rolled back and written again
    #: asking first
    optimistic_loads = False
    #: how a column is added to a table as rows are written (a pass or partition
    #: column): where runs of several partitions of one stream write it at once,
    #: the second to add it must find it there, not fail
    add_column = "ADD COLUMN"
    #: whether :meth:`savepoint` rolls back alone what its block did (PostgreSQL);
    #: false where an error fails the whole transaction (DuckDB)
    savepoints = True

    def __init__(self) -> None:
        self._plans: dict[str, TablePlan] = {}

    # -- what a subclass gives ------------------------------------------------------

    #: the SQL type of each column type this database names (docs/types.md)
    column_types: dict[str, str] = {}
    #: the type of text, and of every column not named otherwise
    text_type = "TEXT"
    #: the type of exact decimals; None where the database has none wide enough
    #: for every digit (they are kept as text)
    decimal_type: str | None = None
    #: the types of converted dates and times, by JSON Schema format
    time_types: dict[str, str] = {"date-time": "TIMESTAMPTZ", "date": "DATE", "time": "TIME"}
    #: a declared type (lower case) as the database reports it, where they differ
    reported_types: dict[str, str] = {}

    def sql_type(self, column: Column) -> str:
        """The SQL type of ``column`` in this database (docs/types.md)."""
        named = self.column_types.get(column.type)
        if named is not None:
            return named
        if column.format == "decimal":
            return self.decimal_type or self.text_type
        if column.convert and column.format in self.time_types:
            return self.time_types[column.format]
        return self.text_type

    def converter(self, column: Column) -> Callable[[list[Any]], list[Any]] | None:
        """What a value of ``column`` goes through before the bulk load, if anything:
        JSON is serialised, and text columns take the value's text."""
        if column.type == "JSON":
            return json_column
        if column.convert and self.sql_type(column) == self.text_type:
            return text_column
        return None

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager[Any]:
        """One transaction; yields what :meth:`execute` and :meth:`load` take."""

    @abc.abstractmethod
    def savepoint(self, tx: Any) -> contextlib.AbstractContextManager[None]:
        """A savepoint inside ``tx``: rolled back alone when its block raises."""

    @abc.abstractmethod
    def execute(self, tx: Any, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return how many rows it changed (-1 if unknown)."""

    @abc.abstractmethod
    def query(self, tx: Any, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one query and return its rows."""

    @abc.abstractmethod
    def load(self, tx: Any, plan: TablePlan, columns: list[list[Any]]) -> str:
        """Load ``columns`` (one list per column of ``plan``, then the cursor key's)
        in bulk where the merge can read them, with a ``_tapyard_seq`` column that
        numbers them in order; return the SQL name to select from."""

    @abc.abstractmethod
    def load_into(self, tx: Any, plan: TablePlan, table: str, batch: Batch, *, tracked: bool) -> int:
        """Load ``batch``'s records (:meth:`TablePlan.column_values`, and the pass
        column, when ``tracked``) straight into ``table``, none of whose keys is
        stored; return how many rows were added."""

    @abc.abstractmethod
    def any_stored(self, tx: Any, plan: TablePlan, table: str, values: list[Any]) -> bool:
        """Whether ``table`` holds a row whose key (``plan``'s one primary key column)
        is one of ``values``."""

    def unique_violation(self, exc: BaseException) -> bool:
        """Whether ``exc`` says a key was stored after all (the fast load then merges)."""
        return False

    @abc.abstractmethod
    def table_columns(self, tx: Any, table: str) -> dict[str, str]:
        """The columns of ``table`` and their declared types, lower case (empty when
        there is no such table)."""

    @abc.abstractmethod
    def row_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` comes from one record's values (it then goes to the dead letters)."""

    #: type changes the database makes without losing a stored value: (stored, wanted)
    widenings: frozenset[tuple[str, str]] = frozenset()

    # -- tables ---------------------------------------------------------------------------

    def _table_sql(self, name: str, plan: TablePlan, *, pass_column: bool) -> str:
        defs = [
            f"{quote(c.name)} {t}" + (" NOT NULL" if c.name in plan.stream.primary_key else "")
            for c, t in zip(plan.columns, plan.types, strict=True)
        ]
        defs.extend(f"{quote(n)} {t}" for n, t in self._own_columns(plan, pass_column=pass_column))
        defs.append(f"PRIMARY KEY ({', '.join(quote(k) for k in plan.stream.primary_key)})")
        return f"CREATE TABLE {self.qualified(name)} ({', '.join(defs)})"

    def _own_columns(self, plan: TablePlan, *, pass_column: bool) -> list[tuple[str, str]]:
        own = []
        if plan.key_type is not None:
            own.append((CURSOR_KEY, plan.key_type))
        if pass_column or plan.marks:
            own.append((PASS, "BIGINT"))
        if plan.marks:
            own.append((DELETED_AT, "TEXT"))
        return own

    def qualified(self, table: str) -> str:
        """``table`` as the statements name it (a subclass may add its schema)."""
        return quote(table)

    def create_table(self, stream: Stream, columns: Sequence[Column]) -> None:
        names = {c.name for c in columns}
        exact = [
            Column(name=c.name + EXACT, type="TEXT", attribute=c.attribute or c.name)
            for c in columns
            if self.sql_type(c) == "TIMESTAMPTZ" and c.name + EXACT not in names
        ]
        columns = [*columns, *exact]
        kind = cursor_kind(stream, columns)
        cursor_attr = None
        if stream.cursor_field:
            column = {c.name: c for c in columns}.get(stream.cursor_field)
            cursor_attr = (column.attribute or column.name) if column else stream.cursor_field
        plan = TablePlan(
            stream=stream,
            table=stream.name,
            columns=list(columns),
            types=[self.sql_type(c) for c in columns],
            converters=[self.converter(c) for c in columns],
            key_type=self.key_types[kind] if kind else None,
            key_of=_text_key if kind == "text" else _number_key,
            cursor_attr=cursor_attr,
        )
        for i in range(len(columns) - len(exact), len(columns)):
            plan.converters[i] = exact_timestamps
        if kind == "int" and stream.cursor_field:
            column = {c.name: c for c in columns}.get(stream.cursor_field)
            if column is not None and column.type == "INTEGER":
                plan.key_column = plan.names.index(column.name)
        with self.transaction() as tx:
            existing = self.table_columns(tx, plan.table)
            if not existing:
                self.execute(tx, self._table_sql(plan.table, plan, pass_column=False))
                plan.has_pass = plan.marks
            else:
                self._evolve(tx, plan, existing)
            plan.fresh = not self.query(tx, f"SELECT 1 FROM {self.qualified(plan.table)} LIMIT 1")
        self._plans[stream.name] = plan

    def _evolve(self, tx: Any, plan: TablePlan, existing: dict[str, str]) -> None:
        wanted = list(zip(plan.names, plan.types, strict=True))
        wanted.extend(self._own_columns(plan, pass_column=False))
        for name, sql_type in wanted:
            stored = existing.get(name)
            if stored is None:
                self.execute(tx, f"ALTER TABLE {self.qualified(plan.table)} ADD COLUMN {quote(name)} {sql_type}")
            elif not self.same_type(stored, sql_type):
                index = plan.names.index(name) if name in plan.names else -1
                if (
                    index >= 0 and plan.columns[index].type == "INTEGER"
                    and self.same_type(stored, self.wide_integer_type)
                ):
                    self._adopt_wide(plan, index)  # widened by an earlier run's integer past 64 bits
                elif (self.normal_type(stored), self.normal_type(sql_type)) in self.widenings:
                    self.execute(
                        tx,
                        f"ALTER TABLE {self.qualified(plan.table)} ALTER COLUMN {quote(name)} TYPE {sql_type}",
                    )
                else:
                    raise refused_change(
                        plan.stream.name, name, stored, sql_type.lower(), f"the {self.product} table {plan.table!r}"
                    )
        plan.has_pass = PASS in existing or plan.marks

    def normal_type(self, sql_type: str) -> str:
        """A declared type in the form the database reports it (lower case)."""
        lowered = sql_type.lower()
        return self.reported_types.get(lowered, lowered)

    def same_type(self, stored: str, wanted: str) -> bool:
        return self.normal_type(stored) == self.normal_type(wanted)

    def staged(self, stream: str, pass_id: int) -> bool:
        stage = stage_table(stream)
        with self.transaction() as tx:
            if not self.table_columns(tx, stage):
                return False
            return bool(self.query(
                tx, f"SELECT 1 FROM {self.qualified(stage)} WHERE {quote(PASS)} = {self.param} LIMIT 1", (pass_id,)
            ))

    def _ensure_column(self, tx: Any, plan: TablePlan, name: str, sql_type: str) -> None:
        if name not in plan.extra:
            if name not in self.table_columns(tx, plan.table):
                self.execute(tx, f"ALTER TABLE {self.qualified(plan.table)} {self.add_column} {quote(name)} {sql_type}")
            plan.extra.add(name)

    def _ensure_pass(self, tx: Any, plan: TablePlan) -> None:
        if not plan.has_pass:
            if PASS not in self.table_columns(tx, plan.table):
                self.execute(tx, f"ALTER TABLE {self.qualified(plan.table)} {self.add_column} {quote(PASS)} BIGINT")
            plan.has_pass = True

    def _ensure_stage(self, tx: Any, plan: TablePlan) -> str:
        """The stream's staging table (made like its table, with the pass column).
        The first time a run writes to it, whether it holds rows (an earlier pass's, or
        this pass's before a resume) decides ``stage_fresh``."""
        stage = stage_table(plan.table)
        if not plan.stage_ready:
            if not self.table_columns(tx, stage):
                self.execute(tx, self._table_sql(stage, plan, pass_column=True))
                if plan.stage_fresh is None:
                    plan.stage_fresh = True
            elif plan.stage_fresh is None:
                plan.stage_fresh = not self.query(tx, f"SELECT 1 FROM {self.qualified(stage)} LIMIT 1")
            plan.stage_ready = True
        return stage

    # -- statements -----------------------------------------------------------------------

    def _key_match(self, plan: TablePlan, left: str, right: str) -> str:
        return " AND ".join(f"{left}.{quote(k)} = {right}.{quote(k)}" for k in plan.stream.primary_key)

    # -- writing --------------------------------------------------------------------------

    def write(self, state_key: str, batches: Sequence[Batch]) -> None:
        """One transaction for all ``batches``. Consecutive pages of one stream (and
        state) are loaded and merged together: one bulk load and one merge for the
        2,000 rows or so that the engine commits at once, not one per page.

        What the transaction taught the stream's plans (a column widened or added)
        is forgotten when it rolls back, as the database forgets it. A load into a
        table found empty that meets a stored key after all, in a database without
        savepoints, rolls the whole transaction back; it is then written again,
        asking the table which keys it holds first."""
        plans = {b.stream: self._plans[b.stream] for b in batches if b.stream in self._plans}
        for _ in range(len(plans) + 1):
            kept = {name: _PlanState.of(plan) for name, plan in plans.items()}
            # what an attempt does to the batches (records moved to the dead letters)
            records = [(b, b.items, b.rows, len(b.dead)) for b in batches]
            try:
                self._write_once(state_key, batches)
            except _KeyStored:
                for name, state in kept.items():
                    state.restore(plans[name])
                for batch, items, rows, dead in records:
                    batch.items, batch.rows = items, rows
                    del batch.dead[dead:]
                continue
            except BaseException:
                for name, state in kept.items():
                    state.restore(plans[name])
                raise
            return
        raise DestinationError(f"{self.url}: a write met stored keys in every attempt")  # cannot happen: each attempt makes a plan ask

    def _write_once(self, state_key: str, batches: Sequence[Batch]) -> None:
        now = _now()
        with self.transaction() as tx:
            for group in _runs(batches):
                if group[0].stream not in self._plans and all(_state_only(b) for b in group):
                    # a state alone (tapyard state reset/set): no table needed
                    last = group[-1]
                    if last.state is not None:
                        self._save_state(tx, state_key, last.state_name, last.state, now)
                    continue
                plan = self._plans[group[0].stream]
                whole = group[0] if len(group) == 1 else _joined(group)
                try:
                    with self.savepoint(tx):
                        changed, deleted = self._write_batch(tx, plan, whole)
                except Exception as exc:
                    if not self.row_error(exc) or whole.count == 0:
                        raise
                    changed, deleted = self._write_again(tx, plan, whole)
                    if whole is not group[0]:
                        _split_back(group, whole)
                for batch in group:
                    batch.changed, batch.deleted = 0, 0
                counted = [b for b in group if b.count] or group
                counted[-1].changed, group[-1].deleted = changed, deleted
                dead = [d for batch in group for d in batch.dead]
                if dead:
                    self._keep_dead(tx, state_key, group[0].stream, dead, now)
                # of the states of one run of pages, the last is the one this transaction commits
                stated = next((b for b in reversed(group) if b.state is not None), None)
                if stated is not None and stated.state is not None:
                    self._save_state(tx, state_key, stated.state_name, stated.state, now)

    def _write_batch(self, tx: Any, plan: TablePlan, batch: Batch) -> tuple[int, int]:
        """Rows, stamps, sweep and swap of one batch; returns rows changed and rows deleted."""
        changed = deleted = 0
        tracked = batch.tracked or batch.stage
        target = self._ensure_stage(tx, plan) if batch.stage else plan.table
        tbl = self.qualified(target)
        # a partition's pass stamps its rows with the partition too, and sweeps only them
        scope = batch.scope if batch.tracked and not batch.stage else None
        if tracked and not batch.stage:
            self._ensure_pass(tx, plan)
        if scope is not None:
            self._ensure_column(tx, plan, PARTITION, "TEXT")
        stamp = f"{quote(PASS)} = {self.param}" + (f", {quote(PARTITION)} = {self.param}" if scope is not None else "")
        stamp += f", {quote(DELETED_AT)} = NULL" if plan.marks and not batch.stage else ""
        stamped = (batch.pass_id,) if scope is None else (batch.pass_id, scope)
        if batch.count:
            keys = plan.key_values(batch)
            # a key sent twice (a record that moved while the source was listed) needs
            # its versions sorted out; most batches have none, and skip the sort
            twice = len(set(keys[0] if len(keys) == 1 else zip(*keys, strict=True))) != batch.count
            loaded = False
            fresh = plan.stage_fresh if batch.stage else plan.fresh
            if not twice and scope is None and len(keys) == 1 and (
                (fresh and self.optimistic_loads) or not self.any_stored(tx, plan, target, keys[0])
            ):
                # none of these keys is stored yet (a first sync, new records): loaded
                # straight into the table, as a hand-written loader would
                try:
                    with self.savepoint(tx):
                        changed, loaded = self.load_into(tx, plan, target, batch, tracked=tracked), True
                except Exception as exc:
                    if not self.unique_violation(exc):
                        raise
                    # ask before loading from now on
                    if batch.stage:
                        plan.stage_fresh = False
                    else:
                        plan.fresh = False
                    if not self.savepoints:
                        raise _KeyStored from exc  # the transaction is lost: write() writes it again
            if not loaded:
                source = self.load(tx, plan, plan.column_values(batch))
                sql = merge_sql(
                    target=tbl, source=source, names=plan.names,
                    primary_key=plan.stream.primary_key, has_key=plan.key_type is not None, tracked=tracked,
                    pass_value=self.param, replace=batch.replace and not batch.stage,
                    marks=plan.marks and not batch.stage, stage=batch.stage, dedupe=twice,
                    partition_value=self.param if scope is not None else None,
                )
                changed = self.execute(tx, sql, stamped if tracked else ())
                if tracked:
                    # the rows the merge left alone (unchanged) were seen by this pass too
                    self.execute(
                        tx,
                        f"UPDATE {tbl} SET {stamp} FROM {source} AS s WHERE {self._key_match(plan, tbl, 's')} "
                        f"AND {tbl}.{quote(PASS)} IS DISTINCT FROM {self.param}",
                        (*stamped, batch.pass_id),
                    )
        if tracked and batch.seen:
            where = " AND ".join(f"{quote(k)} = {self.param}" for k in plan.stream.primary_key)
            for row in batch.seen:
                self.execute(
                    tx, f"UPDATE {tbl} SET {stamp} WHERE {where}",
                    (*stamped, *(row.get(k) for k in plan.stream.primary_key)),
                )
        if batch.sweep is not None and not batch.stage:
            self._ensure_pass(tx, plan)
            tbl = self.qualified(plan.table)
            unseen = f"{quote(PASS)} IS DISTINCT FROM {self.param}"
            args: tuple[Any, ...] = (batch.sweep,)
            if scope is not None:
                unseen += f" AND {quote(PARTITION)} = {self.param}"
                args = (batch.sweep, scope)
            if batch.hard_delete or not plan.marks:
                deleted = self.execute(tx, f"DELETE FROM {tbl} WHERE {unseen}", args)
            else:
                deleted = self.execute(
                    tx,
                    f"UPDATE {tbl} SET {quote(DELETED_AT)} = {self.param} WHERE {unseen} AND {quote(DELETED_AT)} IS NULL",
                    (_now(), *args),
                )
        if batch.stage:
            changed = 0  # staged rows reach the table when the pass swaps them in
        if batch.swap is not None:
            changed, deleted = self._swap(tx, plan, batch.swap, keep=batch.keep_unseen)
        return changed, deleted

    def _swap(self, tx: Any, plan: TablePlan, pass_id: int, *, keep: bool) -> tuple[int, int]:
        """Replace the table's rows with those the pass ``pass_id`` staged, in the
        caller's transaction: staged rows upserted (whatever their cursor), rows
        the pass did not stage removed (kept when ``keep``), the staging table dropped."""
        stage = stage_table(plan.table)
        plan.stage_ready, plan.stage_fresh = False, None  # the staging table is gone after this
        if not self.table_columns(tx, stage):
            return 0, 0
        self._ensure_pass(tx, plan)
        statements = swap_statements(
            table=self.qualified(plan.table), stage=self.qualified(stage), names=plan.names,
            primary_key=plan.stream.primary_key, has_key=plan.key_type is not None, marks=plan.marks,
            keep=keep, param=self.param,
        )
        changed = self.execute(tx, statements[0], (pass_id,))
        deleted = self.execute(tx, statements[1], (pass_id,)) if not keep else 0
        self.execute(tx, statements[-1])
        return changed, deleted

    def _write_again(self, tx: Any, plan: TablePlan, batch: Batch) -> tuple[int, int]:
        """After ``batch`` failed on a record's value: an integer past 64 bits widens
        its column (every digit kept, as SQLite keeps them; docs/types.md) and the
        batch is written again; what still fails is written record by record, the
        records the table cannot hold going to the dead letters."""
        widened = [i for i, t in enumerate(plan.types) if t == self.wide_integer_type]
        wide = wide_integer_columns(plan.columns, batch, skip=widened)
        if wide:
            self._widen(tx, plan, wide)
            try:
                with self.savepoint(tx):
                    return self._write_batch(tx, plan, batch)
            except Exception as exc:
                if not self.row_error(exc):
                    raise
        return self._write_one_by_one(tx, plan, batch)

    #: the type an integer column becomes when a value past 64 bits arrives
    wide_integer_type = "NUMERIC"

    def _widen(self, tx: Any, plan: TablePlan, columns: list[int]) -> None:
        for i in columns:
            for table in (plan.table, stage_table(plan.table)):
                if self.table_columns(tx, table):
                    self.execute(
                        tx, f"ALTER TABLE {self.qualified(table)} ALTER COLUMN {quote(plan.names[i])} "
                        f"TYPE {self.wide_integer_type}",
                    )
            self._adopt_wide(plan, i)
        self.forget_load(tx, plan)

    def _adopt_wide(self, plan: TablePlan, i: int) -> None:
        plan.types[i] = self.wide_integer_type
        plan.converters[i] = self.converter_for(plan.columns[i], self.wide_integer_type)
        if plan.key_column == i:
            plan.key_column = None

    def converter_for(self, column: Column, sql_type: str) -> Callable[[list[Any]], list[Any]] | None:
        """What values of ``column`` go through when it is stored as ``sql_type``."""
        return self.converter(column)

    def forget_load(self, tx: Any, plan: TablePlan) -> None:
        """Drop whatever load table was made for ``plan``'s old column types."""

    def _write_one_by_one(self, tx: Any, plan: TablePlan, batch: Batch) -> tuple[int, int]:
        """Write ``batch``'s records one at a time, each in a savepoint of its own; a
        record the table cannot hold moves to ``batch.dead`` with the reason."""
        records: list[Any] = list(batch.items) if batch.items is not None else list(batch.rows)
        kept: list[Any] = []
        changed = 0
        for record in records:
            one = dataclasses.replace(
                batch, rows=[] if batch.items is not None else [record],
                items=[record] if batch.items is not None else None, dead=[], seen=[], sweep=None, swap=None,
                state=None,
            )
            try:
                with self.savepoint(tx):
                    changed += self._write_batch(tx, plan, one)[0]
            except Exception as exc:
                if not self.row_error(exc):
                    raise
                raw = record.model_dump(by_alias=True) if isinstance(record, BaseModel) else record
                batch.dead.append(DeadLetter(raw=raw, error=self.describe_row_error(exc, plan)))
            else:
                kept.append(record)
        if batch.items is not None:
            batch.items = kept
        else:
            batch.rows = kept
        rest = dataclasses.replace(batch, rows=[], items=None, dead=[], state=None)
        with self.savepoint(tx):
            deleted = self._write_batch(tx, plan, rest)[1]
        return changed, deleted

    def describe_row_error(self, exc: BaseException, plan: TablePlan) -> str:
        """Why a record could not be written, in one line that quotes no value."""
        name = type(exc).__name__
        if isinstance(exc, UnicodeError):
            return f"cannot be written to {self.product}: text that is not valid UTF-8 (a lone surrogate)"
        detail = str(exc).splitlines()[0][:160] if str(exc) else ""
        # server messages quote the offending value after a colon: keep what precedes it
        detail = detail.split(":", 1)[0] if ":" in detail else detail
        return f"cannot be written to {self.product}: {name}" + (f": {detail}" if detail else "")

    def _keep_dead(self, tx: Any, state_key: str, stream: str, dead: Sequence[DeadLetter], now: str) -> None:
        p = self.param
        for letter in dead:
            self.execute(
                tx,
                "INSERT INTO " + self.qualified("_tapyard_dead_letters")
                + f" (state_key, stream, raw_sha256, raw, error, created_at) VALUES ({p}, {p}, {p}, {p}, {p}, {p}) "
                "ON CONFLICT DO NOTHING",
                dead_letter_params(state_key, stream, letter.raw, letter.error, now),
            )

    def _save_state(self, tx: Any, state_key: str, name: str, state: StreamState, now: str) -> None:
        p = self.param
        text = json_text(state.to_json())
        # the row is there after a stream's first write: an UPDATE, which DuckDB runs in
        # half the time of an upsert; the upsert when it is not
        if self.execute(
            tx,
            f"UPDATE {self.qualified('_tapyard_state')} SET state = {p}, updated_at = {p} "
            f"WHERE state_key = {p} AND stream = {p}",
            (text, now, state_key, name),
        ) > 0:
            return
        self.execute(
            tx,
            "INSERT INTO " + self.qualified("_tapyard_state")
            + f" (state_key, stream, state, updated_at) VALUES ({p}, {p}, {p}, {p}) "
            "ON CONFLICT (state_key, stream) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
            (state_key, name, text, now),
        )

    def own_tables(self, tx: Any, id_type: str) -> None:
        """Create tapyard's own tables (state and dead letters) when they are missing."""
        self.execute(
            tx,
            f"CREATE TABLE IF NOT EXISTS {self.qualified('_tapyard_state')} (state_key TEXT NOT NULL, "
            "stream TEXT NOT NULL, state TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (state_key, stream))",
        )
        self.execute(
            tx,
            f"CREATE TABLE IF NOT EXISTS {self.qualified('_tapyard_dead_letters')} (id {id_type}, "
            "state_key TEXT NOT NULL, stream TEXT NOT NULL, raw_sha256 TEXT NOT NULL, raw TEXT NOT NULL, "
            "error TEXT NOT NULL, created_at TEXT NOT NULL, replayed_at TEXT, UNIQUE (state_key, stream, raw_sha256))",
        )

    # -- reading back ---------------------------------------------------------------------

    def load_state(self, state_key: str) -> dict[str, StreamState]:
        import orjson

        from tapyard.base import StateError, quoted

        with self.transaction() as tx:
            rows = self.query(
                tx, f"SELECT stream, state FROM {self.qualified('_tapyard_state')} WHERE state_key = {self.param}",
                (state_key,),
            )
        states = {}
        for stream, text in rows:
            try:
                states[stream] = StreamState.from_json(orjson.loads(text))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise StateError(
                    f"saved state of stream {quoted(stream)} in {self.url} is unreadable ({exc}); "
                    "rerun with --full-refresh to start over"
                ) from exc
        return states

    def dead_letters(
        self, state_key: str | None = None, streams: Sequence[str] | None = None, *, replayed: bool = False
    ) -> list[Any]:
        from tapyard.destinations._base import StoredDeadLetter

        sql = (
            "SELECT id, state_key, stream, raw, error, created_at, replayed_at FROM "
            + self.qualified("_tapyard_dead_letters") + " WHERE 1=1"
        )
        args: list[Any] = []
        if state_key is not None:
            sql += f" AND state_key = {self.param}"
            args.append(state_key)
        if streams:
            sql += f" AND stream IN ({', '.join(self.param for _ in streams)})"
            args.extend(streams)
        if not replayed:
            sql += " AND replayed_at IS NULL"
        with self.transaction() as tx:
            rows = self.query(tx, sql + " ORDER BY id", args)
        return [StoredDeadLetter(*row) for row in rows]

    def mark_replayed(self, ids: Sequence[int]) -> None:
        now = _now()
        with self.transaction() as tx:
            for i in ids:
                self.execute(
                    tx, f"UPDATE {self.qualified('_tapyard_dead_letters')} SET replayed_at = {self.param} "
                    f"WHERE id = {self.param}", (now, i),
                )

    def purge_dead_letters(self, ids: Sequence[int]) -> int:
        with self.transaction() as tx:
            return sum(
                max(0, self.execute(tx, f"DELETE FROM {self.qualified('_tapyard_dead_letters')} WHERE id = {self.param}", (i,)))
                for i in ids
            )

    def count(self, stream: str) -> int | None:
        try:
            with self.transaction() as tx:
                rows = self.query(tx, f"SELECT count(*) FROM {self.qualified(stream)}")
        except Exception:
            return None
        return int(rows[0][0])

