"""The AWS connector against moto: cassettes replayed offline, and the same
scenario live against moto's server.

The scenario: a bucket with CSV, JSON Lines and Parquet objects (one bad row in
each text file, one unreadable Parquet object, a file of another format, an
object outside the prefix), a DynamoDB table, IAM users and EC2 instances; a
full sync; then an object changed and one added, and an incremental sync that
must fetch only those. ``TAPYARD_RECORD=all`` re-records the cassettes.
"""

from __future__ import annotations

import copy
import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

import tapyard
from tapyard.testing import ObjectStoreScenario, faulty, first_interaction, seeded_objects
from tapyard.testing import sqlite_rows as rows

pytest.importorskip("pyarrow", reason="the scenario has Parquet objects: pip install pyarrow (the parquet extra)")

USER_TAGS = {
    "alice": {"team": "data", "cost-center": "4711", "env": "prod", "owner": "alice@example.test", "empty": ""},
    "bob": {"name": "Zoe\u0301 \U0001f680 \u05e2\u05d1\u05e8\u05d9\u05ea"},
}


class Scenario(ObjectStoreScenario):
    """The shared scenario, with a DynamoDB table, IAM users and EC2 instances beside the bucket."""

    connector, location = "aws", "bucket"
    objects, key, records = "s3_objects", "key", "s3_records"
    full_counts = {
        "s3_buckets": (1, 0),
        "s3_objects": (5, 0),
        "s3_records": (6, 4),
        "dynamodb_items": (7, 0),
        "iam_users": (3, 0),
        "ec2_instances": (3, 0),
    }
    incremental_objects = 4  # the changed, the new, and the two at the cursor
    cassette_dir = Path(__file__).resolve().parents[3] / "cassettes" / "aws"
    #: The port is left out of matching: cassettes are recorded against moto on a free port.
    #: vcrpy 9.4 cannot filter form bodies whose Content-Type header botocore sets as
    #: bytes (TypeError in vcr.filters._multipart_boundary), so the form filter is off;
    #: IAM and EC2 form bodies carry no credential, and the scrubbers still run on them.
    vcr_options = {
        "match_on": ["method", "scheme", "host", "path", "query", "body"], "filter_post_data_parameters": [],
    }
    replay_endpoint = "http://127.0.0.1:5055"

    def config(self, endpoint: str, **extra: Any) -> dict[str, Any]:
        return {
            "endpoint_url": endpoint,
            "bucket": "data",
            "prefix": "in/",
            "dynamodb_tables": ["items"],
            "scan_segments": 2,
            "page_size": 2,
            "max_attempts": 4,
            **extra,
        }

    def seed(self, endpoint: str) -> None:
        import boto3

        from tapyard_aws.testing import dynamodb_table

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="data")
        self.put(endpoint, seeded_objects())
        dynamodb_table(endpoint, "items", [{"pk": {"S": f"k{i}"}, "n": {"N": str(i)}, "tags": {"SS": ["a", "b"]}} for i in range(7)])
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
        for name in ("alice", "bob", "carol"):
            iam.create_user(UserName=name)
        for name, tags in USER_TAGS.items():  # ListUsers leaves tags out; 5 take 3 pages of ListUserTags
            iam.tag_user(UserName=name, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1")
        ec2.run_instances(ImageId="ami-12c6146b", MinCount=3, MaxCount=3, InstanceType="t3.micro")

    def put(self, endpoint: str, objects: Iterable[tuple[str, bytes]]) -> None:
        import boto3

        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        for key, body in objects:
            s3.put_object(Bucket="data", Key=key, Body=body)

    def check_full(self, result: Any, db: Path) -> None:
        super().check_full(result, db)
        items = rows(db, "SELECT key, item FROM dynamodb_items ORDER BY key")
        assert [k for k, _ in items] == [f'{{"pk":"k{i}"}}' for i in range(7)]
        assert json.loads(items[3][1]) == {"pk": "k3", "n": 3, "tags": ["a", "b"]}
        users = {n: json.loads(t) for n, t in rows(db, "SELECT user_name, tags FROM iam_users")}
        assert users == {**USER_TAGS, "carol": {}}
        assert rows(db, "SELECT DISTINCT instance_type, state FROM ec2_instances") == [("t3.micro", "running")]


SCENARIO = Scenario()


def config(endpoint: str, **extra: Any) -> dict[str, Any]:
    return SCENARIO.config(endpoint, **extra)


def fault(status: int, body: str, content_type: str) -> dict[str, Any]:
    return faulty(status, body, {"Content-Type": content_type})


# -- live against moto ---------------------------------------------------------------


@pytest.fixture
def fresh_moto(moto_endpoint: str) -> str:
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(moto_endpoint + "/moto-api/reset", method="POST"), timeout=10)
    return moto_endpoint


