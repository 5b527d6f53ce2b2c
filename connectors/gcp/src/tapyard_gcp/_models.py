"""Configuration and record models of the GCP connector (no SDK here)."""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

from pydantic import BaseModel, Field

import tapyard
from tapyard.files import record_model
from tapyard.sources import ObjectStoreConfig

__all__ = ["STREAM_NAMES", "GcpConfig", "GcpStream", "build_streams"]

STREAM_NAMES = ("buckets", "blobs", "blob_records")


class GcpConfig(ObjectStoreConfig):
    """Configuration of the Google Cloud Storage connector."""

    words: ClassVar[dict[str, str]] = {"objects": "objects", "key": "name", "records": "blob_records"}
    url_fields: ClassVar[frozenset[str]] = frozenset({"endpoint_url"})

    project: str | None = Field(None, description="The project whose buckets are listed (default: the credential's).")
    endpoint_url: str | None = Field(
        None, description="Send every request here instead of Google (an emulator such as fake-gcs-server)."
    )
    bucket: str | None = Field(None, description="The bucket of blobs and blob_records (they need one).")
    page_size: int = Field(1000, ge=1, le=1000, description="Items asked for per listing request.")
    retry_initial_s: float = Field(1.0, gt=0, le=60, description="Base of the exponential backoff (full jitter) between attempts.")
    retry_deadline_s: float = Field(120, gt=0, le=3600, description="No attempt starts this long after a call's first.")
    timeout_s: float = Field(60, gt=0, le=3600, description="Timeout of each request.")


class GcpStream(tapyard.Stream):
    """A stream of the GCP connector."""

    paginator: tapyard.Paginator | None = None


class Bucket(BaseModel):
    name: str
    location: str | None = None
    storage_class: str | None = None
    time_created: dt.datetime | None = None


class Blob(BaseModel):
    bucket: str
    name: str
    size: int
    etag: str | None = None
    generation: int | None = None
    md5_hash: str | None = None
    content_type: str | None = None
    storage_class: str | None = None
    updated: dt.datetime


def build_streams(config: GcpConfig, paginator: tapyard.Paginator) -> list[tapyard.Stream]:
    """The streams this configuration enables: the object streams need a bucket."""
    streams: list[tapyard.Stream] = [
        GcpStream(name="buckets", schema_model=Bucket, primary_key=("name",), paginator=paginator,
                  deletes="listing", description="Buckets of the project."),
    ]
    if config.bucket:
        streams += [
            GcpStream(name="blobs", schema_model=Blob, primary_key=("bucket", "name"), cursor_field="updated",
                      ordered_by_cursor=False, deletes="listing",
                      paginator=paginator, description="Objects under the prefix."),
            GcpStream(name="blob_records", schema_model=record_model("GcsRecord", config.record_schema),
                      primary_key=("source_key", "source_line"), cursor_field="source_last_modified",
                      paginator=paginator, ordered_by_cursor=False, deletes="none",
                      description="Rows of the CSV, JSON Lines and Parquet objects under the prefix."),
        ]
    return streams
