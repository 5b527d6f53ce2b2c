"""The sync engine: from a connector's pages to a destination's transactions.

Each selected stream, or each partition of a partitioned stream, is read by a
worker thread (at most ``concurrency`` at once). A worker maps and validates each page (one hook call and one
validation per page, not per record) and hands a :class:`Batch` with the
stream's new state to a bounded queue. The calling thread is the single
writer: it takes what is queued, groups what is ready into one transaction,
and commits records, dead letters and states together. Memory stays flat: at
most a few pages per worker are held at any time.

State: while a stream is being read its state carries the next page to fetch
(``resume``) and the highest cursor written (``pending``); when the stream
ends, ``pending`` becomes the committed ``cursor``. A run killed at any point
resumes from the last committed page, and upserts on the primary key make any
page read twice harmless.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import gc
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from tapyard.base import (
    AuthenticationError,
    ConfigError,
    Connector,
    PageValidator,
    PermissionDeniedError,
    PluginError,
    Policies,
    ResumeRejectedError,
    RunContext,
    Source,
    StateError,
    Stream,
    StreamNotFoundError,
    StreamState,
    TapyardError,
    merge_policies,
    missing_stream,
    quoted,
    shift_cursor,
    split_policies,
    trace_context,
    trace_span,
)
from tapyard.destinations import (
    Batch,
    Destination,
    cursor_sort_key,
    default_destination_url,
    open_destination,
)
from tapyard.engine._signals import deferred_signals
from tapyard.sources import DEFAULT_MAX_PAGES, PageGuard

if TYPE_CHECKING:
    from tapyard.base import PluginSet
    from tapyard.plugins import Plugins

__all__ = ["StreamResult", "SyncResult", "plan_units", "select_streams", "sync"]

log = logging.getLogger("tapyard.sync")

ProgressCallback = Callable[[str, "StreamResult"], None]


@dataclass
class StreamResult:
    """What one stream did in a run."""

    name: str
    #: records written (upserted, or appended to a log)
    records: int = 0
    pages: int = 0
    dead_letters: int = 0
    seconds: float = 0.0
    status: str = "pending"  # pending | running | ok | failed | cancelled
    error: str | None = None
    #: of ``records``: rows new to the destination, and rows whose stored version
    #: changed (``None`` when the destination cannot tell, as for a log); the
    #: rest were already there as read
    inserted: int | None = None
    updated: int | None = None
    #: rows a complete pass found gone from the source: marked
    #: ``_tapyard_deleted_at``, or removed (``--hard-delete``, ``--full-refresh``)
    deleted: int = 0
    #: what the run noticed and worked around (a refused resume point, ...)
    warnings: list[str] = field(default_factory=list)
    #: the cursor stayed where it was because records were dead-lettered (see ``skip_dead_letters``)
    cursor_held: bool = False
    #: the stream failed because its credential was refused (a failed OAuth refresh,
    #: a rejected key): a retry will not help until the credential is fixed
    credential_refused: bool = False

    @property
    def read(self) -> int:
        """Records read from the source: written or dead-lettered."""
        return self.records + self.dead_letters

    @property
    def unchanged(self) -> bool:
        """True when the stream ended with nothing new, changed or deleted."""
        if self.deleted or self.dead_letters:
            return False
        if self.inserted is None:  # a log cannot tell: nothing changed only if nothing was read
            return self.records == 0
        return not self.inserted and not self.updated


@dataclass
class SyncResult:
    """The outcome of :func:`sync`: per-stream counts, HTTP counters and timing."""

    connector: str
    destination: str
    streams: list[StreamResult] = field(default_factory=list)
    http: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(s.status == "ok" for s in self.streams)

    @property
    def records(self) -> int:
        return sum(s.records for s in self.streams)

    def to_json(self) -> dict[str, Any]:
        return {
            "connector": self.connector,
            "destination": self.destination,
            "ok": self.ok,
            "records": self.records,
            "seconds": round(self.seconds, 3),
            "http": dict(self.http),
            "dead_letters": sum(s.dead_letters for s in self.streams),
            "streams": [
                asdict(s) | {"seconds": round(s.seconds, 3), "read": s.read} for s in self.streams
            ],
        }


def select_streams(
    available: Sequence[Stream], names: Sequence[str] | None, needs: Mapping[str, Sequence[str]] | None = None
) -> list[Stream]:
    """The streams named in ``names`` (all when None), or a :class:`StreamNotFoundError`.

    ``needs`` (a connector's ``stream_config``) names the configuration a
    stream missing from ``available`` needs, so the error can say so.
    """
    if not names:
        return list(available)
    by_name = {s.name: s for s in available}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise StreamNotFoundError(missing_stream(missing[0], list(by_name), needs or {}))
    return [by_name[n] for n in dict.fromkeys(names)]


def state_problem(stream: Stream, model: type[BaseModel], state: StreamState) -> str | None:
    """What in a saved ``state`` does not fit ``stream`` (its cursor or pending
    cursor is not a value of the cursor field's type, a timestamp cursor is not
    a timestamp), or None. A state that does not fit would be sent to the vendor
    as it is (``updated_after=garbage``) and fail every run after, or be
    committed as the cursor."""
    if not stream.cursor_field:
        return None
    fields = model.model_fields
    info = fields.get(stream.cursor_field) or next(
        (f for f in fields.values() if stream.cursor_field in (f.alias, f.serialization_alias)), None
    )
    if info is None or info.annotation is None:
        return None
    adapter: TypeAdapter[Any] = TypeAdapter(info.annotation)
    for what, value in (("cursor", state.cursor), ("pending cursor", state.pending)):
        if value is None:
            continue
        shown = quoted(json.dumps(value, default=str), 60)
        if isinstance(value, bool | Mapping | list):
            return f"its {what} {shown} is not a value of the cursor field {stream.cursor_field!r}"
        try:
            adapter.validate_python(value)
        except ValidationError:
            return f"its {what} {shown} is not a value of the cursor field {stream.cursor_field!r}"
    return None


def _cursor_key(value: Any) -> tuple[int, Any]:
    # ISO timestamps in different offsets or precisions do not sort as
    # strings; compare them as instants and everything else as itself.
    key = cursor_sort_key(value)
    return (1, key) if isinstance(key, str) else (0, key)


def _is_timestamp(value: Any) -> bool:
    if isinstance(value, dt.date):
        return True
    return isinstance(value, str) and isinstance(cursor_sort_key(value), int)


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


def _max_cursor(current: Any, rows: Sequence[Mapping[str, Any]], field_name: str) -> Any:
    best = current
    best_key = _cursor_key(current) if current is not None else None
    for row in rows:
        if not isinstance(row, Mapping):
            continue  # not a record: it goes to the dead letters
        value = row.get(field_name)
        if value is None:
            continue
        key = _cursor_key(value)
        if best_key is None or key > best_key:
            best, best_key = value, key
    return best


class _Cancelled(Exception):
    pass


class _StreamWriteFailed(Exception):
    """The destination could not take this stream's records: stop reading it."""


class _WriterFailed(Exception):
    """The destination failed while a reader was handing it a page: stop the run."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


_DONE = object()

#: A write transaction covers pages until it holds this many rows, or until
#: this many seconds have passed since its first page was queued.
COMMIT_ROWS = 2000
COMMIT_SECONDS = 0.25
#: The same limit in seconds when the reader writes its own pages: its next
#: request waits while it writes, so a paced reader (one page every 10 ms, say)
#: writes a few pages at a time, inside the wait, instead of twenty at once,
#: which would make the request after them late.
INLINE_COMMIT_SECONDS = 0.05


class _Run:
    """The moving parts of one :func:`sync` call."""

    #: the most pages each stream (or partition) may read (see PageGuard)
    max_pages: int | None = DEFAULT_MAX_PAGES
    #: the first request a stream's connector made outside its manifest (raised when the run ends)
    denied: PermissionDeniedError | None = None
    policies: Policies = Policies()

    def __init__(
        self,
        connector: Connector,
        source: Source,
        destination: Destination,
        streams: list[Stream],
        state_key: str,
        full_refresh: bool,
        concurrency: int,
        progress: ProgressCallback | None,
        plugins: PluginSet,
        hard_delete: bool = False,
        lock_timeout: float = 0.0,
        skip_dead_letters: bool = False,
        only: frozenset[str] | None = None,
    ) -> None:
        #: the states (stream names, or partitions' state names) this run reads; None: all
        self.only = only
        self.hard_delete = hard_delete
        self.lock_timeout = lock_timeout
        #: the id of every pass this run starts (a pass resumed from an earlier run keeps its own)
        self.pass_id = time.time_ns()
        #: the locks on the streams written, held until the run ends
        self.locks = contextlib.ExitStack()
        self.counts: dict[str, int | None] = {}
        self.changed: dict[str, int | None] = {}
        self.parts: dict[str, int] = {}
        self.connector = connector
        self.source = source
        self.destination = destination
        self.streams = streams
        self.state_key = state_key
        self.full_refresh = full_refresh
        self.concurrency = max(1, concurrency)
        self.progress = progress
        #: the run's plugin set: its hooks answer for this run only
        self.plugins = plugins
        self.results = {s.name: StreamResult(name=s.name) for s in streams}
        self.skip_dead_letters = skip_dead_letters
        #: the committed cursor each state (stream or partition) started from, and
        #: the states that dead-lettered a record in this run: their cursor stays
        self.start_cursor: dict[str, Any] = {}
        self.dead_in: set[str] = set()
        #: streams whose records the destination failed to take: their readers stop
        self.write_failed: set[str] = set()
        self.validators: dict[str, PageValidator] = {}
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=2 * self.concurrency + 2)
        self.stop = threading.Event()
        #: the run's trace context, parent of each stream's span in the reader threads
        self.trace = trace_context()

    def prepare(self) -> dict[str, StreamState]:
        """Build each stream's validator and table. A stream whose schema or table
        cannot be made fails alone; the others run. Configuration that does not
        fit (a policy naming no field) stops the whole run before anything is written."""
        ready = []
        for stream in self.streams:
            try:
                model = self.plugins.hook.tapyard_stream_schema(connector=self.connector, stream=stream)
                if not (isinstance(model, type) and issubclass(model, BaseModel)):
                    raise PluginError(f"tapyard_stream_schema gave no pydantic model for {stream.name!r}")
                # Column policies (tapyard.base._policies): validated pages come out policied.
                self.validators[stream.name] = self.policies.validator(stream, model)
            except ConfigError:
                raise  # the user's configuration (a policy naming no field): the whole run
            except Exception as exc:
                self._failed(stream.name, exc)
                continue
            ready.append(stream)
        self.streams = ready
        self.policies.check_used()
        # One run per stream of a destination: taken before the table is touched
        # and the state read, in one order so that two runs never wait on each other.
        # A run of some partitions of a stream (a unit of a spread run) holds those
        # partitions instead, where the destination can lock them apart.
        lock_partition = getattr(self.destination, "lock_partition", None)
        for stream in sorted(self.streams, key=lambda s: s.name):
            parts = self._some_partitions(stream.name)
            if parts and lock_partition is not None:
                for name in parts:
                    self.locks.enter_context(lock_partition(stream.name, name, self.lock_timeout))
            else:
                self.locks.enter_context(self.destination.lock(stream.name, self.lock_timeout))
        ready = []
        for stream in self.streams:
            try:
                self.destination.prepare(stream, self.policies.columns(stream, self.validators[stream.name].model))
            except ConfigError:
                raise
            except Exception as exc:
                self._failed(stream.name, exc)
                continue
            ready.append(stream)
            self.counts[stream.name] = self.destination.count(stream.name)
            self.changed[stream.name] = 0
        self.streams = ready
        if self.full_refresh:
            return {}
        states = self.destination.load_state(self.state_key)
        ready = []
        for stream in self.streams:
            model = self.validators[stream.name].model
            problems = [
                (name, problem) for name, state in states.items()
                if (name == stream.name or name.startswith(stream.name + "|"))
                and (problem := state_problem(stream, model, state)) is not None
            ]
            if problems:
                name, problem = problems[0]
                self._failed(stream.name, StateError(
                    f"saved state of stream {quoted(name)} in {self.destination.url} does not fit the stream: "
                    f"{problem}; clear it with `tapyard state reset {quoted(self.destination.url, 400)} "
                    f"{quoted(stream.name)} --connector {quoted(self.state_key)}` (the stream is read again "
                    "from the start; its rows stay), or set a cursor with `tapyard state set`"
                ))
                continue
            ready.append(stream)
        self.streams = ready
        return states

    def _some_partitions(self, stream: str) -> list[str] | None:
        """The state names of the partitions of ``stream`` this run reads, when it reads
        some of them only (``only``); None when it reads the whole stream."""
        if self.only is None or stream in self.only:
            return None
        return sorted(n for n in self.only if n.startswith(stream + "|")) or None

    def _reads(self, stream: str, name: str) -> bool:
        return self.only is None or stream in self.only or name in self.only

    def _failed(self, stream: str, exc: BaseException) -> None:
        result = self.results[stream]
        if result.error is None:
            result.credential_refused = isinstance(exc, AuthenticationError)
        result.status, result.error = "failed", result.error or _describe(exc)

    def warn(self, stream: str, message: str) -> None:
        """Tell the user about something the run worked around: logged and kept in the result."""
        log.warning("%s", message)
        self.results[stream].warnings.append(message)

    def _put(self, item: Any) -> None:
        while True:
            if self.stop.is_set():
                raise _Cancelled
            try:
                self.queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def read_traced(self, stream: Stream, partition: Mapping[str, Any], name: str, *rest: Any) -> None:
        """:meth:`read_part` in a ``tapyard.stream`` span (see ``tapyard.base._tracing``)."""
        with trace_span("tapyard.stream", {"tapyard.stream": stream.name, "tapyard.state": name}, parent=self.trace) as span:
            self.read_part(stream, partition, name, *rest)
            span.set_attribute("tapyard.status", self.results[stream.name].status)

    def read_part(
        self,
        stream: Stream,
        partition: Mapping[str, Any],
        name: str,
        state: StreamState,
        sink: Callable[[Any], None],
    ) -> None:
        """Read one partition of one stream and hand its pages to ``sink``: the
        queue (from a worker thread) or the writer itself (when it is the only one).

        The cursor high-water mark is taken from the records as the vendor sent
        them (after mapping), so the value saved is the one the vendor's
        filter understands.
        """
        result = self.results[stream.name]
        result.status = "running"
        started = time.monotonic()
        validator = self.validators[stream.name]
        cursor_field = stream.cursor_field
        new_pass = state.pass_id is None
        if state.pass_id is None:
            # A new pass: every row it writes carries its id, so that its end can
            # tell the rows it saw from the rows it did not.
            state = dataclasses.replace(
                state, pass_id=self.pass_id, started=_utc_now(), refresh=self.full_refresh
            )
        pending = state.pending
        limit = None
        refresh = state.refresh
        tracked = refresh or stream.deletes == "listing"
        # A full refresh the destination can stage replaces the stream's rows in
        # one transaction at its end (Batch.stage, Batch.swap): readers never see
        # it half done, and a killed refresh leaves the table as it was.
        staged = refresh and self._may_stage(stream, state, new_pass)
        # a stream read in several partitions sweeps each partition's rows at the end
        # of that partition's pass, where its rows can say which partition wrote them
        scope = name if tracked and self.parts.get(stream.name, 1) > 1 and self._sweeps_partitions() else None
        hook = self.plugins.hook.tapyard_map_records
        self.start_cursor[name] = state.cursor
        try:
            while True:
                read_any = False
                guard = PageGuard(stream.name, self.max_pages)
                try:
                    for page in self.source.read(stream, state, partition):
                        read_any = True
                        if self.stop.is_set():
                            raise _Cancelled
                        if stream.name in self.write_failed:
                            raise _StreamWriteFailed
                        if page.cursor_limit is not None:
                            limit = page.cursor_limit
                        guard.check(page)
                        records = hook(connector=self.connector, stream=stream, records=page.records)
                        if records is None:
                            records = page.records
                        items, dead = validator.validate(records)
                        if cursor_field:
                            pending = _max_cursor(pending, records, cursor_field)
                        new_state = dataclasses.replace(state, resume=page.resume, pending=pending)
                        batch = Batch(stream.name, dead=dead, state=new_state, state_name=name, items=items)
                        batch.pass_id, batch.tracked, batch.replace = state.pass_id, tracked, refresh
                        batch.stage = staged
                        batch.scope = scope
                        batch.seen = list(page.seen)
                        sink(batch)
                except ResumeRejectedError as exc:
                    if read_any or state.resume is None:
                        raise
                    self.warn(stream.name, f"{exc}; reading stream {stream.name!r} again from its committed cursor")
                    state = dataclasses.replace(state, resume=None)
                    continue
                break
            if pending is not None and limit is not None and _cursor_key(limit) < _cursor_key(pending):
                pending = limit  # the source may have missed records changed after it began
            final = Batch(
                stream.name,
                state=StreamState(cursor=self._final_cursor(stream, state, pending)),
                pages=0,
                state_name=name,
            )
            final.pass_id, final.tracked, final.scope = state.pass_id, tracked, scope
            if staged:
                final.swap = state.pass_id
            elif tracked and self._may_sweep(stream):
                final.sweep, final.hard_delete = state.pass_id, self.hard_delete or refresh
            sink(final)
            sink((_DONE, stream.name, None))
        except _Cancelled:
            if result.status != "failed":
                result.status = "cancelled"
        except (_WriterFailed, KeyboardInterrupt, SystemExit):
            # an interrupt (this is the main thread when the reader runs inline)
            # stops the whole run; it is not this stream's failure
            raise
        except BaseException as exc:
            try:
                sink((_DONE, stream.name, exc))
            except _Cancelled:
                result.status = "cancelled"
        finally:
            result.seconds = max(result.seconds, time.monotonic() - started)

    def _final_cursor(self, stream: Stream, state: StreamState, pending: Any) -> Any:
        """The cursor a pass that ended commits: the highest written, never one
        that passes a record the pass may have missed.

        A listing in cursor order that was read to its end has written every
        record up to the highest cursor it saw. A listing in another order (keys)
        may have missed a record changed behind its read position while it ran,
        or while it was interrupted: that record's cursor is later than the
        moment the pass started, so the pass commits no later than that (less
        the stream's lookback, for clocks that disagree), and the next pass reads
        it. A cursor that is not a timestamp cannot be capped so: it stays.
        """
        cursor = state.cursor
        if pending is not None:
            cursor = _max_cursor(cursor, [{"c": pending}], "c")
        if stream.ordered_by_cursor or cursor is None or cursor == state.cursor:
            return cursor
        if not _is_timestamp(cursor) or state.started is None:
            return state.cursor
        ceiling = shift_cursor(state.started, -stream.cursor_lookback)
        if _cursor_key(cursor) <= _cursor_key(ceiling):
            return cursor
        if isinstance(cursor, dt.datetime):
            ceiling = dt.datetime.fromisoformat(ceiling)
        return _max_cursor(state.cursor, [{"c": ceiling}], "c")

    def _may_stage(self, stream: Stream, state: StreamState, new_pass: bool) -> bool:
        """Whether a full refresh of ``stream`` goes through the destination's staging
        table: where the destination supports it, the stream is read in one partition
        (the end of one partition's pass is then the end of the stream's), and there
        are rows to replace. A refresh of an empty table writes it directly, as a
        first sync does (nothing to keep for readers; no copy at the end). A resumed
        pass goes on as it began: staged if it staged rows before."""
        if not getattr(self.destination, "supports_replace", False) or self.parts.get(stream.name, 1) != 1:
            return False
        if new_pass:
            return bool(self.counts.get(stream.name))
        return bool(state.pass_id is not None and self.destination.staged(stream.name, state.pass_id))

    def _sweeps_partitions(self) -> bool:
        return bool(getattr(self.destination, "sweeps_partitions", False))

    def _may_sweep(self, stream: Stream) -> bool:
        """Whether the end of one partition's pass may sweep: for a stream read in one
        partition, and per partition where the destination stamps rows with their
        partition (``Destination.sweeps_partitions``)."""
        if self.parts.get(stream.name, 1) == 1 or self._sweeps_partitions():
            return True
        self.warn(
            stream.name,
            f"stream {stream.name!r} is read in {self.parts[stream.name]} partitions and {self.destination.url} "
            "cannot tell them apart: rows gone from the source are neither marked nor removed",
        )
        return False

    def _gather(self, unfinished: int) -> list[Any]:
        """Wait for the next item, then take what follows it for up to
        ``COMMIT_SECONDS`` or until ``COMMIT_ROWS`` rows: one transaction then
        covers several pages (group commit), as a hand-written loader would."""
        items = [self.queue.get()]
        rows = items[0].count if isinstance(items[0], Batch) else 0
        deadline = time.monotonic() + COMMIT_SECONDS
        done = 0 if isinstance(items[0], Batch) else 1
        while rows < COMMIT_ROWS and done < unfinished:
            wait = deadline - time.monotonic()
            if wait <= 0:
                break
            try:
                item = self.queue.get(timeout=wait)
            except queue.Empty:
                break
            items.append(item)
            if isinstance(item, Batch):
                rows += item.count
            else:
                done += 1
        return items

    def _commit(self, items: list[Any], remaining: dict[str, int]) -> int:
        """Write the batches among ``items`` in one transaction, then account for
        them; returns how many work items finished.

        A stream's last batch (its new cursor) is written after its pages, in a
        transaction of its own, so that the cursor can stay where it was when any
        of those pages dead-lettered a record, at validation or in the destination.
        """
        batches = [i for i in items if isinstance(i, Batch) and i.stream not in self.write_failed]
        pages = [b for b in batches if not _is_last(b)]
        last = [b for b in batches if _is_last(b)]
        # Ctrl-C or SIGTERM waits for the transactions and their count: what an
        # interrupted run reports as committed is exactly what was.
        with deferred_signals():
            for group in (pages, last):
                if not group:
                    continue
                if group is last:
                    for batch in last:
                        if batch.state_name not in self.dead_in:
                            continue
                        # a dead-lettered record's row was not stamped by this pass:
                        # it is not gone from the source, so no sweep (and a swap keeps
                        # the rows the pass did not stage)
                        batch.sweep = None
                        batch.keep_unseen = True
                        if not self.skip_dead_letters:
                            batch.state = StreamState(cursor=self.start_cursor.get(batch.state_name))
                            self.results[batch.stream].cursor_held = True
                self._write(group)
        finished = 0
        for item in items:
            if isinstance(item, tuple) and item and item[0] is _DONE:
                finished += 1
                result = self.results[item[1]]
                remaining[item[1]] -= 1
                if item[2] is not None:
                    self._failed(item[1], item[2])
                    if isinstance(item[2], PermissionDeniedError) and self.denied is None:
                        self.denied = item[2]  # the connector broke its manifest: the run fails as a whole
                if remaining[item[1]] == 0:
                    if result.status != "failed":
                        result.status = "ok"
                    self._count(item[1])
                    if self.progress:
                        self.progress("done", result)
        return finished

    def _marks(self, stream: str) -> bool:
        return any(s.name == stream and s.deletes == "listing" for s in self.streams)

    def _count(self, stream: str) -> None:
        """Split what a finished stream wrote into rows inserted and rows updated:
        the table's growth (plus what was removed) is what was inserted."""
        result = self.results[stream]
        before, changed = self.counts.get(stream), self.changed.get(stream)
        after = self.destination.count(stream) if before is not None and changed is not None else None
        if before is None or changed is None or after is None:
            return
        result.inserted = max(0, min(changed, after - before))
        result.updated = changed - result.inserted

    def _write(self, batches: list[Batch]) -> None:
        """Write ``batches`` in one transaction and count what they held.

        A :class:`TapyardError` from the destination (a full disk, a lost
        connection) stops the run. Any other error is retried stream by stream,
        and a stream whose batches still fail fails alone."""
        try:
            self.destination.write(self.state_key, batches)
        except TapyardError:
            raise
        except Exception:
            by_stream: dict[str, list[Batch]] = {}
            for batch in batches:
                by_stream.setdefault(batch.stream, []).append(batch)
            for name, group in by_stream.items():
                try:
                    self.destination.write(self.state_key, group)
                except TapyardError:
                    raise
                except Exception as exc:
                    self.write_failed.add(name)
                    self._failed(name, exc)
                else:
                    self._account(group)
            return
        self._account(batches)

    def _account(self, batches: list[Batch]) -> None:
        for batch in batches:
            result = self.results[batch.stream]
            result.records += batch.count
            result.dead_letters += len(batch.dead)
            result.pages += batch.pages
            changed = self.changed.get(batch.stream)
            # a full refresh's pages change the table only when its last batch swaps them in
            if changed is not None and (batch.count or batch.swap is not None):
                self.changed[batch.stream] = None if batch.changed is None else changed + batch.changed
            if batch.deleted:
                result.deleted += batch.deleted
                if batch.hard_delete or not self._marks(batch.stream):
                    self.counts[batch.stream] = (self.counts.get(batch.stream) or 0) - batch.deleted
            if any(d.holds_cursor for d in batch.dead):
                self.dead_in.add(batch.state_name)
            if self.progress:
                self.progress("page", result)

    def run(self, states: Mapping[str, StreamState]) -> None:
        every = [
            (stream, partition, state_name(stream.name, partition))
            for stream in self.streams
            for partition in self.source.partitions(stream)
        ]
        # a stream's partition count decides how its passes end (a sweep per
        # partition, no staged swap), whichever of them this run reads
        self.parts = {s.name: 0 for s in self.streams}
        for stream, _, _ in every:
            self.parts[stream.name] += 1
        work = [w for w in every if self._reads(w[0].name, w[2])]
        remaining = {s.name: 0 for s in self.streams}
        for stream, _, _ in work:
            remaining[stream.name] += 1
        for name, left in remaining.items():
            if not left and self.results[name].status == "pending":
                self.results[name].status = "ok"  # none of its partitions is this run's to read
        try:
            if self.concurrency == 1:
                self._run_inline(work, states, remaining)
            else:
                self._run_threaded(work, states, remaining)
        finally:
            self.stop.set()
            for result in self.results.values():
                if result.status in ("pending", "running"):
                    result.status = "cancelled"

    def _run_inline(self, work: list[Any], states: Mapping[str, StreamState], remaining: dict[str, int]) -> None:
        """One reader at a time, in this thread: no queue, no thread hand-off."""
        pending: list[Any] = []
        rows = 0
        since = 0.0
        clock = time.monotonic

        def sink(item: Any) -> None:
            nonlocal rows, since
            if not pending:
                since = clock()
            pending.append(item)
            if isinstance(item, Batch):
                rows += item.count
            if rows >= COMMIT_ROWS or not isinstance(item, Batch) or clock() - since >= INLINE_COMMIT_SECONDS:
                flush()

        def flush() -> None:
            nonlocal rows
            if pending:
                items = list(pending)
                pending.clear()
                rows = 0
                try:
                    self._commit(items, remaining)
                except Exception as exc:
                    raise _WriterFailed(exc) from exc

        try:
            for stream, partition, name in work:
                self.read_traced(stream, partition, name, states.get(name, StreamState()), sink)
                flush()
        except _WriterFailed as failed:
            raise failed.error from None

    def _run_threaded(
        self, work: list[Any], states: Mapping[str, StreamState], remaining: dict[str, int]
    ) -> None:
        """Up to ``concurrency`` readers in worker threads; this thread writes."""
        workers = max(1, min(self.concurrency, len(work)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tapyard-stream") as pool:
            for stream, partition, name in work:
                state = states.get(name, StreamState())
                pool.submit(self.read_traced, stream, partition, name, state, self._put)
            try:
                left = len(work)
                while left:
                    left -= self._commit(self._gather(left), remaining)
            finally:
                self.stop.set()


def _is_last(batch: Batch) -> bool:
    """Whether ``batch`` is the one a reader sends when its stream or partition ends:
    no page, no record, only the new cursor."""
    return batch.pages == 0 and batch.state is not None and batch.state.resume is None and not batch.count and not batch.dead


def state_name(stream: str, partition: Mapping[str, Any]) -> str:
    """The name a partition's state is saved under: the stream's, plus the partition as JSON."""
    if not partition:
        return stream
    return stream + "|" + json.dumps(partition, sort_keys=True, separators=(",", ":"), default=str)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TapyardError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def sync(
    connector: str | Connector,
    config: Mapping[str, Any] | BaseModel | None = None,
    *,
    to: str | Destination | None = None,
    streams: Sequence[str] | None = None,
    full_refresh: bool = False,
    credentials: BaseModel | None = None,
    state_key: str | None = None,
    concurrency: int = 4,
    http: Mapping[str, Any] | None = None,
    progress: ProgressCallback | None = None,
    rate_limit: Mapping[str, Any] | None = None,
    max_pages: int | None = DEFAULT_MAX_PAGES,
    hard_delete: bool = False,
    wait: float = 0.0,
    policies: Mapping[str, str] | str | Sequence[str] | None = None,
    policy_key: str | bytes | None = None,
    skip_dead_letters: bool = False,
    plugins: Plugins | None = None,
    limiters: Any = None,
    partitions: Collection[str] | None = None,
) -> SyncResult:
    """Sync ``connector`` into a destination and return what happened.

    :param connector: a connector name or instance.
    :param config: raw configuration (validated by the connector's model) or a model instance.
    :param to: a destination URL (``sqlite:///path.db``, ``jsonl:///path``,
        ``jsonl:-``) or an open :class:`Destination`; default: ``tapyard.db`` in
        the data directory.
    :param streams: stream names to sync (default: all).
    :param full_refresh: ignore saved state and read everything again; when the
        pass ends, rows it did not see are removed in the transaction that
        commits its state (a reader sees every row throughout, old or new
        version, never a half-empty table). Interrupted, it resumes as a full
        refresh.
    :param hard_delete: remove the rows a complete listing found gone instead of
        marking them ``_tapyard_deleted_at`` (streams with ``deletes="listing"``).
    :param wait: seconds to wait for another run writing the same stream of the
        same destination to end, before failing with "busy".
    :param state_key: the name under which stream state is saved (default: the connector name).
    :param concurrency: how many streams (or partitions) are read at once.
    :param http: overrides of :class:`tapyard.HttpPolicy` fields.
    :param rate_limit: overrides of the connector's rate-limit policy for this
        run: ``rate`` (requests per second), ``burst``, ``concurrency`` (requests
        in flight at once) and ``learn`` (False: ignore rate-limit headers); see
        :class:`tapyard.RateLimitSettings`. A ``rate_limit`` key in a mapping
        ``config`` does the same, unless the connector's config declares one.
    :param max_pages: the most pages one stream (or partition) may read; a
        read past it fails the stream (``None``: no cap). Cursors that repeat
        or cycle, and pages that repeat the one before, fail it whatever the cap.
    :param policies: column policies for personal data, ``{"email": "hash",
        "orders.phone": "drop"}`` or ``"email=hash,phone=drop"``: fields hashed,
        masked or dropped before they reach the destination (docs/policies.md).
        A ``policies`` key in a mapping ``config`` adds to them.
    :param policy_key: the key of ``hash`` policies (default: ``TAPYARD_POLICY_KEY``).
    :param skip_dead_letters: let a stream's cursor move past records that went to
        the dead letters. By default a stream (or partition) that dead-lettered a
        record in this run keeps the cursor it started from, so the next run reads
        those records again (``tapyard deadletters replay`` writes them once the
        schema takes them); ``StreamResult.cursor_held`` says when that happened.
    :param plugins: the plugin set of this run (a :class:`tapyard.Plugins`): its
        connectors, paginators, auth kinds, destinations and hooks, and its flags
        (``strict``), and nothing of any other set; default: the process default
        set (``TAPYARD_LOAD_PLUGINS``, ``TAPYARD_STRICT_PLUGINS``, and what
        ``tapyard.register_plugin`` added). Runs in other threads may use other sets.
    :param limiters: the store of this run's rate limiters (a
        ``tapyard.http.LimiterStore``): every run handed the same store shares one
        budget per credential; default: the default store.
    :param partitions: read only these states: a stream's name (all of it) or a
        partition's state name (``stream|{"k":"v"}``, as :func:`plan_units` gives),
        the others left as they are, neither read nor swept; default: all. Runs
        of different partitions of one stream may then write it at once where the
        destination locks partitions apart (``lock_partition``: PostgreSQL);
        elsewhere they take turns on the stream.

    A stream that fails (its schema, its reads, or a record its destination
    refuses in a way no dead letter can hold) does not stop the others; check
    ``result.ok``. A record that cannot be validated or written goes to the dead
    letters with its raw payload and the reason, and the rest go on. Errors
    that stop the whole run (bad config, unreachable destination, a circuit
    that opened) raise a :class:`TapyardError`.
    """
    return _sync(
        connector, config, None,
        to=to,
        streams=streams,
        full_refresh=full_refresh,
        credentials=credentials,
        state_key=state_key,
        concurrency=concurrency,
        http=http,
        progress=progress,
        rate_limit=rate_limit,
        max_pages=max_pages,
        hard_delete=hard_delete,
        wait=wait,
        policies=policies,
        policy_key=policy_key,
        skip_dead_letters=skip_dead_letters,
        plugins=plugins,
        limiters=limiters,
        partitions=partitions,
    )


def plan_units(
    connector: str | Connector,
    config: Mapping[str, Any] | None = None,
    *,
    by: str = "partitions",
    to: str | None = None,
    streams: Sequence[str] | None = None,
    credentials: BaseModel | None = None,
    state_key: str | None = None,
    full_refresh: bool = False,
    wait: float = 0.0,
    plugins: Plugins | None = None,
) -> list[dict[str, list[str]]]:
    """The units a run of ``connector`` into ``to`` splits into, for runs of them in
    other processes (``sync(streams=unit["streams"], partitions=unit.get("partitions"))``):
    one per selected stream (``by="streams"``), or one per partition of each stream
    (``by="partitions"``; a stream of one partition is one unit). The destination's
    tables are made or evolved here, once, so that the units' runs find them ready
    and do not race to change them; nothing is read from the source but its stream
    and partition lists."""
    if by not in ("streams", "partitions"):
        raise ConfigError(f"units are streams or partitions, not {str(by)[:40]!r}")
    units: list[dict[str, list[str]]] = []
    _sync(
        connector, config, (by, units), to=to, streams=streams, full_refresh=full_refresh, credentials=credentials,
        state_key=state_key, concurrency=1, http=None, progress=None, rate_limit=None, max_pages=DEFAULT_MAX_PAGES,
        hard_delete=False, wait=wait, policies=None, policy_key=None, skip_dead_letters=False, plugins=plugins,
        limiters=None, partitions=None,
    )
    return units


def _units(run: _Run, by: str) -> list[dict[str, list[str]]]:
    """``plan_units``'s answer for a prepared ``run``: a stream that could not be
    prepared is a unit of its own (its run reports why it fails)."""
    ready = {s.name: s for s in run.streams}
    out: list[dict[str, list[str]]] = []
    for name in run.results:
        stream = ready.get(name)
        names = [] if stream is None or by != "partitions" else [
            state_name(name, p) for p in run.source.partitions(stream)
        ]
        if len(names) > 1:
            out.extend({"streams": [name], "partitions": [n]} for n in names)
        else:
            out.append({"streams": [name]})
    return out


def _sync(
    connector: str | Connector,
    config: Mapping[str, Any] | BaseModel | None,
    plan: tuple[str, list[dict[str, list[str]]]] | None,
    *,
    to: str | Destination | None,
    streams: Sequence[str] | None,
    full_refresh: bool,
    credentials: BaseModel | None,
    state_key: str | None,
    concurrency: int,
    http: Mapping[str, Any] | None,
    progress: ProgressCallback | None,
    rate_limit: Mapping[str, Any] | None,
    max_pages: int | None,
    hard_delete: bool,
    wait: float,
    policies: Mapping[str, str] | str | Sequence[str] | None,
    policy_key: str | bytes | None,
    skip_dead_letters: bool,
    plugins: Plugins | None,
    limiters: Any,
    partitions: Collection[str] | None,
) -> SyncResult:
    """:func:`sync`, or with ``plan`` (how to split, and the list to fill) :func:`plan_units`."""
    from tapyard.plugins import default_plugins

    started = time.monotonic()
    run_plugins = plugins if plugins is not None else default_plugins()
    conn = run_plugins.get_connector(connector) if isinstance(connector, str) else connector
    from tapyard.http import split_rate_limit

    raw_limits: Mapping[str, Any] | None = None
    if not isinstance(config, BaseModel):
        config, raw_limits = split_rate_limit(conn, config or {})
        config, raw_policies = split_policies(conn, config)
        policies = merge_policies(raw_policies, policies)
    policy_set = Policies.from_spec(policies, policy_key)
    cfg = config if isinstance(config, BaseModel) else conn.parse_config(config)
    for name in streams or ():
        # before anything is opened: a stream that needs configuration the run lacks
        if any(not getattr(cfg, f, None) for f in conn.stream_config.get(name, ())):
            raise StreamNotFoundError(missing_stream(name, [], conn.stream_config))
    # before the destination is opened: a run its manifest forbids leaves no trace
    hosts = run_plugins.run_permissions(conn, cfg, credentials)
    owns_destination = not isinstance(to, Destination)
    destination = (
        to if isinstance(to, Destination) else open_destination(to or default_destination_url(), run_plugins)
    )
    result = SyncResult(connector=conn.name, destination=destination.url)
    try:
        limits = {**(raw_limits or {}), **(rate_limit or {})}
        context = RunContext(
            plugins=run_plugins,
            credentials=credentials,
            http=dict(http or {}),
            rate_limit=limits,
            hosts=hosts,
            limiters=limiters,
        )
        run_span = trace_span(
            "tapyard.run",
            {
                "tapyard.connector": conn.name,
                # the kind only: a URL may carry a password
                "tapyard.destination": destination.url.split(":", 1)[0],
                "tapyard.full_refresh": full_refresh,
            },
        )
        with run_span as traced, conn.open(cfg, context) as source, _collector_tuned():
            selected = select_streams(source.streams(), streams, conn.stream_config)
            run = _Run(
                conn,
                source,
                destination,
                selected,
                state_key or conn.name,
                full_refresh,
                concurrency,
                progress,
                run_plugins,
                hard_delete=hard_delete,
                lock_timeout=wait,
                skip_dead_letters=skip_dead_letters,
                only=None if partitions is None else frozenset(partitions),
            )
            run.max_pages = max_pages
            run.policies = policy_set.known_streams(s.name for s in source.streams())
            with run.locks:
                states = run.prepare()
                result.streams = list(run.results.values())
                if plan is not None:
                    plan[1].extend(_units(run, plan[0]))
                    return result
                try:
                    run.run(states)
                finally:
                    result.http = dict(source.http_stats)
                    traced.set_attribute("tapyard.records", result.records)
                    traced.set_attribute("tapyard.ok", result.ok)
                if run.denied is not None:
                    raise run.denied
    finally:
        if owns_destination:
            destination.close()
    result.seconds = time.monotonic() - started
    return result


_collector_lock = threading.Lock()
_collector_runs = 0
_collector_saved: tuple[int, int, int] | None = None
#: the gen-0 threshold during a sync: above the containers of a commit's batch
_YOUNG_THRESHOLD = 100_000


@contextlib.contextmanager
def _collector_tuned() -> Iterator[None]:
    """Collect garbage less often while records stream through.

    A sync allocates millions of short-lived containers (parsed JSON,
    validated models). With CPython's default gen-0 threshold of 700 the
    collector then runs every few pages, and each time walks the records of
    the batch waiting for its commit (some 20,000 containers at 2,000 records):
    raised to ``_YOUNG_THRESHOLD`` for the duration of the sync, it runs about
    once a commit, and its share of a sync's CPU falls from a tenth to under a
    hundredth (docs/performance.md). Memory stays flat: what the raise delays
    is only the freeing of reference cycles, which records do not make.

    The threshold is the interpreter's, not the run's: runs that overlap in one
    process (threads of a worker) share one raise, made by the first to start
    and undone by the last to end, so that no run restores it under another.
    Nothing is frozen (``gc.freeze`` would move every object of the host
    process, whatever it is, out of the collector's reach; it bought nothing
    measurable on top of the threshold).
    """
    global _collector_runs, _collector_saved
    with _collector_lock:
        if _collector_runs == 0:
            _collector_saved = threshold = gc.get_threshold()
            gc.set_threshold(max(threshold[0], _YOUNG_THRESHOLD), threshold[1], threshold[2])
        _collector_runs += 1
    try:
        yield
    finally:
        with _collector_lock:
            _collector_runs -= 1
            if _collector_runs == 0 and _collector_saved is not None:
                gc.set_threshold(*_collector_saved)
                _collector_saved = None
