"""Configuration and record models of the Azure connector (no SDK here)."""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

from pydantic import BaseModel, Field

import tapyard
from tapyard.files import record_model
from tapyard.sources import ObjectStoreConfig

__all__ = ["STREAM_NAMES", "AzureConfig", "AzureStream", "build_streams"]

STREAM_NAMES = ("containers", "blobs", "blob_records")


class AzureConfig(ObjectStoreConfig):
    """Configuration of the Azure Blob Storage connector."""

    words: ClassVar[dict[str, str]] = {"objects": "blobs", "key": "name", "records": "blob_records"}
    url_fields: ClassVar[frozenset[str]] = frozenset({"account_url"})

    account_url: str | None = Field(
        None,
        description="The blob endpoint (https://ACCOUNT.blob.core.windows.net, or an emulator's); "
        "taken from the connection string when the credential is one.",
    )
    container: str | None = Field(None, description="The container of blobs and blob_records (they need one).")
    page_size: int = Field(1000, ge=1, le=5000, description="Items asked for per listing request.")
    max_attempts: int = Field(8, ge=1, le=20, description="Attempts per request (tapyard's SDK-call path: throttling, 408, 5xx, connection failures).")
    retry_backoff_s: float = Field(0.5, ge=0, le=60, description="Base of the exponential backoff (full jitter) between attempts.")
    connect_timeout_s: float = Field(10, gt=0, le=300)
    read_timeout_s: float = Field(60, gt=0, le=3600)


class AzureStream(tapyard.Stream):
    """A stream of the Azure connector."""

    paginator: tapyard.Paginator | None = None


class Container(BaseModel):
    name: str
    last_modified: dt.datetime | None = None
    etag: str | None = None


class Blob(BaseModel):
    container: str
    name: str
    size: int
    etag: str
    last_modified: dt.datetime
    content_type: str | None = None
    blob_type: str | None = None
    access_tier: str | None = None


def build_streams(config: AzureConfig, paginator: tapyard.Paginator) -> list[tapyard.Stream]:
    """The streams this configuration enables: the blob streams need a container."""
    streams: list[tapyard.Stream] = [
        AzureStream(name="containers", schema_model=Container, primary_key=("name",), paginator=paginator,
                    deletes="listing", description="Containers of the storage account."),
    ]
    if config.container:
        streams += [
            AzureStream(name="blobs", schema_model=Blob, primary_key=("container", "name"),
                        cursor_field="last_modified", paginator=paginator, ordered_by_cursor=False,
                        deletes="listing", description="Blobs under the prefix."),
            AzureStream(name="blob_records", schema_model=record_model("BlobRecord", config.record_schema),
                        primary_key=("source_key", "source_line"), cursor_field="source_last_modified",
                        paginator=paginator, ordered_by_cursor=False, deletes="none",
                        description="Rows of the CSV, JSON Lines and Parquet blobs under the prefix."),
        ]
    return streams
