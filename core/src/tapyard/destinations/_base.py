"""Destinations: where synced records land.

A destination is opened from a URL (``--to``) by the factory registered for
its scheme. The sync engine calls :meth:`Destination.prepare` once per stream,
then :meth:`Destination.write` with batches; each ``write`` is one
transaction holding the records, the dead letters and the new stream state,
so a crash at any point leaves the records and the state in agreement.
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from tapyard.base import (
    Column,
    DeadLetter,
    DestinationError,
    Stream,
    StreamState,
    nanoseconds_of,
    quoted,
)

if TYPE_CHECKING:
    from tapyard.base import PluginSet

__all__ = [
    "Batch",
    "Destination",
    "FileLock",
    "StoredDeadLetter",
    "cursor_sort_key",
    "default_destination_url",
    "open_destination",
    "refuse_odd_target",
    "url_path",
]


@dataclass(slots=True)
class Batch:
    """What one page (or several pages of one stream) adds: records, dead letters, and the
    stream state that covers them.

    Records come either as validated model instances (``items``, what the
    sync engine hands over) or as plain dicts (``rows``); :meth:`records`
    gives dicts either way.
    """

    stream: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    state: StreamState | None = None
    pages: int = 1
    #: the name the state is saved under: the stream's, or the stream's plus a partition
    state_name: str = ""
    items: list[BaseModel] | None = None
    #: the pass these records belong to: stamped on their rows (``_tapyard_pass``)
    pass_id: int | None = None
    #: primary keys (as dicts) of records present at the source but not sent again
    #: (unchanged): a complete listing stamps them with ``pass_id`` too
    seen: list[dict[str, Any]] = field(default_factory=list)
    #: the pass may sweep: stamp every row it sees, changed or not
    tracked: bool = False
    #: when set, the pass ``sweep`` is complete: rows of the stream it did not stamp
    #: are marked deleted (``_tapyard_deleted_at``), or removed when ``hard_delete``
    sweep: int | None = None
    hard_delete: bool = False
    #: the partition of a stream read in several (its ``state_name``): a tracked
    #: pass stamps its rows with it too, and its sweep reaches only rows so stamped
    scope: str | None = None
    #: write the records whatever version the destination holds (a full refresh):
    #: otherwise a row is never replaced by one whose cursor is older
    replace: bool = False
    #: a full refresh's records: written to the stream's staging table, not its table
    #: (a destination with ``supports_replace``; see :class:`~tapyard.destinations._tables.TableDestination`)
    stage: bool = False
    #: when set, the rows the pass ``swap`` staged replace the table's rows in this
    #: batch's transaction: a reader sees the old rows or the new, never a mix
    swap: int | None = None
    #: with ``swap``: keep the table's rows the pass did not stage (it dead-lettered records)
    keep_unseen: bool = False
    #: filled by the destination's ``write``: rows inserted or changed (``None``
    #: when it cannot tell, as for a log) and rows marked or removed by the sweep
    changed: int | None = None
    deleted: int = 0

    def __post_init__(self) -> None:
        if not self.state_name:
            self.state_name = self.stream

    @property
    def count(self) -> int:
        """How many records the batch holds."""
        return len(self.items) if self.items is not None else len(self.rows)

    def records(self) -> list[dict[str, Any]]:
        """The records as JSON-ready dicts (datetimes as ISO strings)."""
        if self.items is not None and not self.rows:
            self.rows = [item.model_dump(mode="json") for item in self.items]
        return self.rows


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """A dead letter as a destination keeps it: ``raw`` is the record's JSON text."""

    id: int
    state_key: str
    stream: str
    raw: str
    error: str
    created_at: str
    replayed_at: str | None = None


