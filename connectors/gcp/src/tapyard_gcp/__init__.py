"""tapyard-gcp: Google Cloud Storage through google-cloud-storage and google-auth.

Streams: ``buckets``, ``blobs`` (incremental on ``updated``) and ``blob_records``
(the rows inside CSV, JSON Lines and Parquet objects under a prefix;
incremental on the object's ``updated`` time).

Auth: the stock ``gcp`` credential kind (a service account key file's JSON,
held in the vault) with ``--creds``; without one, Application Default
Credentials, or anonymous access when ``endpoint_url`` names an emulator
(fake-gcs-server). Page tokens go through the pagination hook. The SDKs are
imported only when a run opens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, Field

import tapyard
from tapyard import hookimpl
from tapyard.http import SdkConnector, SdkTokenPaginator

from ._models import STREAM_NAMES, GcpConfig, build_streams

if TYPE_CHECKING:
    from tapyard_gcp._source import GcpSource

__all__ = ["GcpConfig", "GcpConnector", "GcsPageTokenPaginator", "connector"]


class GcsPageTokenPaginator(SdkTokenPaginator):
    """Pages of a Cloud Storage listing: the position is the API's ``nextPageToken``,
    carried as ``page_token`` in the saved request."""

    kind: ClassVar[str] = "gcs_page_token"
    token_field: ClassVar[str] = "page_token"
    token_param: ClassVar[str] = "page_token"

    page_size: int = Field(1000, ge=1, le=1000, description="Items asked for per request (maxResults).")


class GcpConnector(SdkConnector):
    """The Google Cloud Storage connector."""

    name = "gcp"
    description = "Google Cloud Storage: buckets, objects and the records in CSV/JSONL/Parquet objects (google-cloud-storage)."
    config_model = GcpConfig
    auth_kinds = ("gcp",)
    stream_config = {"blobs": ("bucket",), "blob_records": ("bucket",)}

    def stream_names(self) -> list[str]:
        return list(STREAM_NAMES)

    def streams(self, config: BaseModel) -> list[tapyard.Stream]:
        assert isinstance(config, GcpConfig)
        return build_streams(config, GcsPageTokenPaginator(page_size=config.page_size))

    def source(self, config: BaseModel, context: tapyard.RunContext) -> GcpSource:
        assert isinstance(config, GcpConfig)
        from tapyard_gcp._source import GcpSource

        return GcpSource(self, config, context)


connector = GcpConnector()


@hookimpl
def tapyard_register_connectors(register: Callable[[tapyard.Connector], None]) -> None:
    register(connector)


@hookimpl
def tapyard_register_paginators(register: Callable[[str, type[tapyard.Paginator]], None]) -> None:
    register(GcsPageTokenPaginator.kind, GcsPageTokenPaginator)
