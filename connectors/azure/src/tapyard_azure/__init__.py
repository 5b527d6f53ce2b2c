"""tapyard-azure: Azure Blob Storage through azure-storage-blob and azure-identity.

Streams: ``containers``, ``blobs`` (incremental on ``last_modified``) and
``blob_records`` (the rows inside CSV, JSON Lines and Parquet blobs under a
prefix; incremental on the blob's modification time).

Auth (``--creds``), by credential kind:

- ``azure``: a service principal (client secret or certificate), the stock kind;
- ``azure_managed_identity``: a managed identity (``client_id`` for a user-assigned one);
- ``azure_default``: azure-identity's default chain (environment, workload
  identity, managed identity, Azure CLI...); also what a run without ``--creds`` uses;
- ``azure_connection_string``: a storage connection string (account key or SAS).

Listing pages follow Azure's continuation tokens (``NextMarker``) through the
pagination hook. The SDKs are imported only when a run opens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr

import tapyard
from tapyard import hookimpl
from tapyard.http import SdkConnector, SdkTokenPaginator

from ._models import STREAM_NAMES, AzureConfig, build_streams

if TYPE_CHECKING:
    import httpx

    from tapyard_azure._source import AzureSource

__all__ = [
    "AzureConfig",
    "AzureConnectionStringAuth",
    "AzureConnector",
    "AzureContinuationPaginator",
    "AzureDefaultAuth",
    "AzureManagedIdentityAuth",
    "connector",
]


class AzureContinuationPaginator(SdkTokenPaginator):
    """Pages of an Azure listing: the position is the service's continuation token
    (``NextMarker``), carried as ``continuation_token`` in the saved request."""

    kind: ClassVar[str] = "azure_continuation"
    token_field: ClassVar[str] = "continuation_token"
    token_param: ClassVar[str] = "continuation_token"

    page_size: int = Field(1000, ge=1, le=5000, description="Items asked for per request (maxresults).")


class _SdkOnly(tapyard.AuthStrategy):
    """An identity for the Azure SDK: it builds SDK objects, it does not sign httpx requests."""

    Options: ClassVar[type[tapyard.Credentials]]

    def __init__(self, options: tapyard.Credentials) -> None:
        self.options = options

    @classmethod
    def from_credentials(cls, credentials: BaseModel) -> tapyard.AuthStrategy:
        return cls(cls.Options.model_validate(credentials.model_dump()))

    def apply(self, request: httpx.Request) -> None:
        raise tapyard.ConfigError(f"{self.kind} credentials are for the Azure SDK connectors only")


class AzureConnectionStringAuth(_SdkOnly):
    """A storage account connection string (with an account key or a SAS token)."""

    kind: ClassVar[str] = "azure_connection_string"

    class Options(tapyard.Credentials):
        kind: Literal["azure_connection_string"] = "azure_connection_string"
        connection_string: SecretStr = Field(description="The storage account's connection string.")

        @property
        def blob_endpoint(self) -> str | None:
            """The ``BlobEndpoint`` the connection string names (an emulator, a custom domain), or
            None: not a secret, and what the manifest's ``{credentials.blob_endpoint}`` declares."""
            for part in self.connection_string.get_secret_value().split(";"):
                key, _, value = part.partition("=")
                if key.strip().lower() == "blobendpoint" and value.strip():
                    return value.strip()
            return None


class AzureManagedIdentityAuth(_SdkOnly):
    """A managed identity (system-assigned, or user-assigned with ``client_id``)."""

    kind: ClassVar[str] = "azure_managed_identity"

    class Options(tapyard.Credentials):
        kind: Literal["azure_managed_identity"] = "azure_managed_identity"
        client_id: str | None = Field(None, description="The client id of a user-assigned identity.")


class AzureDefaultAuth(_SdkOnly):
    """azure-identity's DefaultAzureCredential chain."""

    kind: ClassVar[str] = "azure_default"

    class Options(tapyard.Credentials):
        kind: Literal["azure_default"] = "azure_default"


class AzureConnector(SdkConnector):
    """The Azure Blob Storage connector."""

    name = "azure"
    description = "Azure Blob Storage: containers, blobs and the records in CSV/JSONL/Parquet blobs (azure-storage-blob)."
    config_model = AzureConfig
    auth_kinds = ("azure", "azure_connection_string", "azure_managed_identity", "azure_default")
    stream_config = {"blobs": ("container",), "blob_records": ("container",)}

    def stream_names(self) -> list[str]:
        return list(STREAM_NAMES)

    def streams(self, config: BaseModel) -> list[tapyard.Stream]:
        assert isinstance(config, AzureConfig)
        return build_streams(config, AzureContinuationPaginator(page_size=config.page_size))

    def source(self, config: BaseModel, context: tapyard.RunContext) -> AzureSource:
        assert isinstance(config, AzureConfig)
        from tapyard_azure._source import AzureSource

        return AzureSource(self, config, context)


connector = AzureConnector()

#: Azure error codes (x-ms-error-code) that mean "slow down".
THROTTLE_CODES = frozenset({"ServerBusy", "OperationTimedOut", "TooManyRequests"})


@hookimpl
def tapyard_register_connectors(register: Callable[[tapyard.Connector], None]) -> None:
    register(connector)


@hookimpl
def tapyard_register_paginators(register: Callable[[str, type[tapyard.Paginator]], None]) -> None:
    register(AzureContinuationPaginator.kind, AzureContinuationPaginator)


@hookimpl
def tapyard_register_auth_strategies(register: Callable[[str, type[tapyard.AuthStrategy]], None]) -> None:
    for cls in (AzureConnectionStringAuth, AzureManagedIdentityAuth, AzureDefaultAuth):
        register(cls.kind, cls)