class Destination(abc.ABC):
    """The contract between the sync engine and a place to put records."""

    #: a printable form of the URL with any password removed
    url: str = ""

    @abc.abstractmethod
    def prepare(self, stream: Stream, columns: Sequence[Column]) -> None:
        """Create (or evolve) whatever holds ``stream``'s records."""

    @abc.abstractmethod
    def load_state(self, state_key: str) -> dict[str, StreamState]:
        """The committed state of every stream (and partition) written under ``state_key``,
        by the ``state_name`` of the batches that carried it."""

    @abc.abstractmethod
    def write(self, state_key: str, batches: Sequence[Batch]) -> None:
        """Write ``batches`` atomically: all of them with their states, or nothing."""

    def count(self, stream: str) -> int | None:
        """How many records the destination holds for ``stream``, if it can tell."""
        return None

    def lock(self, stream: str, timeout: float) -> contextlib.AbstractContextManager[None]:
        """Hold ``stream`` for one run: a second run writing the same stream of the
        same destination waits up to ``timeout`` seconds, then fails with a
        :class:`DestinationError` saying the destination is busy. The default
        holds nothing (a destination that cannot be shared, such as stdout)."""
        return contextlib.nullcontext()

    #: whether the destination can mark or remove rows a complete pass did not see
    supports_sweep: bool = False
    #: whether it can do so per partition of a stream read in several (``Batch.scope``):
    #: without it, such a stream's deletes are not detected
    sweeps_partitions: bool = False
    #: whether a full refresh can stage its rows and replace the stream's in one
    #: transaction (``Batch.stage`` and ``Batch.swap``)
    supports_replace: bool = False

    def staged(self, stream: str, pass_id: int) -> bool:
        """Whether the full refresh ``pass_id`` of ``stream`` has staged rows (see
        ``supports_replace``): a resumed refresh goes on staging only then."""
        return False

    def dead_letters(
        self, state_key: str | None = None, streams: Sequence[str] | None = None, *, replayed: bool = False
    ) -> list[StoredDeadLetter]:
        """The dead letters kept under ``state_key`` (all when None) for ``streams``
        (all when None), oldest first; those already replayed only with ``replayed``.
        Raises :class:`DestinationError` where dead letters cannot be read back."""
        raise DestinationError(f"{self.url} keeps no dead letters that tapyard can read back")

    def mark_replayed(self, ids: Sequence[int]) -> None:
        """Mark dead letters as replayed: their records were validated and written again."""
        raise DestinationError(f"{self.url} keeps no dead letters that tapyard can read back")

    def purge_dead_letters(self, ids: Sequence[int]) -> int:
        """Delete the dead letters ``ids`` for good; how many were deleted."""
        raise DestinationError(f"{self.url} cannot delete its dead letters one by one")

    def close(self) -> None:  # noqa: B027 - most destinations have something to release
        """Release the destination; safe to call twice."""

    def __enter__(self) -> Destination:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_destination_url() -> str:
    """``sqlite:///`` + ``tapyard.db`` in the data directory."""
    from tapyard_credentials import data_dir

    return f"sqlite:///{data_dir() / 'tapyard.db'}"


def url_path(url: str, scheme: str) -> str:
    """The file path of ``scheme:///path`` (SQLAlchemy's rule: three slashes before a
    relative path, four before an absolute one) or of ``scheme:path``.

    ``scheme:///dev/full`` is ``dev/full`` in the current folder by that rule,
    where the writer meant ``/dev/full`` (as in a ``file:`` URL): a relative path
    whose first folder does not exist here but does at the root is refused,
    naming both forms, rather than quietly creating ``./dev/``."""
    rest = url[len(scheme) + 1 :]
    forms = f"use {scheme}:///relative/path or {scheme}:////absolute/path"
    if rest.startswith("///"):
        path = rest[3:]
        if not path.startswith("/"):
            _refuse_a_folder_at_the_root(scheme, path)
    elif rest.startswith("//"):
        raise DestinationError(f"{scheme} URLs take a file path, not a host: {forms}")
    elif rest.startswith("/"):
        # SQLAlchemy reads no such form; taking it as absolute wrote files at the root
        name = quoted(rest.lstrip("/"))
        raise DestinationError(
            f"{scheme}:/{name} is ambiguous: {scheme}:///{name} is {name} "
            f"in the current folder, {scheme}:////{name} is /{name}"
        )
    else:
        path = rest
    if not path:
        raise DestinationError(f"{quoted(url)} names no file; use {scheme}:///path")
    if "\x00" in path:
        raise DestinationError(f"{quoted(url)} holds a NUL character, which no file name can; {forms}")
    return path


def _refuse_a_folder_at_the_root(scheme: str, path: str) -> None:
    first, slash, _ = path.partition("/")
    if not slash or first in ("", ".", "..") or os.path.lexists(first):
        return
    if os.path.isdir(os.path.join(os.sep, first)):
        name = quoted(path)
        raise DestinationError(
            f"{scheme}:///{name} is {name} in the current folder, which has no {quoted(first)} folder; "
            f"for /{name} write {scheme}:////{name} (four slashes), or create ./{quoted(first)} first"
        )


def refuse_odd_target(path: Path, what: str) -> None:
    """Raise :class:`DestinationError` in one line when ``path`` (a destination's file)
    exists and is not a regular file: a directory, a device such as ``/dev/full``,
    a FIFO or socket, or a symbolic link (written through, its journal and state
    files would sit beside the link, not the file: two names for one file could
    disagree)."""
    try:
        if path.is_symlink():
            target = quoted(os.readlink(path))
            raise DestinationError(
                f"cannot use {quoted(str(path))} as {what}: it is a symbolic link (to {target}); name the file itself"
            )
        if not path.exists() or path.is_file():
            return
    except OSError as exc:  # a name too long, a folder on the way that is a file, ...
        reason = exc.strerror or type(exc).__name__
        raise DestinationError(f"cannot use {quoted(str(path))} as {what}: {reason}; choose another path") from None
    kind = "a directory" if path.is_dir() else "a device or another special file, not a regular file"
    raise DestinationError(f"cannot use {quoted(str(path))} as {what}: it is {kind}; choose a file path")


