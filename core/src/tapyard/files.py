"""The records inside data files: CSV, JSON Lines and Parquet, one record per row.

Each record carries where it came from (``source_key``: the object's key,
``source_line``: its row number, from 1; ``source_last_modified``: the object's
modification time, the stream's cursor) and the row itself, either whole in a
``data`` JSON column or, when the configuration gives a JSON Schema of one row,
as typed columns.

Values keep their exact form: JSON Lines numbers are parsed as integers of any
size or as :class:`decimal.Decimal` (never through float), Parquet decimals stay
decimals, and NaN and the infinities become the strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"`` (docs/types.md).

A row that cannot be read (a CSV line with the wrong number of fields, a JSON
line that is not an object) becomes a record that fails validation on purpose,
so the sync engine puts it in the dead-letter table with the raw text and the
reason, and goes on. So does a whole object that cannot be read (an
unparseable Parquet file, text that is not UTF-8): one dead letter for the
object, at line 0.

Object-store connectors (aws, azure, gcp) share it through the core. Parquet
needs pyarrow, which the core does not depend on: connectors offer it as an
extra (``pip install 'tapyard-aws[parquet]'``).

They share the listing too (:func:`listing_pass`): an object store lists by
key, not by modification time, so the stream's cursor (the modification time)
may commit only when a whole pass over the listing has ended, and no higher
than the store's clock when that pass began (see :func:`listing_pass`).
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import email.utils
import io
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator
from pydantic_core import PydanticCustomError

from tapyard.base import UNREADABLE, value_text

if TYPE_CHECKING:
    from tapyard.base import PageRequest, Paginator

__all__ = [
    "FORMATS",
    "FileFormat",
    "ListingPage",
    "ListingPass",
    "ServerClock",
    "StoredObject",
    "format_of",
    "listing_pass",
    "object_pages",
    "object_record_pages",
    "parse_cursor",
    "read_records",
    "record_model",
    "refused_resume",
    "spooled",
    "token_pages",
    "token_requests",
]

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
            # unreadable, not invalid: its dead letter does not hold the cursor
            raise PydanticCustomError(UNREADABLE, "{reason}", {"reason": str(data[ERROR_KEY])})
        return data


class WholeRecord(RecordBase):
    """A row kept whole, as a JSON object."""

    data: dict[str, Any] = Field(description="The row: column names to values.")


def record_model(name: str, row_schema: Mapping[str, Any] | None) -> type[BaseModel]:
    """The record model: the row whole in ``data``, or typed columns from ``row_schema``
    (a JSON Schema of one row; see ``tapyard.model_from_json_schema``)."""
    if not row_schema:
        return WholeRecord
    from tapyard.base import ConfigError, TapyardError, model_from_json_schema

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
        return value  # exact: destinations keep its digits (docs/types.md)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, float) and not math.isfinite(value):
        return value_text(value)  # "NaN", "Infinity", "-Infinity": JSON has no such numbers
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
            # numbers exact: integers of any size, decimals with their digits;
            # NaN and the infinities (not JSON, but written) as their names
            value = json.loads(line, parse_float=decimal.Decimal, parse_constant=str)
        except RecursionError:
            yield number, None, f"{key!r} line {number}: JSON nested too deeply", line[:1000]
            continue
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
        from tapyard.base import ConfigError

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


# -- object-store listings ----------------------------------------------------------------

_log = logging.getLogger("tapyard.files")

#: Subtracted from the store's time when a pass began: the clocks of a
#: vendor's many machines (the one answering the listing, the ones stamping
#: objects) differ by a little.
CLOCK_MARGIN_S = 1.0


def parse_cursor(value: Any) -> dt.datetime | None:
    """A saved cursor (an ISO timestamp) as an aware datetime (UTC when it has no offset)."""
    from tapyard.base import StateError

    if value in (None, ""):
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise StateError(f"saved cursor {str(value)[:80]!r} is not a timestamp") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


class ServerClock:
    """The store's own time, read from the ``Date`` header of its answers.

    Objects are stamped by the store's clock, not this machine's, so the time a
    pass began is taken from the store: feed every response's headers to
    :meth:`observe` (the connectors do it in their response hooks).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: tuple[float, float] | None = None  # (the store's epoch seconds, local monotonic on arrival)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Note the ``Date`` of a response that has just arrived (ignored when absent or unreadable)."""
        value = next((v for k, v in headers.items() if k.lower() == "date"), None)
        if not value:
            return
        try:
            stamped = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return
        if stamped.tzinfo is None:
            stamped = stamped.replace(tzinfo=dt.UTC)
        arrived = time.monotonic()
        with self._lock:
            self._seen = (stamped.timestamp(), arrived)

    def before(self, sent: float) -> dt.datetime:
        """A time no later than the store's clock at ``sent`` (a local ``time.monotonic()``),
        less :data:`CLOCK_MARGIN_S`.

        ``Date`` is stamped before the answer arrives and truncated to the
        second, so ``Date - (arrival - sent)`` is never after the moment the
        request was sent, in the store's time. Without a ``Date`` from an answer
        that arrived after ``sent``, this machine's clock stands in.
        """
        with self._lock:
            seen = self._seen
        if seen is not None and seen[1] >= sent:
            stamp = seen[0] - (seen[1] - sent)
        else:
            stamp = time.time() - (time.monotonic() - sent)
        return dt.datetime.fromtimestamp(stamp - CLOCK_MARGIN_S, dt.UTC).replace(microsecond=0)


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object of a listing: its key, its modification time (aware) and the SDK's own item."""

    key: str
    last_modified: dt.datetime
    item: Any = None


