"""One run of the Azure connector: a BlobServiceClient, paging and errors.

The storage SDK's pipeline has tapyard's policy where its retry policy would
be: every request goes through the run's SDK-call path
(``tapyard.http.SdkEngine``): the limiter shared by every run of the
credential, the circuit breaker, retries with backoff (429, 5xx, 503
``ServerBusy`` and the other throttling codes, connection failures;
``max_attempts``, backoff from ``retry_backoff_s``) and the run's HTTP counters.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import IO, Any

import tapyard
from tapyard.files import ListingPage, StoredObject
from tapyard.sources import ObjectStoreSource, first_page

from ._models import AzureConfig

__all__ = ["AzureSource"]


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


class AzureSource(ObjectStoreSource):
    """An open run: a BlobServiceClient from the vault's credential (or the default chain)."""

    roles = {"containers": "containers", "blobs": "objects", "blob_records": "records"}
    container_field = "container"
    seeks = False  # Blob storage cannot list from a name: a resume sends the saved token
    token_param = "continuation_token"
    config: AzureConfig

    def __init__(self, connector: tapyard.Connector, config: AzureConfig, context: tapyard.RunContext) -> None:
        super().__init__(
            connector, config, context, fallback=config.account_url or "azure",
            rate_field="requests_per_second",
            policy={"max_attempts": config.max_attempts, "backoff_base": config.retry_backoff_s,
                    "retry_statuses": frozenset({408, 429, 500, 502, 503, 504}),
                    "connect_timeout": config.connect_timeout_s, "read_timeout": config.read_timeout_s},
        )
        options: dict[str, Any] = {
            # in the retry policy's place in the pipeline: once per attempt
            "retry_policy": _policy(self.engine, self._reply),
            "connection_timeout": config.connect_timeout_s,
            "read_timeout": config.read_timeout_s,
        }
        with self.errors("open the storage account"):
            self.service = self._service(options)

    def _service(self, options: dict[str, Any]) -> Any:
        from azure.storage.blob import BlobServiceClient

        credentials = self.context.credentials
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

        credentials = self.context.credentials
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

    def _reply(self, response: Any, error: BaseException | None) -> Any:
        """What one exchange said: a 429, or a throttling ``x-ms-error-code``
        (``ServerBusy``...), is a throttle."""
        from tapyard.http import SdkReply
        from tapyard_azure import THROTTLE_CODES

        if response is None:
            return SdkReply.failed(error or RuntimeError("no response"))
        raw = response.http_response
        headers = raw.headers
        self.clock.observe(headers)
        code = headers.get("x-ms-error-code")
        return SdkReply.of(int(raw.status_code), headers, throttled=code in THROTTLE_CODES, code=code)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.service.close()

    @contextlib.contextmanager
    def errors(self, what: str, *, container: str | None = None) -> Iterator[None]:
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
            missing = code_of(exc)
            if container and missing in ("ContainerNotFound", None):
                raise tapyard.ConfigError(f"container {container!r} does not exist") from exc
            raise tapyard.HTTPStatusError(f"azure found nothing ({missing}) to {what}", status_code=404) from exc
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

    # -- the object store ----------------------------------------------------------------

    def check(self) -> None:
        with self.errors("read the account"):
            next(iter(self.service.list_containers(results_per_page=1).by_page()), None)
        if self.config.container:
            with self.errors(f"read container {self.config.container!r}", container=self.config.container):
                self.service.get_container_client(self.config.container).get_container_properties()

    def list_containers(self, *, size: int, token: str | None) -> tuple[list[Any], str | None]:
        pages = self.service.list_containers(results_per_page=size).by_page(continuation_token=token)
        return first_page(pages), pages.continuation_token or None

    def container_record(self, item: Any) -> dict[str, Any]:
        return {"name": item.name, "last_modified": _iso(item.last_modified), "etag": str(item.etag or "").strip('"')}

    def list_objects(self, container: str, *, size: int, token: str | None, after: str | None) -> ListingPage:
        client = self.service.get_container_client(container)
        pages = client.list_blobs(name_starts_with=self.config.prefix or None, results_per_page=size).by_page(
            continuation_token=token
        )
        items = first_page(pages)
        return ListingPage([StoredObject(b.name, b.last_modified, b) for b in items], pages.continuation_token or None)

    def object_record(self, container: str, stored: StoredObject) -> dict[str, Any]:
        b = stored.item
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

    def download(self, container: str, stored: StoredObject, spool: IO[bytes]) -> None:
        with self.errors(f"read blob {container}/{stored.key}", container=container):
            self.service.get_blob_client(container, stored.key).download_blob().readinto(spool)


def _policy(engine: Any, reply: Any) -> Any:
    """The pipeline policy that sends each request through ``engine`` (the SDK-call path)."""
    from azure.storage.blob import ExponentialRetry

    class TapyardPolicy(ExponentialRetry):
        def send(self, request: Any) -> Any:
            # what a storage retry policy does besides retrying: take its options
            # from the request (hosts, location mode) and stamp the location mode
            # on the response
            settings = self.configure_retries(request)
            http = request.http_request
            response = engine.exchange(lambda: self.next.send(request), reply, method=http.method, url=http.url)
            response.http_response.location_mode = settings["mode"]
            return response

    return TapyardPolicy()