def cursor_sort_key(value: Any) -> int | float | str | None:
    """A value that orders cursor values as time (or number) orders them, for a
    destination to compare versions of one record: timestamps (datetimes, dates,
    ISO 8601 strings in any offset, with up to nine fractional digits) become
    integer nanoseconds since 1970 UTC (naive ones taken as UTC; tapyard's stored
    form with its offset suffix too), numbers stay
    numbers, any other string stays itself. ``None`` for ``None``."""
    if value.__class__ is dt.datetime:  # the usual case, once per record written: keep it short
        moment: dt.datetime = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return ((moment - _EPOCH) // _US) * 1000
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, dt.datetime):
        return _ns(value, nanoseconds_of(value))
    if isinstance(value, dt.date):
        return _ns(dt.datetime(value.year, value.month, value.day), 0)
    if isinstance(value, Decimal):
        return float(value)
    text = value if isinstance(value, str) else str(value)
    match = _ISO_FRACTION.match(text)
    if match is None:
        return text
    head, digits, tail = match.group(1), match.group(2) or "", match.group(3)
    if tail.endswith("]"):  # tapyard's stored form: the offset shown is not part of the instant
        tail = tail.partition("[")[0]
    try:
        parsed = dt.datetime.fromisoformat(head + tail)
    except ValueError:
        return text
    return _ns(parsed, int((digits + "000000000")[:9]) if digits else 0)


#: date and time, an optional fraction of any length, then the offset
_ISO_FRACTION = re.compile(r"^(\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?)(?:[.,](\d+))?(.*)$")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)


def _ns(moment: dt.datetime, nanos: int) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    whole = moment.replace(microsecond=0)
    micros = nanos if nanos else moment.microsecond * 1000
    delta = whole - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + micros


class FileLock:
    """An exclusive lock on a file beside the destination (``flock``): released by
    the kernel when the process dies, however it dies, so a killed run never
    leaves a lock behind. Two opens in one process exclude each other too."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self._fd: int | None = None

    def acquire(self, timeout: float) -> None:
        """Take the lock, waiting up to ``timeout`` seconds, or raise :class:`DestinationError`."""
        try:
            import fcntl
        except ImportError:  # no flock on this platform: nothing to hold
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DestinationError(f"cannot create the lock file {self.path}: {exc.strerror or exc}") from exc
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    waited = f" after waiting {timeout:g}s" if timeout > 0 else ""
                    raise DestinationError(
                        f"{self.what} is busy: another run is writing it{waited}; "
                        "run again when it ends (or wait longer with --wait SECONDS)"
                    ) from None
                time.sleep(0.05)
            except OSError as exc:
                os.close(fd)
                raise DestinationError(f"cannot lock {self.path}: {exc.strerror or exc}") from exc
        with contextlib.suppress(OSError):  # who holds it, for a person looking: not needed to hold it
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Let the lock go; safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    @contextlib.contextmanager
    def held(self, timeout: float) -> Iterator[None]:
        self.acquire(timeout)
        try:
            yield
        finally:
            self.release()


_UNSAFE_URL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def open_destination(url: str, plugins: PluginSet | None = None) -> Destination:
    """Open the destination for ``url`` through the factory registered for its scheme
    in ``plugins`` (default: the process default plugin set)."""
    from tapyard.base import default_plugin_set

    if _UNSAFE_URL.search(url):
        # a control character or a lone surrogate: no file name or host holds one, and
        # database drivers fail on them in ways of their own
        raise DestinationError(
            f"the destination URL {quoted(redact_password(url))} holds a control character; check how it was typed"
        )
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme.startswith("postgres"):
        scheme = "postgresql"
    factories = (plugins or default_plugin_set()).destinations()
    factory = factories.get(scheme)
    if factory is None:
        known = ", ".join(f"{s}://" for s in sorted(factories))
        raise DestinationError(
            f"unsupported destination {redact_password(url)!r}; known schemes: {known}"
        )
    try:
        destination = factory(url)
    except (ValueError, UnicodeError, OSError) as exc:  # a driver's own refusal of the URL
        raise DestinationError(
            f"cannot open the {scheme} destination {quoted(redact_password(url))}: {type(exc).__name__} ({quoted(str(exc))})"
        ) from None
    if not isinstance(destination, Destination):
        raise DestinationError(f"the {scheme} destination factory returned {type(destination).__name__}")
    return destination


def redact_password(url: str) -> str:
    """``url`` with the password of its user info replaced by ``***``."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    userinfo, _, host = rest.rpartition("@")
    if ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return f"{scheme}://{userinfo}@{host}"

