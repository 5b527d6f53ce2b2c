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
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import tapyard
from tapyard.cli import main
from tapyard.testing import (
    CHANGED_OBJECTS,
    cassettes,
    check_changed,
    check_seeded,
    seeded_objects,
)
from tapyard.testing import sqlite_rows as rows

pytest.importorskip("pyarrow", reason="the scenario has Parquet objects: pip install pyarrow (the parquet extra)")

CASSETTES = Path(__file__).resolve().parents[3] / "cassettes" / "aws"
#: The port is left out of matching: cassettes are recorded against moto on a free port.
MATCH_ON = ["method", "scheme", "host", "path", "query", "body"]
#: vcrpy 9.4 cannot filter form bodies whose Content-Type header botocore sets as
#: bytes (TypeError in vcr.filters._multipart_boundary), so the form filter is off;
#: IAM and EC2 form bodies carry no credential, and the scrubbers still run on them.
OPTIONS: dict[str, Any] = {"match_on": MATCH_ON, "filter_post_data_parameters": []}
REPLAY_ENDPOINT = "http://127.0.0.1:5055"
#: vcrpy is not thread-safe (interactions recorded from parallel workers get lost or
#: mixed), so runs under a cassette read one stream or partition at a time; the live
#: test reads them concurrently.
SERIAL = {"concurrency": 1}



USER_TAGS = {
    "alice": {"team": "data", "cost-center": "4711", "env": "prod", "owner": "alice@example.test", "empty": ""},
    "bob": {"name": "Zoe\u0301 \U0001f680 \u05e2\u05d1\u05e8\u05d9\u05ea"},
}


def config(endpoint: str, **extra: Any) -> dict[str, Any]:
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


def seed(endpoint: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="data")
    for key, body in seeded_objects():
        s3.put_object(Bucket="data", Key=key, Body=body)
    from tapyard_aws.testing import dynamodb_table

    dynamodb_table(endpoint, "items", [{"pk": {"S": f"k{i}"}, "n": {"N": str(i)}, "tags": {"SS": ["a", "b"]}} for i in range(7)])
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
    for name in ("alice", "bob", "carol"):
        iam.create_user(UserName=name)
    for name, tags in USER_TAGS.items():  # ListUsers leaves tags out; 5 take 3 pages of ListUserTags
        iam.tag_user(UserName=name, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1")
    ec2.run_instances(ImageId="ami-12c6146b", MinCount=3, MaxCount=3, InstanceType="t3.micro")


def change(endpoint: str) -> None:
    import boto3

    time.sleep(1.1)  # S3 listings give seconds: the changes must be in a later second
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    for key, body in CHANGED_OBJECTS.items():
        s3.put_object(Bucket="data", Key=key, Body=body)


def check_full(result: tapyard.SyncResult, db: Path) -> None:
    assert result.ok, [(s.name, s.error) for s in result.streams]
    counts = {s.name: (s.records, s.dead_letters) for s in result.streams}
    assert counts == {
        "s3_buckets": (1, 0),
        "s3_objects": (5, 0),
        "s3_records": (6, 4),
        "dynamodb_items": (7, 0),
        "iam_users": (3, 0),
        "ec2_instances": (3, 0),
    }
    check_seeded(db, "s3_objects", "key", "s3_records")
    items = rows(db, "SELECT key, item FROM dynamodb_items ORDER BY key")
    assert [k for k, _ in items] == [f'{{"pk":"k{i}"}}' for i in range(7)]
    assert json.loads(items[3][1]) == {"pk": "k3", "n": 3, "tags": ["a", "b"]}
    users = {n: json.loads(t) for n, t in rows(db, "SELECT user_name, tags FROM iam_users")}
    assert users == {**USER_TAGS, "carol": {}}
    assert rows(db, "SELECT DISTINCT instance_type, state FROM ec2_instances") == [("t3.micro", "running")]


def check_incremental(result: tapyard.SyncResult, db: Path) -> None:
    assert result.ok, [(s.name, s.error) for s in result.streams]
    counts = {s.name: s.records for s in result.streams}
    assert counts == {"s3_objects": 4, "s3_records": 4}  # the changed, the new, and the two at the cursor
    check_changed(db, "s3_objects", "s3_records")


def run_scenario(endpoint: str, db: Path, record: bool) -> None:
    """Seed moto, sync, change, sync again; with ``record``, into the cassettes."""

    recorded = cassettes(CASSETTES, mode="record" if record else "live", **OPTIONS)

    serial = SERIAL if record else {}
    seed(endpoint)
    # A pass commits no cursor later than the store's clock when it began, less
    # tapyard.files.CLOCK_MARGIN_S and the Date header's truncation: the first sync
    # starts late enough for its cursor to reach the last seeded object.
    time.sleep(4.1)  # (with a first request slow by up to a second)
    with recorded("full.yaml"):
        full = tapyard.sync("aws", config(endpoint), to=f"sqlite:///{db}", **serial)
    check_full(full, db)
    change(endpoint)
    with recorded("incremental.yaml"):
        incremental = tapyard.sync("aws", config(endpoint), to=f"sqlite:///{db}", streams=["s3_objects", "s3_records"], **serial)
    check_incremental(incremental, db)
    with recorded("missing_bucket.yaml"):
        missing = tapyard.sync("aws", config(endpoint, bucket="no-such-bucket"), to=f"sqlite:///{db}.missing", streams=["s3_objects"], **serial)
    assert missing.streams[0].error == "bucket 'no-such-bucket' does not exist"


# -- live against moto ---------------------------------------------------------------


@pytest.fixture
def fresh_moto(moto_endpoint: str) -> str:
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(moto_endpoint + "/moto-api/reset", method="POST"), timeout=10)
    return moto_endpoint