def test_live_against_moto(fresh_moto: str, tmp_path: Path) -> None:
    SCENARIO.run(fresh_moto, tmp_path / "live.db")


def test_deleted_dynamodb_items_and_iam_users_are_marked(fresh_moto: str, tmp_path: Path) -> None:
    """DynamoDB items (read in two Scan segments, each its own partition) and IAM
    users deleted at the source are marked ``_tapyard_deleted_at`` by the next
    complete listing, then removed with ``--hard-delete``."""
    import boto3

    SCENARIO.seed(fresh_moto)
    db = tmp_path / "deletes.db"
    streams = ["dynamodb_items", "iam_users"]
    assert tapyard.sync("aws", config(fresh_moto), to=f"sqlite:///{db}", streams=streams).ok
    boto3.client("dynamodb", endpoint_url=fresh_moto, region_name="us-east-1").delete_item(
        TableName="items", Key={"pk": {"S": "k3"}})
    iam = boto3.client("iam", endpoint_url=fresh_moto, region_name="us-east-1")
    iam.untag_user(UserName="bob", TagKeys=list(USER_TAGS.get("bob", {})))
    iam.delete_user(UserName="bob")
    result = tapyard.sync("aws", config(fresh_moto), to=f"sqlite:///{db}", streams=streams)
    assert result.ok, [(s.name, s.error) for s in result.streams]
    assert {s.name: s.deleted for s in result.streams} == {"dynamodb_items": 1, "iam_users": 1}
    assert rows(db, "SELECT key FROM dynamodb_items WHERE _tapyard_deleted_at IS NOT NULL") == [('{"pk":"k3"}',)]
    assert rows(db, "SELECT user_name FROM iam_users WHERE _tapyard_deleted_at IS NOT NULL") == [("bob",)]
    assert len(rows(db, "SELECT 1 FROM dynamodb_items WHERE _tapyard_deleted_at IS NULL")) == 6
    removed = tapyard.sync("aws", config(fresh_moto), to=f"sqlite:///{db}", streams=streams, hard_delete=True)
    assert {s.name: s.deleted for s in removed.streams} == {"dynamodb_items": 1, "iam_users": 1}
    assert sorted(k for (k,) in rows(db, "SELECT key FROM dynamodb_items")) == [
        f'{{"pk":"k{i}"}}' for i in range(7) if i != 3]
    assert sorted(n for (n,) in rows(db, "SELECT user_name FROM iam_users")) == ["alice", "carol"]


