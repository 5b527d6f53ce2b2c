"""One run of the GCP connector: a storage Client, paging, throttling and errors.

The client's HTTP session is tapyard's: each request takes a token from the
run's :class:`tapyard.RateLimiter`, and each response's headers go to it and to
the ``tapyard_rate_limit_learn`` hook (this package penalizes the limiter on
429). google-api-core's retry (429, 5xx, connection errors; exponential
backoff from ``retry_initial_s`` up to ``retry_deadline_s``) is passed to
every listing and download.
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

from ._models import GcpConfig, GcpStream

__all__ = ["GcpSource"]


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


class GcpSource(tapyard.Source):
    """An open run: a google-cloud-storage Client from the vault's service account
    (or Application Default Credentials, or anonymous access to an emulator)."""

    def __init__(self, connector: tapyard.Connector, config: GcpConfig, context: tapyard.RunContext) -> None:
        from google.api_core.retry import Retry
        from google.cloud import storage
        from google.cloud.storage.retry import DEFAULT_RETRY

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
        self.retry: Retry = DEFAULT_RETRY.with_delay(initial=config.retry_initial_s, maximum=30.0).with_timeout(
            config.retry_deadline_s
        )
        credentials, project = self._credentials()
        options = {"api_endpoint": config.endpoint_url} if config.endpoint_url else None
        with self._errors("open the storage client"):
            self.client = storage.Client(
                project=config.project or project or "tapyard",
                credentials=credentials,
                client_options=options,
                _http=self._session(credentials),  # the client's documented HTTP object
            )
        # google-cloud-storage 3.x fetches a bucket's metadata for its tracing
        # spans from a daemon thread on the first call naming the bucket. That is
        # an extra, unasked-for request which outlives the run (and, replayed,
        # races the cassette's exit). The client checks the cache for None.
        self.client._bucket_metadata_cache = None

    def _credentials(self) -> tuple[Any, str | None]:
        credentials = self._context.credentials
        if credentials is not None:
            strategy = self.pm.hook.tapyard_auth_strategy(connector=self.connector, config=self.config, credentials=credentials)
            build = getattr(strategy, "credentials", None)
            if not callable(build):
                raise tapyard.ConfigError(f"the gcp connector needs 'gcp' credentials, not {credentials.kind!r}")  # type: ignore[attr-defined]
            google = build()
            return google, getattr(google, "project_id", None)
        if self.config.endpoint_url:
            from google.auth.credentials import AnonymousCredentials

            return AnonymousCredentials(), None
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            return google.auth.default(scopes=["https://www.googleapis.com/auth/devstorage.read_only"])
        except DefaultCredentialsError as exc:
            raise tapyard.AuthenticationError(
                "no google credentials: pass --creds NAME (a service account, tapyard creds add NAME "
                "--connector gcp) or set up Application Default Credentials",
                status_code=401,
            ) from exc

    def _session(self, credentials: Any) -> Any:
        from google.auth.transport.requests import AuthorizedSession

        source = self

        class _Session(AuthorizedSession):  # type: ignore[misc]
            def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
                source._before_send()
                kwargs.setdefault("timeout", source.config.timeout_s)
                response = super().request(method, url, *args, **kwargs)
                source._response_received(response)
                return response

        from google.auth.credentials import AnonymousCredentials

        # Anonymous credentials cannot be refreshed: let a 401 through as an error.
        refresh = () if isinstance(credentials, AnonymousCredentials) else (401,)
        return _Session(credentials, refresh_status_codes=refresh)

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
        if status == 429 or status >= 500:
            with self._lock:
                self._stats["retries"] += 1
                self._stats["throttled"] += int(status == 429)

    @property
    def http_stats(self) -> Mapping[str, int]:
        with self._lock:
            return dict(self._stats)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()

    @contextlib.contextmanager
    def _errors(self, what: str, *, bucket: str | None = None) -> Iterator[None]:
        """Google SDK errors as tapyard errors with one-line messages."""
        import requests
        from google.api_core import exceptions as gx
        from google.auth import exceptions as ax

        try:
            yield
        except gx.NotFound as exc:
            if bucket:
                raise tapyard.ConfigError(f"bucket {bucket!r} does not exist") from exc
            raise tapyard.HTTPStatusError(f"google found nothing to {what}", status_code=404) from exc
        except (gx.Unauthorized, gx.Forbidden) as exc:
            raise tapyard.AuthenticationError(
                f"google refused the credentials (HTTP {exc.code}) to {what}", status_code=int(exc.code or 401)
            ) from exc
        except gx.GoogleAPICallError as exc:
            status = int(exc.code or 0)
            if status >= 500 or status == 429:
                raise tapyard.HTTPStatusError(
                    f"google kept answering HTTP {status} to {what} for {self.config.retry_deadline_s:g}s",
                    status_code=status,
                ) from exc
            raise tapyard.HTTPStatusError(f"google answered HTTP {status} to {what}", status_code=status) from exc
        except gx.RetryError as exc:
            raise tapyard.TransportError(
                f"google kept failing to {what} for {self.config.retry_deadline_s:g}s: "
                f"{type(exc.cause).__name__ if exc.cause else 'error'}"
            ) from exc
        except ax.GoogleAuthError as exc:
            raise tapyard.AuthenticationError(
                f"google refused the credentials to {what}: {type(exc).__name__}", status_code=401
            ) from exc
        except requests.RequestException as exc:
            where = self.config.endpoint_url or "google cloud storage"
            raise tapyard.TransportError(f"cannot reach {where} to {what}: {type(exc).__name__}") from exc

    # -- the Source contract ------------------------------------------------------------

    def streams(self) -> list[tapyard.Stream]:
        return list(self._streams)

    def check(self) -> None:
        with self._errors("list buckets"):
            next(iter(self.client.list_buckets(max_results=1, retry=self.retry)), None)
        if self.config.bucket:
            with self._errors(f"read bucket {self.config.bucket!r}", bucket=self.config.bucket):
                self.client.get_bucket(self.config.bucket, retry=self.retry)

    def read(self, stream: tapyard.Stream, state: tapyard.StreamState, partition: Mapping[str, Any]) -> Iterator[tapyard.Page]:
        assert isinstance(stream, GcpStream)
        readers = {"buckets": self._buckets, "blobs": self._blobs, "blob_records": self._records}
        yield from readers[stream.name](stream, state)

    def _paginator(self, stream: GcpStream) -> tapyard.Paginator:
        return tapyard.stream_paginator(self.connector, stream)

    def _pages(
        self, stream: GcpStream, state: tapyard.StreamState, what: str, list_items: Any, *,
        resume: bool = True, bucket: str | None = None,
    ) -> Iterator[tuple[list[Any], tapyard.PageRequest | None]]:
        """Pages of an SDK listing (``list_items(page_size=, page_token=)``) with the request after each."""
        paginator = self._paginator(stream)
        page_size = int(getattr(paginator, "page_size", 0) or self.config.page_size)
        if resume and state.resume is not None and state.resume.url == stream.name and paginator.stable:
            request: tapyard.PageRequest | None = state.resume
        else:
            request = paginator.first(stream.name, {})
        assert request is not None

        def start(token: str | None) -> Any:
            iterator = list_items(page_size=page_size, page_token=token)
            pages = iterator.pages

            def fetch() -> tuple[list[Any], str | None] | None:
                with self._errors(what, bucket=bucket):
                    page = next(pages, None)
                    return None if page is None else (list(page), iterator.next_page_token)

            return fetch

        yield from token_requests(stream.name, request, paginator, "page_token", start)

    def _buckets(self, stream: GcpStream, state: tapyard.StreamState) -> Iterator[tapyard.Page]:
        def list_items(page_size: int, page_token: str | None) -> Any:
            return self.client.list_buckets(page_size=page_size, page_token=page_token, retry=self.retry)

        for items, following in self._pages(stream, state, "list buckets", list_items):
            records = [
                {"name": b.name, "location": b.location, "storage_class": b.storage_class,
                 "time_created": _iso(b.time_created)}
                for b in items
            ]
            yield tapyard.Page(records, resume=following)

    def _bucket(self) -> str:
        if not self.config.bucket:
            raise tapyard.ConfigError("this stream needs config 'bucket'")
        return self.config.bucket

    def _listing(self, stream: GcpStream, state: tapyard.StreamState) -> Iterator[ListingPass]:
        """A pass over the bucket's listing (``tapyard.files.listing_pass``): GCS seeks by name
        (``startOffset``), so a resume never sends a page token the service may have forgotten."""
        bucket = self._bucket()
        paginator = self._paginator(stream)
        size = int(getattr(paginator, "page_size", 0) or self.config.page_size)

        def list_page(*, size: int, token: str | None, after: str | None) -> ListingPage:
            iterator = self.client.list_blobs(
                bucket, prefix=self.config.prefix or None, max_results=None, page_size=size,
                page_token=token, start_offset=after if token is None else None, retry=self.retry,
            )
            with self._errors(f"list bucket {bucket!r}", bucket=bucket):
                page = next(iterator.pages, None)
                items = list(page) if page is not None else []
            objects = [StoredObject(b.name, b.updated, b) for b in items]
            return ListingPage(objects, iterator.next_page_token or None)

        return listing_pass(stream.name, state, list_page, size=size, clock=self.clock, seeks=True)

    def _blobs(self, stream: GcpStream, state: tapyard.StreamState) -> Iterator[tapyard.Page]:
        bucket = self._bucket()

        def record(o: StoredObject) -> dict[str, Any]:
            b = o.item
            return {
                "bucket": bucket,
                "name": b.name,
                "size": b.size or 0,
                "etag": b.etag,
                "generation": b.generation,
                "md5_hash": b.md5_hash,
                "content_type": b.content_type,
                "storage_class": b.storage_class,
                "updated": _iso(b.updated),
            }

        return object_pages(self._listing(stream, state), record, seen=stream.primary_key)

    def _download(self, blob: Any) -> IO[bytes]:
        def fill(spool: IO[bytes]) -> None:
            with self._errors(f"read gs://{blob.bucket.name}/{blob.name}", bucket=blob.bucket.name):
                blob.download_to_file(spool, retry=self.retry)

        return spooled(fill)

    def _records(self, stream: GcpStream, state: tapyard.StreamState) -> Iterator[tapyard.Page]:
        return object_record_pages(
            self._listing(stream, state), lambda o: self._download(o.item),
            formats=self.config.formats, flatten=bool(self.config.record_schema),
            page_size=self.config.records_page_size,
        )