def test_live_against_moto(fresh_moto: str, tmp_path: Path) -> None:
    run_scenario(fresh_moto, tmp_path / "live.db", record=False)


def test_deleted_dynamodb_items_and_iam_users_are_marked(fresh_moto: str, tmp_path: Path) -> None:
    """DynamoDB items (read in two Scan segments, each its own partition) and IAM
    users deleted at the source are marked ``_tapyard_deleted_at`` by the next
    complete listing, then removed with ``--hard-delete``."""
    import boto3

    seed(fresh_moto)
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
    run_scenario(fresh_moto, tmp_path / "record.db", record=True)


# -- replay, offline -----------------------------------------------------------------


replay = cassettes(CASSETTES, **OPTIONS)


def test_replay_full_then_incremental(tmp_path: Path) -> None:
    db = tmp_path / "replay.db"
    with replay("full.yaml"):
        check_full(tapyard.sync("aws", config(REPLAY_ENDPOINT), to=f"sqlite:///{db}", **SERIAL), db)
    with replay("incremental.yaml"):
        result = tapyard.sync("aws", config(REPLAY_ENDPOINT), to=f"sqlite:///{db}", streams=["s3_objects", "s3_records"], **SERIAL)
    check_incremental(result, db)


def test_replay_missing_bucket_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with replay("missing_bucket.yaml"):
        code = main([
            "sync", "aws", "--streams", "s3_objects", "--to", f"sqlite:///{tmp_path}/m.db",
            "-c", json.dumps(config(REPLAY_ENDPOINT, bucket="no-such-bucket")),
        ])
    err = capsys.readouterr().err
    assert code == 1
    assert "bucket 'no-such-bucket' does not exist" in err
    assert "Traceback" not in err
    assert rows(tmp_path / "m.db", "SELECT count(*) FROM s3_objects") == [(0,)]


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((CASSETTES / name).read_text())


def _fault(interaction: dict[str, Any], status: int, body: str, content_type: str) -> dict[str, Any]:
    fault = copy.deepcopy(interaction)
    fault["response"] = {
        "status": {"code": status, "message": "fault"},
        "headers": {"Content-Type": [content_type], "Content-Length": [str(len(body))]},
        "body": {"string": body},
    }
    return fault


def _first(interactions: list[dict[str, Any]], needle: str) -> int:
    for index, interaction in enumerate(interactions):
        request = interaction["request"]
        if needle in request["uri"] or needle in str(request.get("body") or ""):
            return index
    raise AssertionError(f"no interaction with {needle!r}")


