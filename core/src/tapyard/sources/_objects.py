"""The object-store source that aws (S3), azure (Blob Storage) and gcp (Cloud
Storage) share: the listing of containers (buckets), the objects under a
prefix, and the records in CSV, JSON Lines and Parquet objects.

A connector subclasses :class:`ObjectStoreSource` and says, in a few methods,
how its SDK lists containers and objects, what record an object makes, and
how an object is downloaded; the rest is here, once: which stream plays which
part (:attr:`ObjectStoreSource.roles`), paging and resume points
(``tapyard.files.token_requests``), the pass over the listing that keeps the
cursor safe (``tapyard.files.listing_pass``: the store's clock, seeking by
key where the store can), the pages of objects and of the records in them,
and partitions. Every request of the SDK goes through the run's SDK-call path
(:class:`tapyard.http.SdkSource`).
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any, ClassVar, Literal

from tapyard.base import ConfigError, Page, Paginator, PluginError, Stream, StreamState
from tapyard.files import (
    ListingPage,
    ListingPass,
    ServerClock,
    StoredObject,
    listing_pass,
    object_pages,
    object_record_pages,
    spooled,
    token_requests,
)
from tapyard.http import SdkSource

__all__ = ["ObjectStoreSource", "Role", "first_page"]

#: what a stream of an object store reads: its containers (buckets), the
#: objects of one container, or the records in those objects
Role = Literal["containers", "objects", "records"]


def first_page(pages: Iterator[Iterable[Any]]) -> list[Any]:
    """The items of the first page an SDK's pager gives (none when it gives none)."""
    page = next(pages, None)
    return list(page) if page is not None else []


class ObjectStoreSource(SdkSource):
    """One run over an object store. See the module docstring.

    The configuration is expected to have ``prefix``, ``formats``,
    ``record_schema``, ``page_size`` and ``records_page_size`` fields.
    """

    #: the role of each stream by name; a stream not named here is read by :meth:`read_other`
    roles: ClassVar[Mapping[str, Role]] = {}
    #: the config field that names the container ("bucket", "container")
    container_field: ClassVar[str] = "bucket"
    #: whether the store lists from a key (S3 ``StartAfter``, GCS ``startOffset``):
    #: a resume then never sends a token the store may have forgotten
    seeks: ClassVar[bool] = True
    #: the parameter of a saved request that holds the container listing's token
    token_param: ClassVar[str] = "page_token"

    #: the store's clock (its responses' ``Date``): a pass commits no cursor past it
    clock: ServerClock

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clock = ServerClock()
        self._streams: list[Stream] = self.connector.streams(self.config)

    # -- what a store says, in its SDK's terms -----------------------------------------

    @abc.abstractmethod
    def errors(self, what: str, *, container: str | None = None) -> contextlib.AbstractContextManager[None]:
        """A context that turns the SDK's errors into one-line tapyard errors naming ``what``."""

    def list_containers(self, *, size: int, token: str | None) -> tuple[list[Any], str | None]:
        """One page of containers (buckets), and the token of the next (None after the last)."""
        raise NotImplementedError

    def container_record(self, item: Any) -> dict[str, Any]:
        """The record of one container (a container listing's item)."""
        raise NotImplementedError

    @abc.abstractmethod
    def list_objects(self, container: str, *, size: int, token: str | None, after: str | None) -> ListingPage:
        """One page of objects under the prefix: from the store's ``token``, else after
        the key ``after`` (stores that cannot seek get ``after=None``)."""

    @abc.abstractmethod
    def object_record(self, container: str, stored: StoredObject) -> dict[str, Any]:
        """The record of one object."""

    @abc.abstractmethod
    def download(self, container: str, stored: StoredObject, spool: IO[bytes]) -> None:
        """Write the object's bytes to ``spool`` (errors as tapyard errors)."""

    def read_other(self, stream: Stream, state: StreamState, partition: Mapping[str, Any]) -> Iterator[Page]:
        """Read a stream that is not an object-store stream (DynamoDB items...)."""
        raise NotImplementedError(stream.name)

    # -- the Source contract --------------------------------------------------------------

    def streams(self) -> list[Stream]:
        return list(self._streams)

    def read(self, stream: Stream, state: StreamState, partition: Mapping[str, Any]) -> Iterator[Page]:
        role = self.roles.get(stream.name)
        if role == "containers":
            return self._containers(stream, state)
        if role == "objects":
            return self._objects(stream, state)
        if role == "records":
            return self._records(stream, state)
        return self.read_other(stream, state, partition)

    def container(self) -> str:
        """The configured container; a stream that needs one says which setting is missing."""
        name = getattr(self.config, self.container_field, None)
        if not name:
            raise ConfigError(f"this stream needs config {self.container_field!r}")
        return str(name)

    def paginator(self, stream: Stream) -> Paginator:
        """The stream's paginator, as the run's plugins choose it (``tapyard_stream_paginator``)."""
        paginator = self.pm.hook.tapyard_stream_paginator(connector=self.connector, stream=stream)
        if not isinstance(paginator, Paginator):
            raise PluginError(
                f"tapyard_stream_paginator returned {type(paginator).__name__} for stream {stream.name!r}"
            )
        return paginator

    def page_size(self, stream: Stream) -> int:
        """Items asked for per listing request: the paginator's, else the config's."""
        return int(getattr(self.paginator(stream), "page_size", 0) or getattr(self.config, "page_size", 1000))

    # -- the streams --------------------------------------------------------------------------

    def _containers(self, stream: Stream, state: StreamState) -> Iterator[Page]:
        paginator = self.paginator(stream)
        size = self.page_size(stream)
        saved = state.resume
        request = saved if saved is not None and saved.url == stream.name and paginator.stable else None
        request = request or paginator.first(stream.name, {})

        def start(token: str | None) -> Any:
            at: dict[str, Any] = {"token": token, "done": False}

            def fetch() -> tuple[list[Any], str | None] | None:
                if at["done"]:
                    return None
                with self.errors(f"list {self.container_field}s"):
                    items, following = self.list_containers(size=size, token=at["token"])
                at["token"], at["done"] = following, not following
                return items, following

            return fetch

        for items, following in token_requests(stream.name, request, paginator, self.token_param, start):
            yield Page([self.container_record(item) for item in items], resume=following)

    def listing(self, stream: Stream, state: StreamState) -> Iterator[ListingPass]:
        """A pass over the container's listing (``tapyard.files.listing_pass``)."""
        container = self.container()

        def list_page(*, size: int, token: str | None, after: str | None) -> ListingPage:
            with self.errors(f"list {self.container_field} {container!r}", container=container):
                return self.list_objects(container, size=size, token=token, after=after if self.seeks else None)

        return listing_pass(stream.name, state, list_page, size=self.page_size(stream), clock=self.clock, seeks=self.seeks)

    def _objects(self, stream: Stream, state: StreamState) -> Iterator[Page]:
        container = self.container()
        pages: Iterator[Page] = object_pages(
            self.listing(stream, state), lambda o: self.object_record(container, o), seen=stream.primary_key
        )
        return pages

    def _records(self, stream: Stream, state: StreamState) -> Iterator[Page]:
        container = self.container()
        config = self.config

        def open_object(stored: StoredObject) -> IO[bytes]:
            return spooled(lambda spool: self.download(container, stored, spool))

        pages: Iterator[Page] = object_record_pages(
            self.listing(stream, state),
            open_object,
            formats=getattr(config, "formats"),  # noqa: B009 - a field of every object-store config
            flatten=bool(getattr(config, "record_schema", None)),
            page_size=int(getattr(config, "records_page_size", 1000)),
        )
        return pages
