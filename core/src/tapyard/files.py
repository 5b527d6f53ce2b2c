"""The records inside data files: CSV, JSON Lines and Parquet, one record per row.

Each record carries where it came from (``source_key``: the object's key,
``source_line``: its row number, from 1; ``source_last_modified``: the object's
modification time, the stream's cursor) and the row itself, either whole in a
``data`` JSON column or, when the configuration gives a JSON Schema of one row,
as typed columns.

A row that cannot be read (a CSV line with the wrong number of fields, a JSON
line that is not an object) becomes a record that fails validation on purpose,
so the sync engine puts it in the dead-letter table with the raw text and the
reason, and goes on. So does a whole object that cannot be read (an
unparseable Parquet file, text that is not UTF-8): one dead letter for the
object, at line 0.

Object-store connectors (aws, azure, gcp) share it through the core. Parquet
needs pyarrow, which the core does not depend on: connectors offer it as an
extra (``pip install 'tapyard-aws[parquet]'``).
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

__all__ = ["FORMATS", "FileFormat", "format_of", "read_records", "record_model"]

FileFormat = Literal["csv", "jsonl", "parquet"]
FORMATS: tuple[FileFormat, ...] = ("csv", "jsonl", "parquet")

_SUFFIXES: dict[str, FileFormat] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}

#: The key a reader puts in a record it could not read: validation refuses it.
ERROR_KEY = "__tapyard_error__"


def format_of(key: str, allowed: Sequence[str] = FORMATS) -> FileFormat | None:
    """The file format of an object, from its name's suffix, if it is one of ``allowed``."""
    lowered = key.lower()
    for suffix, fmt in _SUFFIXES.items():
        if lowered.endswith(suffix) and fmt in allowed:
            return fmt
    return None


class RecordBase(BaseModel):
    """Where a row came from. Rows that could not be read fail validation here."""

    model_config = ConfigDict(extra="ignore")

    source_key: str = Field(description="The key (name) of the object the row is in.")
    source_line: int = Field(description="The row's number in the object, from 1 (0: the whole object).")
    source_last_modified: dt.datetime = Field(description="When the object was last changed.")

    @model_validator(mode="before")
    @classmethod
    def _unreadable(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get(ERROR_KEY):
            raise ValueError(str(data[ERROR_KEY]))
        return data


class WholeRecord(RecordBase):
    """A row kept whole, as a JSON object."""

    data: dict[str, Any] = Field(description="The row: column names to values.")


def record_model(name: str, row_schema: Mapping[str, Any] | None) -> type[BaseModel]:
    """The record model: the row whole in ``data``, or typed columns from ``row_schema``
    (a JSON Schema of one row; see ``tapyard.model_from_json_schema``)."""
    if not row_schema:
        return WholeRecord
    from tapyard import ConfigError, TapyardError, model_from_json_schema

    try:
        row = model_from_json_schema(name, row_schema)
    except TapyardError as exc:
        raise ConfigError(f"record_schema: {exc}") from exc
    clash = set(row.model_fields) & set(RecordBase.model_fields)
    if clash:
        raise ConfigError(f"record_schema may not define {', '.join(sorted(clash))}: tapyard adds them")
    fields: dict[str, Any] = {n: (f.annotation, f) for n, f in row.model_fields.items()}
    return create_model(name, __base__=RecordBase, **fields)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return value


def read_records(
    body: IO[bytes],
    *,
    key: str,
    fmt: FileFormat,
    last_modified: str,
    flatten: bool,
    page_size: int = 1000,
) -> Iterator[list[dict[str, Any]]]:
    """Pages of records from the object ``key`` (a seekable binary file ``body``).

    ``flatten``: put the row's columns beside the source columns (a row schema
    was given) rather than in ``data``.
    """

    def record(line: int, row: Mapping[str, Any] | None = None, error: str | None = None, raw: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"source_key": key, "source_line": line, "source_last_modified": last_modified}
        if error is not None:
            out[ERROR_KEY] = error
            if raw is not None:
                out["raw"] = raw
            return out
        assert row is not None
        if flatten:
            out.update({k: v for k, v in row.items() if k not in out})
        else:
            out["data"] = dict(row)
        return out

    rows = {"csv": _csv_rows, "jsonl": _jsonl_rows, "parquet": _parquet_rows}[fmt](body, key)
    page: list[dict[str, Any]] = []
    for line, row, error, raw in rows:
        page.append(record(line, row, error, raw))
        if len(page) >= page_size:
            yield page
            page = []
    if page:
        yield page


_Row = tuple[int, Mapping[str, Any] | None, str | None, str | None]


def _text(body: IO[bytes], key: str) -> Iterator[_Row] | io.TextIOWrapper:
    # Check the whole object decodes before reading rows: a binary file named
    # .csv is one dead letter, not a row per garbage line.
    decoder = io.TextIOWrapper(body, encoding="utf-8", newline="")
    try:
        for _ in iter(lambda: decoder.read(1 << 16), ""):
            pass
    except UnicodeDecodeError as exc:
        decoder.detach()
        return iter([(0, None, f"{key!r} is not UTF-8 text (byte {exc.start} of a chunk)", None)])
    decoder.seek(0)
    return decoder


def _csv_rows(body: IO[bytes], key: str) -> Iterator[_Row]:
    text = _text(body, key)
    if not isinstance(text, io.TextIOWrapper):
        yield from text
        return
    reader = csv.reader(text, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        yield 0, None, f"{key!r}: unreadable CSV header: {exc}", None
        return
    if not header:
        return
    if len(set(header)) != len(header) or any(not h for h in header):
        yield 0, None, f"{key!r}: the CSV header has empty or repeated column names", ",".join(header)
        return
    number = 0
    while True:
        number += 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield number, None, f"{key!r} row {number}: unreadable CSV: {exc}", None
            continue
        if not values:
            number -= 1
            continue
        if len(values) != len(header):
            yield (
                number,
                None,
                f"{key!r} row {number}: {len(values)} fields where the header has {len(header)}",
                ",".join(values),
            )
            continue
        yield number, dict(zip(header, values, strict=True)), None, None


def _jsonl_rows(body: IO[bytes], key: str) -> Iterator[_Row]:
    text = _text(body, key)
    if not isinstance(text, io.TextIOWrapper):
        yield from text
        return
    number = 0
    for raw in text:
        line = raw.strip()
        if not line:
            continue
        number += 1
        try:
            value = json.loads(line)
        except ValueError as exc:
            yield number, None, f"{key!r} line {number}: not JSON: {exc.args[0] if exc.args else exc}", line[:1000]
            continue
        if not isinstance(value, dict):
            yield number, None, f"{key!r} line {number}: a JSON {type(value).__name__}, not an object", line[:1000]
            continue
        yield number, value, None, None


def _parquet_rows(body: IO[bytes], key: str) -> Iterator[_Row]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        from tapyard import ConfigError

        raise ConfigError(
            f"{key!r} is a Parquet object: install pyarrow (the connector's parquet extra, "
            f"e.g. pip install 'tapyard-aws[parquet]')"
        ) from None
    import pyarrow as pa

    try:
        parquet = pq.ParquetFile(body)
        batches = parquet.iter_batches(batch_size=1000)
        number = 0
        for batch in batches:
            for row in batch.to_pylist():
                number += 1
                yield number, _jsonable(row), None, None
    except (pa.ArrowException, OSError, ValueError) as exc:
        yield 0, None, f"{key!r}: unreadable Parquet: {type(exc).__name__}: {exc}", None