def test_replay_throttling_and_5xx_are_retried(tmp_path: Path) -> None:
    data = _load("full.yaml")
    interactions = data["interactions"]
    slowdown = "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
    throttled = '{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate exceeded"}'
    internal = "<ErrorResponse><Error><Code>InternalFailure</Code></Error></ErrorResponse>"
    faults = [
        ("list-type=2", 503, slowdown, "application/xml"),
        ("ExclusiveStartKey", 400, throttled, "application/x-amz-json-1.0"),
        ("Action=ListUsers", 500, internal, "text/xml"),
    ]
    for needle, status, body, content_type in faults:
        index = _first(interactions, needle)
        interactions.insert(index, _fault(interactions[index], status, body, content_type))
    path = tmp_path / "faults.yaml"
    path.write_text(yaml.safe_dump(data))
    db = tmp_path / "faults.db"
    with replay(path):
        result = tapyard.sync("aws", config(REPLAY_ENDPOINT), to=f"sqlite:///{db}", **SERIAL)
    check_full(result, db)
    assert result.http["retries"] >= 3
    assert result.http["throttled"] >= 2


def test_replay_wrong_credentials_are_an_authentication_error(tmp_path: Path) -> None:
    data = _load("full.yaml")
    interactions = data["interactions"]
    index = _first(interactions, "list-type=2")
    denied = (
        "<Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided "
        "does not exist in our records.</Message></Error>"
    )
    interactions[index] = _fault(interactions[index], 403, denied, "application/xml")
    path = tmp_path / "denied.yaml"
    path.write_text(yaml.safe_dump(data))
    db = tmp_path / "denied.db"
    with replay(path):
        result = tapyard.sync("aws", config(REPLAY_ENDPOINT), to=f"sqlite:///{db}", streams=["s3_objects"])
    assert result.streams[0].status == "failed"
    assert result.streams[0].error == "aws refused the credentials (InvalidAccessKeyId) to list bucket 'data'"
    assert rows(db, "SELECT count(*) FROM s3_objects") == [(0,)]


def test_a_stored_aws_credential_builds_the_session(tmp_path: Path) -> None:
    # Credentials come through the vault's typed model and the auth hook (AwsAuth.session()).
    creds = tapyard.get_connector("aws").credential_model("aws")(
        kind="aws", access_key_id="AKIDEXAMPLEEXAMPLE00", secret_access_key="wJalrXUtnFEMI/K7MDENG", region="us-east-1"
    )
    db = tmp_path / "creds.db"
    with replay("missing_bucket.yaml"):
        result = tapyard.sync(
            "aws", config(REPLAY_ENDPOINT, bucket="no-such-bucket"), to=f"sqlite:///{db}",
            streams=["s3_objects"], credentials=creds,
        )
    assert result.streams[0].error == "bucket 'no-such-bucket' does not exist"


def test_listing_needs_no_sdk_import() -> None:
    import subprocess
    import sys

    code = "import tapyard; tapyard.collect_connectors(); import sys; print('boto3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_replay_user_tags_are_read_through_every_page(tmp_path: Path) -> None:
    """moto answers ListUserTags in one page whatever MaxItems says; IAM pages by
    Marker. Alice's answer is cut into two pages here: all five tags must land."""
    data = _load("full.yaml")
    interactions = data["interactions"]
    index = _first(interactions, "Action=ListUserTags&Version=2010-05-08&UserName=alice&MaxItems=2")
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
    path = tmp_path / "paged_tags.yaml"
    path.write_text(yaml.safe_dump(data))
    db = tmp_path / "tags.db"
    with replay(path):
        result = tapyard.sync("aws", config(REPLAY_ENDPOINT), to=f"sqlite:///{db}", streams=["iam_users"], **SERIAL)
    assert result.ok, [(s.name, s.error) for s in result.streams]
    users = {n: json.loads(t) for n, t in rows(db, "SELECT user_name, tags FROM iam_users")}
    assert users == {**USER_TAGS, "carol": {}}
