"""Configuration and record models of the AWS connector (no boto3 here)."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from pydantic import BaseModel, Field

import tapyard
from tapyard.files import record_model
from tapyard.sources import ObjectStoreConfig

__all__ = ["STREAM_NAMES", "AwsConfig", "AwsStream", "build_streams"]

STREAM_NAMES = ("s3_buckets", "s3_objects", "s3_records", "dynamodb_items", "iam_users", "ec2_instances")


class AwsConfig(ObjectStoreConfig):
    """Configuration of the AWS connector."""

    words: ClassVar[dict[str, str]] = {"objects": "objects", "key": "key", "records": "s3_records"}
    url_fields: ClassVar[frozenset[str]] = frozenset({"endpoint_url"})

    region: str = Field("us-east-1", description="The region of the clients (EC2 instances are listed in it).")
    endpoint_url: str | None = Field(
        None, description="Send every request here instead of AWS (an emulator such as moto)."
    )
    bucket: str | None = Field(None, description="The bucket of s3_objects and s3_records (they need one).")
    dynamodb_tables: list[str] = Field([], description="Tables that dynamodb_items scans (it needs one).")
    scan_segments: int = Field(4, ge=1, le=64, description="Parallel Scan segments per table.")
    page_size: int = Field(1000, ge=1, le=1000, description="Items asked for per request.")
    max_attempts: int = Field(
        8, ge=1, le=20, description="Attempts per request (tapyard's SDK-call path: throttling, 5xx, connection failures)."
    )
    requests_per_second: float | None = Field(
        None, gt=0, description="Client-side rate limit shared by every worker of one credential."
    )
    connect_timeout_s: float = Field(10, gt=0, le=300)
    read_timeout_s: float = Field(60, gt=0, le=3600)


class AwsStream(tapyard.Stream):
    """A stream of the AWS connector: the boto3 operation it pages through."""

    operation: str = ""
    service: str = ""
    paginator: tapyard.Paginator | None = None


class Bucket(BaseModel):
    name: str
    creation_date: dt.datetime | None = None


class S3Object(BaseModel):
    bucket: str
    key: str
    size: int
    etag: str
    last_modified: dt.datetime
    storage_class: str | None = None


class DynamoItem(BaseModel):
    table: str
    key: str = Field(description="The item's key attributes as canonical JSON.")
    item: dict[str, Any]


class IamUser(BaseModel):
    user_id: str
    user_name: str
    arn: str
    path: str
    create_date: dt.datetime
    password_last_used: dt.datetime | None = None
    tags: dict[str, str] = {}


class Ec2Instance(BaseModel):
    instance_id: str
    region: str
    instance_type: str | None = None
    state: str | None = None
    image_id: str | None = None
    launch_time: dt.datetime | None = None
    private_ip_address: str | None = None
    public_ip_address: str | None = None
    vpc_id: str | None = None
    subnet_id: str | None = None
    tags: dict[str, str] = {}


def build_streams(config: AwsConfig, paginator: tapyard.Paginator) -> list[tapyard.Stream]:
    """The streams this configuration enables: the S3 object streams need a bucket,
    dynamodb_items needs tables; the others are always there."""
    streams: list[tapyard.Stream] = [
        AwsStream(name="s3_buckets", schema_model=Bucket, primary_key=("name",), service="s3",
                  operation="list_buckets", paginator=paginator, deletes="listing",
                  description="S3 buckets of the account."),
    ]
    if config.bucket:
        streams += [
            AwsStream(name="s3_objects", schema_model=S3Object, primary_key=("bucket", "key"),
                      cursor_field="last_modified", service="s3", operation="list_objects_v2",
                      ordered_by_cursor=False, deletes="listing",
                      paginator=paginator, description="Objects under the prefix."),
            AwsStream(name="s3_records", schema_model=record_model("S3Record", config.record_schema),
                      primary_key=("source_key", "source_line"), cursor_field="source_last_modified",
                      service="s3", operation="list_objects_v2", paginator=paginator,
                      ordered_by_cursor=False, deletes="none",
                      description="Rows of the CSV, JSON Lines and Parquet objects under the prefix."),
        ]
    if config.dynamodb_tables:
        streams.append(
            AwsStream(name="dynamodb_items", schema_model=DynamoItem, primary_key=("table", "key"),
                      service="dynamodb", operation="scan", paginator=paginator, deletes="listing",
                      description="Items of the tables, by parallel Scan.")
        )
    streams += [
        AwsStream(name="iam_users", schema_model=IamUser, primary_key=("user_id",), service="iam",
                  operation="list_users", paginator=paginator, deletes="listing", description="IAM users."),
        AwsStream(name="ec2_instances", schema_model=Ec2Instance, primary_key=("instance_id",),
                  service="ec2", operation="describe_instances", paginator=paginator, deletes="listing",
                  description="EC2 instances of the region."),
    ]
    return streams
