"""The JSON Lines destination, for piping and for files.

Each line is ``{"stream": ..., "record": {...}}`` (or ``"dead_letter"``
instead of ``"record"``). ``jsonl:-`` writes to standard output and keeps no
state. ``jsonl:///path`` appends to a file and keeps the state beside it in
``path.state.json``, together with the file's length after the last committed
write. On open, anything past that length (the tail of a write that was
killed) is cut off, so a resumed run neither loses nor repeats a line.

The file is a log: every run appends the records it read, so a record
updated at the source appears once per version, oldest first (twice where a
stream's ``cursor_lookback`` reads its boundary again); a reader keeps the
last line of each primary key. tapyard appends only to a file it created
(the state file beside it says so) and refuses any other non-empty file
rather than write into it. One run writes a file at a time (``path.lock``).
Deletes found by a complete listing and ``--full-refresh``'s removal of
stale rows apply to table destinations (SQLite), not to this log.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import orjson
from pydantic import BaseModel

from tapyard.base import (
    Column,
    DeadLetter,
    DestinationError,
    StateError,
    Stream,
    StreamState,
    json_bytes,
    quoted,
)
from tapyard.destinations._base import Batch, Destination, FileLock, refuse_odd_target, url_path

__all__ = ["JSONLDestination", "atomic_write"]


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _record_json(record: Any) -> bytes:
    """One record as JSON: the model's fields as its serializer names them, numbers
    exact, timestamps in tapyard's one UTC form (docs/types.md)."""
    if isinstance(record, BaseModel):
        return json_bytes(record.model_dump())
    return json_bytes(record)


def _raw(record: Any) -> Any:
    return record.model_dump(by_alias=True) if isinstance(record, BaseModel) else record


class JSONLDestination(Destination):
    """Records as JSON Lines in a file (``jsonl:///path``) or on standard output (``jsonl:-``)."""

    def __init__(self, url: str) -> None:
        target = url_path(url, "jsonl")
        self._state: dict[str, dict[str, Any]] = {}
        self._fh: IO[bytes]
        self._lock: FileLock | None = None
        self._opened = True
        if target == "-":
            self.url = "jsonl:-"
            self.path: Path | None = None
            self._fh = sys.stdout.buffer
            return
        self.path = Path(target).expanduser()
        self.url = f"jsonl:///{self.path}"
        self.state_path = self.path.with_name(self.path.name + ".state.json")
        self._lock = FileLock(self.path.with_name(self.path.name + ".lock"), f"{self.path}")
        self._opened = False
        refuse_odd_target(self.path, "a JSON Lines file")
        if not self.state_path.exists() and self.path.is_file() and self.path.stat().st_size > 0:
            raise DestinationError(
                f"{self.path} exists and tapyard did not write it (no {self.state_path.name} beside it); "
                "choose another file, or move that one away"
            )

    def _open(self, timeout: float = 0.0) -> None:
        """Take the file (one run at a time), read the state, and cut off the tail of
        a write that was killed: only a holder of the lock may cut or append."""
        if self._opened or self.path is None or self._lock is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DestinationError(f"cannot create the folder for {self.path}: {exc.strerror or exc}") from exc
        self._lock.acquire(timeout)
        try:
            self._open_locked()
        except BaseException:
            self._lock.release()
            raise
        self._opened = True

    def _open_locked(self) -> None:
        assert self.path is not None
        offset = 0
        if self.state_path.exists():
            try:
                saved = orjson.loads(self.state_path.read_bytes())
                offset = int(saved["offset"])
                self._state = dict(saved["states"])
            except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise StateError(
                    f"state file {self.state_path} is unreadable; delete it (and {self.path}) to start over"
                ) from exc
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("ab")
            size = self._fh.seek(0, os.SEEK_END)
            if size < offset:
                raise StateError(
                    f"{self.path} is shorter than its state file says ({size} < {offset} bytes); "
                    f"delete {self.state_path} to start over"
                )
            if size > offset:
                self._fh.truncate(offset)
            if not self.state_path.exists():
                # The mark that this file is tapyard's, before any line is written:
                # a run killed before its first commit leaves a file we may append to.
                atomic_write(self.state_path, orjson.dumps({"offset": 0, "states": {}}))
        except OSError as exc:
            raise DestinationError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def lock(self, stream: str, timeout: float) -> contextlib.AbstractContextManager[None]:
        """The whole file is one run's at a time (its lines and its state file are
        shared by every stream): ``<file>.lock`` beside it, held until :meth:`close`."""
        self._open(timeout)
        return contextlib.nullcontext()

    def prepare(self, stream: Stream, columns: Sequence[Column]) -> None:
        """Nothing to create: lines carry their stream name."""

    def load_state(self, state_key: str) -> dict[str, StreamState]:
        self._open()
        states = {}
        for name, data in self._state.get(state_key, {}).items():
            try:
                states[name] = StreamState.from_json(data)
            except ValueError as exc:
                raise StateError(
                    f"saved state of stream {quoted(name)} in {self.state_path} is unreadable ({exc}); "
                    "rerun with --full-refresh to start over"
                ) from exc
        return states

    def write(self, state_key: str, batches: Sequence[Batch]) -> None:
        self._open()
        lines: list[bytes] = []
        for batch in batches:
            prefix = b'{"stream":' + orjson.dumps(batch.stream)
            records: list[Any] = batch.items if batch.items is not None else batch.rows
            kept: list[Any] = []
            for record in records:
                try:
                    line = prefix + b',"record":' + _record_json(record) + b"}\n"
                except ValueError as exc:  # a value no JSON can hold (nested too deeply)
                    batch.dead.append(DeadLetter(raw=_raw(record), error=f"cannot be written as JSON: {exc}"))
                    continue
                lines.append(line)
                kept.append(record)
            if len(kept) != len(records):
                if batch.items is not None:
                    batch.items = kept
                else:
                    batch.rows = kept
            for d in batch.dead:
                try:
                    body = json_bytes({"raw": d.raw, "error": d.error})
                except ValueError:  # nested too deeply for any encoder: its reason only
                    body = json_bytes({"raw": None, "error": d.error})
                lines.append(prefix + b',"dead_letter":' + body + b"}\n")
        try:
            self._fh.write(b"".join(lines))
            self._fh.flush()
            if self.path is None:
                return
            os.fsync(self._fh.fileno())
            states = self._state.setdefault(state_key, {})
            for batch in batches:
                if batch.state is not None:
                    states[batch.state_name] = batch.state.to_json()
            atomic_write(
                self.state_path, orjson.dumps({"offset": self._fh.tell(), "states": self._state})
            )
        except OSError as exc:
            raise DestinationError(f"cannot write {self.url}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        if self.path is not None and self._opened and not self._fh.closed:
            self._fh.close()
        if self._lock is not None:
            self._lock.release()
