"""One run of the Azure connector: a BlobServiceClient, paging, throttling and errors.

The storage SDK's request and response hooks (``raw_request_hook``,
``raw_response_hook``, which run on every attempt) take a token from the run's :class:`tapyard.RateLimiter` before each request,
feeds each response's headers to it and then to the ``tapyard_rate_limit_learn``
hook, where this package penalizes the limiter on 429 and 503 ``ServerBusy``.
The storage SDK's ``ExponentialRetry`` retries 408, 5xx and connection errors
(``max_attempts``, backoff from ``retry_backoff_s``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator, Mapping
from typing import IO, Any

import tapyard
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

from ._models import AzureConfig, AzureStream

__all__ = ["AzureSource"]


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


class AzureSource(tapyard.Source):
    """An open run: a BlobServiceClient from the vault's credential (or the default chain)."""

    def __init__(self, connector: tapyard.Connector, config: AzureConfig, context: tapyard.RunContext) -> None:
        from azure.storage.blob import ExponentialRetry

        self.connector = connector
        self.config = config
        self.pm = context.pm
        self._context = context
        self._streams = connector.streams(config)
        self._lock = threading.Lock()
        self._stats = {"requests": 0, "retries": 0, "throttled": 0}
        self.clock = ServerClock()
        policy = self.pm.hook.tapyard_rate_limit_policy(connector=connector, config=config) or {}
        self.limiter = tapyard.RateLimiter(config.requests_per_second or policy.get("rate"), policy.get("burst"))
        # The storage SDK's request and response hooks run after its retry
        # policy in the pipeline: once per attempt, retries included.
        options: dict[str, Any] = {
            "retry_policy": ExponentialRetry(
                initial_backoff=config.retry_backoff_s,  # type: ignore[arg-type]
                increment_base=2,
                retry_total=config.max_attempts - 1,
                random_jitter_range=config.retry_backoff_s,  # type: ignore[arg-type]
            ),
            "connection_timeout": config.connect_timeout_s,
            "read_timeout": config.read_timeout_s,
            "raw_request_hook": lambda request: self._before_send(),
            "raw_response_hook": lambda response: self._response_received(response.http_response),
        }
        with self._errors("open the storage account"):
            self.service = self._service(options)

    def _service(self, options: dict[str, Any]) -> Any:
        from azure.storage.blob import BlobServiceClient

        credentials = self._context.credentials
        kind = getattr(credentials, "kind", None)
        if kind == "azure_connection_string":
            assert credentials is not None
            text = credentials.connection_string.get_secret_value()  # type: ignore[attr-defined]
            try:
                return BlobServiceClient.from_connection_string(text, **options)
            except ValueError as exc:
                raise tapyard.ConfigError("the azure connection string is malformed") from exc
        if not self.config.account_url:
            raise tapyard.ConfigError("config 'account_url' is needed unless the credential is a connection string")
        return BlobServiceClient(self.config.account_url, credential=self._identity(), **options)

    def _identity(self) -> Any:
        from azure import identity

        credentials = self._context.credentials
        if credentials is None:
            return identity.DefaultAzureCredential()
        strategy = self.pm.hook.tapyard_auth_strategy(connector=self.connector, config=self.config, credentials=credentials)
        kind = getattr(credentials, "kind", None)
        if kind == "azure":
            return strategy.credential()
        if kind == "azure_managed_identity":
            client_id = getattr(strategy.options, "client_id", None)
            return identity.ManagedIdentityCredential(client_id=client_id) if client_id else identity.ManagedIdentityCredential()
        if kind == "azure_default":
            return identity.DefaultAzureCredential()
        raise tapyard.ConfigError(f"the azure connector does not take {kind!r} credentials")

    # -- the pipeline policy --------------------------------------------------------

    def _before_send(self) -> None:
        self.limiter.acquire()
        with self._lock:
            self._stats["requests"] += 1

    def _response_received(self, raw: Any) -> None:
        import httpx

        status = int(raw.status_code)
        headers = {str(k): str(v) for k, v in raw.headers.items()}
        response = httpx.Response(status, headers=headers)
        self.clock.observe(headers)
        self.limiter.learn(headers)
        self.pm.hook.tapyard_rate_limit_learn(connector=self.connector, response=response, limiter=self.limiter)
        if self._context.on_response is not None:
            self._context.on_response(self.connector, response)
        from tapyard_azure import THROTTLE_CODES

        throttled = status == 429 or headers.get("x-ms-error-code") in THROTTLE_CODES
        if throttled or status >= 500 or status == 408:
            with self._lock:
                self._stats["retries"] += 1
                self._stats["throttled"] += int(throttled)

    @property
    def http_stats(self) -> Mapping[str, int]:
        with self._lock:
            return dict(self._stats)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.service.close()

    @contextlib.contextmanager
    def _errors(self, what: str, *, container: str | None = None) -> Iterator[None]:
        """Azure SDK errors as tapyard errors with one-line messages."""
        from azure.core import exceptions as ax

        def code_of(exc: Any) -> str | None:
            code = getattr(exc, "error_code", None)
            return str(getattr(code, "value", code)) if code else None

        try:
            yield
        except ax.ClientAuthenticationError as exc:
            code = code_of(exc) or type(exc).__name__
            raise tapyard.AuthenticationError(
                f"azure refused the credentials ({code}) to {what}", status_code=int(exc.status_code or 401)
            ) from exc
        except ax.ResourceNotFoundError as exc:
            code = code_of(exc)
            if container and code in ("ContainerNotFound", None):
                raise tapyard.ConfigError(f"container {container!r} does not exist") from exc
            raise tapyard.HTTPStatusError(f"azure found nothing ({code}) to {what}", status_code=404) from exc
        except ax.HttpResponseError as exc:
            status = int(exc.status_code or 0)
            code = code_of(exc) or "error"
            if status in (401, 403):
                raise tapyard.AuthenticationError(
                    f"azure refused the credentials ({code}) to {what}", status_code=status
                ) from exc
            if status >= 500 or status in (408, 429):
                raise tapyard.HTTPStatusError(
                    f"azure kept answering {code} (HTTP {status}) to {what} after {self.config.max_attempts} attempts",
                    status_code=status,
                    attempts=self.config.max_attempts,
                ) from exc
            raise tapyard.HTTPStatusError(f"azure answered {code} (HTTP {status}) to {what}", status_code=status) from exc
        except (ax.ServiceRequestError, ax.ServiceResponseError) as exc:
            where = self.config.account_url or "the storage account"
            raise tapyard.TransportError(
                f"cannot reach {where} to {what}: {type(exc).__name__} after {self.config.max_attempts} attempts"
            ) from exc
        except ax.AzureError as exc:
            raise tapyard.HTTPError(f"azure call to {what} failed: {type(exc).__name__}") from exc

    # -- the Source contract ------------------------------------------------------------

    def streams(self) -> list[tapyard.Stream]:
        return list(self._streams)

    def check(self) -> None:
        with self._errors("read the account"):
            next(iter(self.service.list_containers(results_per_page=1).by_page()), None)
        if self.config.container:
            with self._errors(f"read container {self.config.container!r}", container=self.config.container):
                self.service.get_container_client(self.config.container).get_container_properties()

    def read(self, stream: tapyard.Stream, state: tapyard.StreamState, partition: Mapping[str, Any]) -> Iterator[tapyard.Page]:
        assert isinstance(stream, AzureStream)
        readers = {"containers": self._containers, "blobs": self._blobs, "blob_records": self._records}
        yield from readers[stream.name](stream, state)

    def _paginator(self, stream: AzureStream) -> tapyard.Paginator:
        return tapyard.stream_paginator(self.connector, stream)

    def _pages(
        self, stream: AzureStream, state: tapyard.StreamState, what: str, list_items: Any, *,
        resume: bool = True, container: str | None = None,
    ) -> Iterator[tuple[list[Any], tapyard.PageRequest | None]]:
        """Pages of an SDK listing (``list_items(results_per_page=n)``) with the request after each."""
        paginator = self._paginator(stream)
        page_size = int(getattr(paginator, "page_size", 0) or self.config.page_size)
        if resume and state.resume is not None and state.resume.url == stream.name and paginator.stable:
            request: tapyard.PageRequest | None = state.resume
        else:
            request = paginator.first(stream.name, {})
        assert request is not None

        def start(token: str | None) -> Any:
            with self._errors(what, container=container):
                pages = list_items(results_per_page=page_size).by_page(continuation_token=token)

            def fetch() -> tuple[list[Any], str | None] | None:
                with self._errors(what, container=container):
                    page = next(pages, None)
                    return None if page is None else (list(page), pages.continuation_token)

            return fetch

        yield from token_requests(stream.name, request, paginator, "continuation_token", start)

    def _containers(self, stream: AzureStream, state: tapyard.StreamState) -> Iterator[tapyard.Page]:
        for items, following in self._pages(stream, state, "list containers", self.service.list_containers):
            records = [
                {"name": c.name, "last_modified": _iso(c.last_modified), "etag": str(c.etag or "").strip('"')}
                for c in items
            ]
            yield tapyard.Page(records, resume=following)

    def _container(self) -> str:
        if not self.config.container:
            raise tapyard.ConfigError("this stream needs config 'container'")
        return self.config.container

    def _listing(self, stream: AzureStream, state: tapyard.StreamState) -> Iterator[ListingPass]:
        """A pass over the container's listing (``tapyard.files.listing_pass``). Blob storage
        cannot list from a name, so a resume sends the saved continuation token; one the
        service refuses restarts the listing from the first blob, skipping those already read."""
        container = self._container()
        paginator = self._paginator(stream)
        size = int(getattr(paginator, "page_size", 0) or self.config.page_size)
        client = self.service.get_container_client(container)

        def list_page(*, size: int, token: str | None, after: str | None) -> ListingPage:
            with self._errors(f"list container {container!r}", container=container):
                pages = client.list_blobs(name_starts_with=self.config.prefix or None, results_per_page=size).by_page(
                    continuation_token=token
                )
                page = next(pages, None)
                items = list(page) if page is not None else []
            objects = [StoredObject(b.name, b.last_modified, b) for b in items]
            return ListingPage(objects, pages.continuation_token or None)

        return listing_pass(stream.name, state, list_page, size=size, clock=self.clock, seeks=False)

    def _blobs(self, stream: AzureStream, state: tapyard.StreamState) -> Iterator[tapyard.Page]:
        container = self._container()

        def record(o: StoredObject) -> dict[str, Any]:
            b = o.item
            return {
                "container": container,
                "name": b.name,
                "size": b.size or 0,
                "etag": str(b.etag or "").strip('"'),
                "last_modified": _iso(b.last_modified),
                "content_type": getattr(b.content_settings, "content_type", None),
                "blob_type": str(getattr(b.blob_type, "value", b.blob_type)) if b.blob_type else None,
                "access_tier": str(b.blob_tier) if b.blob_tier else None,
            }

        return object_pages(self._listing(stream, state), record, seen=stream.primary_key)

    def _download(self, container: str, name: str) -> IO[bytes]:
        def fill(spool: IO[bytes]) -> None:
            with self._errors(f"read blob {container}/{name}", container=container):
                self.service.get_blob_client(container, name).download_blob().readinto(spool)

        return spooled(fill)

    def _records(self, stream: AzureStream, state: tapyard.StreamState) -> Iterator[tapyard.Page]:
        container = self._container()
        return object_record_pages(
            self._listing(stream, state), lambda o: self._download(container, o.key),
            formats=self.config.formats, flatten=bool(self.config.record_schema),
            page_size=self.config.records_page_size,
        )
