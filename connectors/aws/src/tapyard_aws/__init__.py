"""tapyard-aws: S3, DynamoDB, IAM and EC2 through boto3.

Streams: ``s3_buckets``, ``s3_objects`` (incremental on ``last_modified``),
``s3_records`` (the rows inside CSV, JSON Lines and Parquet objects under a
prefix; incremental on the object's modification time), ``dynamodb_items``
(a parallel Scan: each segment of each table is a partition), ``iam_users``
and ``ec2_instances``.

Auth: the stock ``aws`` credential kind (access keys, a named profile, or a
role assumed with either), from the vault with ``--creds``; without one,
boto3's own chain. ``endpoint_url`` points every client at an emulator (moto).

boto3 is imported only when a run opens, so ``tapyard connectors list`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, Field

import tapyard
from tapyard import hookimpl
from tapyard.http import SdkConnector, SdkTokenPaginator

from ._models import STREAM_NAMES, AwsConfig, build_streams

if TYPE_CHECKING:
    from tapyard_aws._source import AwsSource

__all__ = ["AwsConfig", "AwsConnector", "Boto3Paginator", "connector"]


class Boto3Paginator(SdkTokenPaginator):
    """Pages of a boto3 paginator. A position is boto3's resume token
    (``PageIterator.resume_token``), carried as the ``StartingToken`` parameter
    of the saved request; the request's URL names the operation."""

    kind: ClassVar[str] = "aws_boto3"
    token_field: ClassVar[str] = "resume_token"
    token_param: ClassVar[str] = "StartingToken"

    page_size: int = Field(1000, ge=1, le=1000, description="Items asked for per request.")


class AwsConnector(SdkConnector):
    """The AWS connector (boto3)."""

    name = "aws"
    description = "AWS: S3 buckets, objects and the records in CSV/JSONL/Parquet objects, DynamoDB items, IAM users, EC2 instances (boto3)."
    config_model = AwsConfig
    auth_kinds = ("aws",)
    stream_config = {"s3_objects": ("bucket",), "s3_records": ("bucket",), "dynamodb_items": ("dynamodb_tables",)}

    def stream_names(self) -> list[str]:
        return list(STREAM_NAMES)

    def streams(self, config: BaseModel) -> list[tapyard.Stream]:
        assert isinstance(config, AwsConfig)
        return build_streams(config, Boto3Paginator(page_size=config.page_size))

    def source(self, config: BaseModel, context: tapyard.RunContext) -> AwsSource:
        assert isinstance(config, AwsConfig)
        from tapyard_aws._source import AwsSource

        return AwsSource(self, config, context)


connector = AwsConnector()


@hookimpl
def tapyard_register_connectors(register: Callable[[tapyard.Connector], None]) -> None:
    register(connector)


@hookimpl
def tapyard_register_paginators(register: Callable[[str, type[tapyard.Paginator]], None]) -> None:
    register(Boto3Paginator.kind, Boto3Paginator)


#: AWS error codes that mean "slow down".
THROTTLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
