"""One run of the GCP connector: a storage Client over tapyard's object-store source.

The client's HTTP session is tapyard's: every request it sends goes through the
run's SDK-call path (``tapyard.http.SdkEngine``): the limiter shared by every
run of the credential, the circuit breaker, retries with backoff (429, 5xx,
connection failures; the first wait ``retry_initial_s``, no retry after
``retry_deadline_s``) and the run's HTTP counters. google-api-core's own retry
is off. Listing, cursors and the records in objects are
``tapyard.sources.ObjectStoreSource``'s.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import IO, Any

import tapyard
from tapyard.files import ListingPage, StoredObject
from tapyard.sources import ObjectStoreSource, first_page

from ._models import GcpConfig

__all__ = ["GcpSource"]


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


class GcpSource(ObjectStoreSource):
    """An open run: a google-cloud-storage Client from the vault's service account
    (or Application Default Credentials, or anonymous access to an emulator)."""

    roles = {"buckets": "containers", "blobs": "objects", "blob_records": "records"}
    container_field = "bucket"
    seeks = True  # startOffset
    token_param = "page_token"
    config: GcpConfig

    def __init__(self, connector: tapyard.Connector, config: GcpConfig, context: tapyard.RunContext) -> None:
        from google.cloud import storage

        super().__init__(
            connector, config, context, fallback=config.endpoint_url or "storage.googleapis.com",
            rate_field="requests_per_second",
            policy={"backoff_base": config.retry_initial_s, "request_deadline": config.retry_deadline_s,
                    "read_timeout": config.timeout_s},
        )
        #: the SDK's own retry: off, the SDK-call path retries
        self.retry: Any = None
        credentials, project = self._credentials()
        options = {"api_endpoint": config.endpoint_url} if config.endpoint_url else None
        with self.errors("open the storage client"):
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
        credentials = self.context.credentials
        if credentials is not None:
            strategy = self.pm.hook.tapyard_auth_strategy(connector=self.connector, config=self.config, credentials=credentials)
            build = getattr(strategy, "credentials", None)
            if not callable(build):
                raise tapyard.ConfigError(f"the gcp connector needs 'gcp' credentials, not {credentials.kind!r}")  # type: ignore[attr-defined]
            google = build()
            return google, getattr(google, "project_id", None)
        if self.config.endpoint_url:
            from google.auth.credentials import AnonymousCredentials

            return AnonymousCredentials(), None  # type: ignore[no-untyped-call]
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            found: tuple[Any, str | None] = google.auth.default(scopes=["https://www.googleapis.com/auth/devstorage.read_only"])
            return found
        except DefaultCredentialsError as exc:
            raise tapyard.AuthenticationError(
                "no google credentials: pass --creds NAME (a service account, tapyard creds add NAME "
                "--connector gcp) or set up Application Default Credentials",
                status_code=401,
            ) from exc

    def _session(self, credentials: Any) -> Any:
        from google.auth.transport.requests import AuthorizedSession

        source = self

        class _Session(AuthorizedSession):
            def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
                kwargs.setdefault("timeout", source.config.timeout_s)
                request = super().request

                def send() -> Any:
                    return request(method, url, *args, **kwargs)  # type: ignore[no-untyped-call]

                return source.engine.exchange(send, source._reply, method=method, url=url)

        from google.auth.credentials import AnonymousCredentials

        # Anonymous credentials cannot be refreshed: let a 401 through as an error.
        refresh = () if isinstance(credentials, AnonymousCredentials) else (401,)
        return _Session(credentials, refresh_status_codes=refresh)  # type: ignore[no-untyped-call]

    def _reply(self, response: Any, error: BaseException | None) -> Any:
        """What one exchange said: a 429, or a 403 whose reason is a rate limit
        (``rateLimitExceeded``, as older Google APIs send), is a throttle."""
        from tapyard.http import SdkReply

        if response is None:
            return SdkReply.failed(error or RuntimeError("no response"))
        status = int(response.status_code)
        self.clock.observe(response.headers)
        reason = _reason(response) if status == 403 else None
        throttled = reason in ("rateLimitExceeded", "userRateLimitExceeded")
        return SdkReply.of(status, response.headers, throttled=throttled, code=reason)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()

    @contextlib.contextmanager
    def errors(self, what: str, *, container: str | None = None) -> Iterator[None]:
        """Google SDK errors as tapyard errors with one-line messages."""
        import requests
        from google.api_core import exceptions as gx
        from google.auth import exceptions as ax

        try:
            yield
        except gx.NotFound as exc:
            if container:
                raise tapyard.ConfigError(f"bucket {container!r} does not exist") from exc
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

    # -- the object store ----------------------------------------------------------------

    def check(self) -> None:
        with self.errors("list buckets"):
            next(iter(self.client.list_buckets(max_results=1, retry=self.retry)), None)
        if self.config.bucket:
            with self.errors(f"read bucket {self.config.bucket!r}", container=self.config.bucket):
                self.client.get_bucket(self.config.bucket, retry=self.retry)

    def list_containers(self, *, size: int, token: str | None) -> tuple[list[Any], str | None]:
        iterator = self.client.list_buckets(page_size=size, page_token=token, retry=self.retry)
        return first_page(iterator.pages), iterator.next_page_token or None

    def container_record(self, item: Any) -> dict[str, Any]:
        return {"name": item.name, "location": item.location, "storage_class": item.storage_class,
                "time_created": _iso(item.time_created)}

    def list_objects(self, container: str, *, size: int, token: str | None, after: str | None) -> ListingPage:
        iterator = self.client.list_blobs(
            container, prefix=self.config.prefix or None, max_results=None, page_size=size,
            page_token=token, start_offset=after if token is None else None, retry=self.retry,
        )
        items = first_page(iterator.pages)
        return ListingPage([StoredObject(b.name, b.updated, b) for b in items], iterator.next_page_token or None)

    def object_record(self, container: str, stored: StoredObject) -> dict[str, Any]:
        b = stored.item
        return {
            "bucket": container,
            "name": b.name,
            "size": b.size or 0,
            "etag": b.etag,
            "generation": b.generation,
            "md5_hash": b.md5_hash,
            "content_type": b.content_type,
            "storage_class": b.storage_class,
            "updated": _iso(b.updated),
        }

    def download(self, container: str, stored: StoredObject, spool: IO[bytes]) -> None:
        blob = stored.item
        with self.errors(f"read gs://{container}/{blob.name}", container=container):
            blob.download_to_file(spool, retry=self.retry)


def _reason(response: Any) -> str | None:
    """The ``error.errors[0].reason`` of a Google JSON error body, if any."""
    try:
        errors = response.json().get("error", {}).get("errors") or [{}]
    except (ValueError, AttributeError):
        return None
    reason = errors[0].get("reason") if isinstance(errors[0], dict) else None
    return str(reason) if reason else None
