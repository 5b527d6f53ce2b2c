"""Schema drift against moto: every field the connector yields for what moto
sends, in every stream, has a column of its type; nothing is rejected or changed.
Seeded through boto3 with values that break naive syncs."""

from __future__ import annotations

import urllib.request
from decimal import Decimal
from typing import Any

import pytest

from tapyard.testing import UNICODE, awkward_jsonl, schema_drift

pytest.importorskip("pyarrow", reason="the records stream reads Parquet too: pip install pyarrow")


def seed(endpoint: str) -> None:
    import boto3

    urllib.request.urlopen(urllib.request.Request(endpoint + "/moto-api/reset", method="POST"), timeout=10)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="drift")
    s3.put_object(Bucket="drift", Key=f"in/{UNICODE}.jsonl", Body=awkward_jsonl())
    s3.put_object(Bucket="drift", Key="in/plain.csv", Body=b"id,name\n1,ann\n2,\n")
    ddb = boto3.resource("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    table = ddb.create_table(
        TableName="drift", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
    )
    table.put_item(Item={"pk": "big", "n": Decimal("100000000000000000000"), "d": Decimal("12345678901234806.89"),
                         "s": UNICODE, "m": {"x": Decimal("10.10")}, "l": [Decimal(1), "a"], "b": b"\x00\x01"})
    table.put_item(Item={"pk": "small", "n": Decimal(-1), "empty": ""})
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
    iam.create_user(UserName="drift-user", Path="/team/")
    iam.tag_user(UserName="drift-user", Tags=[{"Key": "name", "Value": UNICODE}, {"Key": "empty", "Value": ""}])
    iam.create_user(UserName="untagged")
    ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1")
    ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="t3.micro",
                      TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": UNICODE}]}])


def test_schema_drift_against_moto(moto_endpoint: str) -> None:
    seed(moto_endpoint)
    config: dict[str, Any] = {"endpoint_url": moto_endpoint, "bucket": "drift", "prefix": "in/",
                              "dynamodb_tables": ["drift"], "page_size": 2}
    assert [str(d) for d in schema_drift("aws", config)] == []