@dataclass(frozen=True, slots=True)
class ListingPage:
    """One page of a listing, in key order, and the store's token for the next (None: the last)."""

    objects: Sequence[StoredObject]
    token: str | None = None


#: ``list_page(size=, token=, after=)``: one listing request. ``token`` is the
#: store's own (from the previous page of this run, or a saved one); without
#: it, a store that can seek lists the keys after ``after`` (S3 ``StartAfter``,
#: GCS ``startOffset``, which may include ``after`` itself), one that cannot
#: lists from the first key.
ListPage = Callable[..., ListingPage]


@dataclass(frozen=True, slots=True)
class ListingPass:
    """One listing page's share of a pass.

    ``objects``: the objects changed at or after the committed cursor (the
    boundary is included: stores stamp whole seconds, and upserts absorb what
    is read twice), each with the request that reads the listing again from
    that object on (``rewind``: the resume point while the object is being read).
    ``resume``: the request after this page (None at the end of the pass).
    ``cursor_limit``: the highest cursor the pass may commit (``Page.cursor_limit``).
    ``done``: for the first page of a resumed pass, how far into one object the
    interrupted run had read: ``(key, stamp, rows)``, valid while the object
    still has that modification time.
    ``unchanged``: the objects of the page older than the cursor, not given
    again (a stream that detects deletes names them as seen).
    """

    objects: list[StoredObject]
    rewind: list[Any]
    resume: Any
    cursor_limit: str
    done: tuple[str, str, int] | None = None
    unchanged: list[StoredObject] = field(default_factory=list)


def refused_resume(name: str, error: Exception) -> bool:
    """Whether ``error``, met at the first request of a read resumed from a saved
    token, means the vendor refused that token (expired, from a restarted or
    another service): then a warning is logged and the caller starts the listing
    again. Refused credentials and missing buckets are not that."""
    status = getattr(error, "status_code", None)
    if status in (401, 403, 404):
        return False
    _log.warning(
        "stream %r: the service refused the saved listing position (%s); listing again from the start",
        name, str(error)[:200],
    )
    return True


#: ``fetch()``: the next page of an SDK listing as ``(items, token after it)``, None past the last.
PageFetch = Callable[[], "tuple[list[Any], str | None] | None"]


def token_pages(name: str, saved: str | None, start: Callable[[str | None], PageFetch]) -> Iterator[tuple[list[Any], str | None]]:
    """The pages of an SDK listing that pages by token, from a ``saved`` one (None: the first
    page), each with the token after it. ``start(token)`` opens the listing there.

    A saved token refused at the first request (:func:`refused_resume`) starts
    the listing again from the first page, with a warning.
    """
    from tapyard.base import HTTPStatusError

    fetch, resumed = start(saved), saved is not None
    while True:
        try:
            got = fetch()
        except HTTPStatusError as exc:
            if not (resumed and refused_resume(name, exc)):
                raise
            fetch, resumed = start(None), False
            continue
        resumed = False
        if got is None:
            return
        yield got


def token_requests(
    name: str, request: PageRequest, paginator: Paginator, param: str, start: Callable[[str | None], PageFetch]
) -> Iterator[tuple[list[Any], PageRequest | None]]:
    """:func:`token_pages` from the token saved in ``request.params[param]``, each page
    with the request that asks for the one after it (None after the last)."""
    saved = request.params.get(param) or None
    for items, token in token_pages(name, saved, start):
        # an SDK listing has no HTTP response; a token paginator reads only the body
        following = paginator.next(request, None, {param: token}, items)  # type: ignore[arg-type]
        yield items, following
        if following is None:
            return
        request = following