def test_a_saved_token_the_service_refuses_restarts_the_stream(
    fresh_moto: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A resume token the service no longer takes (EC2's NextToken expires; a restarted
    endpoint forgets them all) reads the stream from its first page with a warning, on
    this run, instead of failing it on every run until --full-refresh."""
    import base64
    import logging

    import boto3

    boto3.client("ec2", endpoint_url=fresh_moto, region_name="us-east-1").run_instances(
        ImageId="ami-12c6146b", MinCount=3, MaxCount=3, InstanceType="t3.micro"
    )
    db = tmp_path / "stale.db"
    assert tapyard.sync("aws", config(fresh_moto), to=f"sqlite:///{db}", streams=["ec2_instances"]).ok
    stale = base64.b64encode(json.dumps({"NextToken": "from-before-the-restart"}).encode()).decode()
    state = {"cursor": None, "resume": {"url": "describe_instances", "params": {"StartingToken": stale}}, "pending": None}
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE _tapyard_state SET state = ? WHERE stream = 'ec2_instances'", (json.dumps(state),))
    for _ in range(2):  # this run, and every run after it
        with caplog.at_level(logging.WARNING, logger="tapyard.files"):
            result = tapyard.sync("aws", config(fresh_moto), to=f"sqlite:///{db}", streams=["ec2_instances"])
        assert result.ok, [(s.name, s.error) for s in result.streams]
        assert result.records == 3
    assert [r.getMessage() for r in caplog.records if "refused the saved listing position" in r.getMessage()]


@pytest.mark.record
def test_record_cassettes(fresh_moto: str, tmp_path: Path) -> None:
    SCENARIO.run(fresh_moto, tmp_path / "record.db", record=True)


# -- replay, offline -----------------------------------------------------------------


def test_replay_full_then_incremental(tmp_path: Path) -> None:
    SCENARIO.replay_full_then_incremental(tmp_path)


def test_replay_missing_bucket_is_one_clear_line(tmp_path: Path) -> None:
    SCENARIO.replay_missing_location_on_the_cli(tmp_path)


def test_replay_throttling_and_5xx_are_retried(tmp_path: Path) -> None:
    slowdown = "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
    throttled = '{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate exceeded"}'
    internal = "<ErrorResponse><Error><Code>InternalFailure</Code></Error></ErrorResponse>"
    result = SCENARIO.replay_with_faults(tmp_path, [
        ("list-type=2", fault(503, slowdown, "application/xml")),
        ("ExclusiveStartKey", fault(400, throttled, "application/x-amz-json-1.0")),
        ("Action=ListUsers", fault(500, internal, "text/xml")),
    ])
    assert result.http["retries"] >= 3
    assert result.http["throttled"] >= 2


def test_replay_wrong_credentials_are_an_authentication_error(tmp_path: Path) -> None:
    denied = (
        "<Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided "
        "does not exist in our records.</Message></Error>"
    )
    SCENARIO.replay_refused(
        tmp_path, "list-type=2", fault(403, denied, "application/xml"),
        "aws refused the credentials (InvalidAccessKeyId) to list bucket 'data'",
    )


def test_a_stored_aws_credential_builds_the_session(tmp_path: Path) -> None:
    # Credentials come through the vault's typed model and the auth hook (AwsAuth.session()).
    creds = tapyard.get_connector("aws").credential_model("aws")(
        kind="aws", access_key_id="AKIDEXAMPLEEXAMPLE00", secret_access_key="wJalrXUtnFEMI/K7MDENG", region="us-east-1"
    )
    db = tmp_path / "creds.db"
    with SCENARIO.replay("missing_bucket.yaml"):
        result = SCENARIO.sync(
            SCENARIO.replay_endpoint, db, streams=["s3_objects"], credentials=creds, bucket="no-such-bucket"
        )
    assert result.streams[0].error == "bucket 'no-such-bucket' does not exist"


def test_listing_needs_no_sdk_import() -> None:
    SCENARIO.assert_listing_imports_no("boto3")


def test_replay_user_tags_are_read_through_every_page(tmp_path: Path) -> None:
    """moto answers ListUserTags in one page whatever MaxItems says; IAM pages by
    Marker. Alice's answer is cut into two pages here: all five tags must land."""
    def split(interactions: list[dict[str, Any]]) -> None:
        index = first_interaction(interactions, "Action=ListUserTags&Version=2010-05-08&UserName=alice&MaxItems=2")
        whole = interactions[index]["response"]["body"]["string"]
        head, members, tail = whole.partition("<Tags>")[0], whole.partition("<Tags>")[2].partition("</Tags>")[0], whole.partition("</Tags>")[2]
        parts = [m + "</member>" for m in members.split("</member>") if m]
        assert len(parts) == 5
        first = copy.deepcopy(interactions[index])
        first["response"]["body"]["string"] = (
            head + "<Tags>" + "".join(parts[:2]) + "</Tags>" + tail.replace("<IsTruncated>false</IsTruncated>", "<IsTruncated>true</IsTruncated><Marker>m1</Marker>")
        )
        second = copy.deepcopy(interactions[index])
        second["request"]["body"] = "Action=ListUserTags&Version=2010-05-08&UserName=alice&Marker=m1&MaxItems=2"
        second["response"]["body"]["string"] = head + "<Tags>" + "".join(parts[2:]) + "</Tags>" + tail
        interactions[index : index + 1] = [first, second]

    db = tmp_path / "tags.db"
    with SCENARIO.replay(SCENARIO.edited(tmp_path, "paged_tags.yaml", split)):
        result = SCENARIO.sync(SCENARIO.replay_endpoint, db, serial=True, streams=["iam_users"])
    assert result.ok, [(s.name, s.error) for s in result.streams]
    users = {n: json.loads(t) for n, t in rows(db, "SELECT user_name, tags FROM iam_users")}
    assert users == {**USER_TAGS, "carol": {}}
