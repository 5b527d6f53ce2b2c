"""Destinations: where synced records land.

A destination is opened from a URL (``--to``) by the factory registered for
its scheme. The sync engine calls :meth:`Destination.prepare` once per stream,
then :meth:`Destination.write` with batches; each ``write`` is one
transaction holding the records, the dead letters and the new stream state,
so a crash at any point leaves the records and the state in agreement.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from tapyard._exceptions import DestinationError
from tapyard._model import Stream, StreamState
from tapyard._schema import Column, DeadLetter

__all__ = ["Batch", "Destination", "default_destination_url", "open_destination", "url_path"]


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
    relative path, four before an absolute one) or of ``scheme:path``."""
    rest = url[len(scheme) + 1 :]
    if rest.startswith("///"):
        path = rest[3:]
    elif rest.startswith("//"):
        raise DestinationError(
            f"{scheme} URLs take a file path, not a host: use {scheme}:///relative/path "
            f"or {scheme}:////absolute/path"
        )
    else:
        path = rest
    if not path:
        raise DestinationError(f"{url!r} names no file; use {scheme}:///path")
    return path


def open_destination(url: str) -> Destination:
    """Open the destination for ``url`` through the factory registered for its scheme."""
    from tapyard._plugins import collect_destinations

    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme.startswith("postgres"):
        scheme = "postgresql"
    factories = collect_destinations()
    factory = factories.get(scheme)
    if factory is None:
        known = ", ".join(f"{s}://" for s in sorted(factories))
        raise DestinationError(
            f"unsupported destination {redact_password(url)!r}; known schemes: {known}"
        )
    destination = factory(url)
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