def listing_pass(
    name: str,
    state: Any,
    list_page: ListPage,
    *,
    size: int,
    clock: ServerClock,
    seeks: bool,
) -> Iterator[ListingPass]:
    """A pass over an object store's listing, resumed where ``state`` says, one item per page.

    The rules, which make the committed cursor safe whatever the store did
    between an interruption and the resume:

    - Only objects modified at or after the committed ``state.cursor`` are
      given (``>=``: the boundary is read again).
    - The position saved after each page is the last key listed (and the
      store's token for the next page, for stores that cannot seek by key).
      A resume from a store that can seek never depends on a token it may
      have forgotten; a saved token the store refuses (expired, from a
      restarted service) is logged as a warning and the listing starts again
      from the first key, skipping the keys already passed. It is never a
      permanent failure.
    - The listing is in key order, so an object changed while the pass was
      paused or under way can sit before the position and be missed by this
      pass. Every such object was changed after the pass began, so the pass
      commits no cursor later than the store's clock when it began
      (``cursor_limit``, kept across resumes in the saved position): the next
      pass reads it.
    """
    from tapyard.base import HTTPStatusError, PageRequest

    cursor = parse_cursor(state.cursor)
    saved = state.resume.params if state.resume is not None and state.resume.url == name else None
    token: str | None = None
    after: str | None = None
    since: dt.datetime | None = None
    if saved is not None and "since" in saved:
        since = parse_cursor(saved["since"])
        after = saved.get("after") or None
        token = None if seeks else (saved.get("token") or None)
    resumed_token = token is not None
    skip_to = after  # keys up to here were read before the interruption
    done: tuple[str, str, int] | None = None
    if saved is not None and saved.get("key") and isinstance(saved.get("rows"), int):
        done = (str(saved["key"]), str(saved.get("stamp")), int(saved["rows"]))
    while True:
        sent = time.monotonic()
        try:
            page = list_page(size=size, token=token, after=after if token is None else None)
        except HTTPStatusError as exc:
            if not (resumed_token and refused_resume(name, exc)):
                raise
            token, resumed_token, skip_to = None, False, after
            continue
        resumed_token = False
        if since is None:
            since = clock.before(sent)
        limit = since.isoformat()
        objects: list[StoredObject] = []
        unchanged: list[StoredObject] = []
        rewind: list[Any] = []
        previous = after
        here = {"token": token, "since": limit}
        for obj in page.objects:
            # A seek (startOffset includes its key), a listing from the first key or
            # a saved page's token may give keys already passed.
            if skip_to is not None and obj.key <= skip_to:
                continue
            if cursor is None or obj.last_modified >= cursor:
                objects.append(obj)
                rewind.append(PageRequest(url=name, params={**here, "after": previous}))
            else:
                unchanged.append(obj)
            previous = obj.key
        following = (
            PageRequest(url=name, params={"token": page.token, "after": previous, "since": limit})
            if page.token else None
        )
        yield ListingPass(objects, rewind, following, limit, done, unchanged)
        done = None
        if page.token is None:
            return
        token, after, skip_to = page.token, previous, None


def object_pages(
    parts: Iterator[ListingPass], record: Callable[[StoredObject], dict[str, Any]], seen: Sequence[str] = ()
) -> Iterator[Any]:
    """The pages of an object stream (one record per object, made by ``record``) from a pass.

    ``seen``: the primary key's fields, for a stream that detects deletes by
    its listing (``deletes="listing"``): each page then names the objects it
    listed but did not send again (unchanged), so that the end of the pass
    takes for deleted only the rows of objects no longer listed.
    """
    from tapyard.base import Page

    for part in parts:
        keys = [{f: row[f] for f in seen} for row in map(record, part.unchanged)] if seen else []
        yield Page([record(o) for o in part.objects], resume=part.resume, cursor_limit=part.cursor_limit, seen=keys)


def spooled(fill: Callable[[IO[bytes]], None], max_size: int = 16 << 20) -> IO[bytes]:
    """A seekable copy of an object, written by ``fill``: in memory up to ``max_size``,
    then in a temporary file. The caller closes it."""
    import tempfile

    spool = tempfile.SpooledTemporaryFile(max_size=max_size)  # noqa: SIM115 - returned open
    try:
        fill(spool)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


def object_record_pages(
    parts: Iterator[ListingPass],
    download: Callable[[StoredObject], IO[bytes]],
    *,
    formats: Sequence[str],
    flatten: bool,
    page_size: int,
) -> Iterator[Any]:
    """The pages of a records stream: the rows of the objects a pass gives (:func:`read_records`).

    The resume point saved with each page lists again from the object being
    read and names how many of its rows are written, with the object's
    modification time: a resume skips those rows if the object is unchanged,
    and reads it whole otherwise (upserts on (source_key, source_line) absorb
    what is read twice). The rows of small objects share pages (about
    ``page_size`` rows each), so a bucket of many small objects is not as many
    pages; the last page of each listing page saves the position after it.
    """
    from tapyard.base import Page, PageRequest

    for part in parts:
        held: list[dict[str, Any]] = []
        for obj, rewind in zip(part.objects, part.rewind, strict=True):
            fmt = format_of(obj.key, formats)
            if fmt is None:
                continue
            stamp = obj.last_modified.isoformat()
            skip = part.done[2] if part.done is not None and part.done[:2] == (obj.key, stamp) else 0
            rows = 0
            with download(obj) as body:
                for records in read_records(
                    body, key=obj.key, fmt=fmt, last_modified=stamp, flatten=flatten, page_size=page_size,
                ):
                    rows += len(records)
                    if rows <= skip:
                        continue
                    if rows - len(records) < skip:
                        records = records[skip - (rows - len(records)):]
                    held.extend(records)
                    if len(held) >= page_size:
                        here = PageRequest(url=rewind.url, params={**rewind.params, "key": obj.key, "stamp": stamp, "rows": rows})
                        yield Page(held, resume=here, cursor_limit=part.cursor_limit)
                        held = []
        yield Page(held, resume=part.resume, cursor_limit=part.cursor_limit)
