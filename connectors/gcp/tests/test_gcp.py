"""The GCP connector against fake-gcs-server: cassettes replayed offline, and the
same scenario live against the emulator.

The scenario: a bucket with CSV, JSON Lines and Parquet objects (a bad row in
each text file, an unreadable Parquet object, a file of another format, an
object outside the prefix) and a second bucket; a full sync; then an object
changed and one added, and an incremental sync that must fetch only those; a
missing bucket. ``TAPYARD_RECORD=all`` re-records the cassettes.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
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

CASSETTES = Path(__file__).resolve().parents[3] / "cassettes" / "gcp"
#: The port is left out of matching: cassettes are recorded against the emulator on a free port.
OPTIONS: dict[str, Any] = {"match_on": ["method", "scheme", "host", "path", "query"]}
#: the fake-gcs-server the cassettes were recorded against: objects are downloaded from the mediaLink
#: each listing names, on that address, which the manifest then allows ({config.endpoint_url})
REPLAY_ENDPOINT = "http://127.0.0.1:50855"
#: vcrpy is not thread-safe: runs under a cassette read one stream at a time.
SERIAL = {"concurrency": 1}



def config(endpoint: str, **extra: Any) -> dict[str, Any]:
    return {
        "endpoint_url": endpoint, "project": "test-project", "bucket": "data", "prefix": "in/",
        "page_size": 2, "retry_initial_s": 0.05, "retry_deadline_s": 10, **extra,
    }


def client(endpoint: str) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project="test-project", credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint})


def seed(endpoint: str) -> None:
    gcs = client(endpoint)
    data = gcs.create_bucket("data")
    gcs.create_bucket("logs")
    for name, body in seeded_objects():
        data.blob(name).upload_from_string(body)


def change(endpoint: str) -> None:
    time.sleep(1.1)
    data = client(endpoint).bucket("data")
    for name, body in CHANGED_OBJECTS.items():
        data.blob(name).upload_from_string(body)


def check_full(result: tapyard.SyncResult, db: Path) -> None:
    assert result.ok, [(s.name, s.error) for s in result.streams]
    counts = {s.name: (s.records, s.dead_letters) for s in result.streams}
    assert counts == {"buckets": (2, 0), "blobs": (5, 0), "blob_records": (6, 4)}
    check_seeded(db, "blobs", "name", "blob_records")


def check_incremental(result: tapyard.SyncResult, db: Path) -> None:
    assert result.ok, [(s.name, s.error) for s in result.streams]
    assert {s.name: s.records for s in result.streams} == {"blobs": 3, "blob_records": 4}  # and readme.txt, at the cursor (milliseconds)
    check_changed(db, "blobs", "blob_records")


def run_scenario(endpoint: str, db: Path, record: bool) -> None:
    recorded = cassettes(CASSETTES, mode="record" if record else "live", **OPTIONS)

    serial = SERIAL if record else {}
    seed(endpoint)
    # A pass commits no cursor later than the store's clock when it began, less
    # tapyard.files.CLOCK_MARGIN_S and the Date header's truncation: the first sync
    # starts late enough for its cursor to reach the last seeded object.
    time.sleep(5.1)  # (milliseconds: past readme.txt's, with a first request slow by up to a second)
    with recorded("full.yaml"):
        full = tapyard.sync("gcp", config(endpoint), to=f"sqlite:///{db}", **serial)
    check_full(full, db)
    change(endpoint)
    with recorded("incremental.yaml"):
        incremental = tapyard.sync("gcp", config(endpoint), to=f"sqlite:///{db}", streams=["blobs", "blob_records"], **serial)
    check_incremental(incremental, db)
    with recorded("missing_bucket.yaml"):
        missing = tapyard.sync(
            "gcp", config(endpoint, bucket="no-such-bucket"), to=f"sqlite:///{db}.missing", streams=["blobs"], **serial
        )
    assert missing.streams[0].error == "bucket 'no-such-bucket' does not exist"


# -- live against fake-gcs-server ------------------------------------------------------


@pytest.fixture
def fresh_gcs(gcs_endpoint: str) -> Iterator[str]:
    """A fake-gcs-server of the test's own: the scenario counts every bucket of the
    project, and other tests leave theirs in the session's server."""
    from tapyard_gcp.testing import fake_gcs_server

    with fake_gcs_server() as endpoint:
        yield endpoint


def test_live_against_fake_gcs(fresh_gcs: str, tmp_path: Path) -> None:
    run_scenario(fresh_gcs, tmp_path / "live.db", record=False)


@pytest.mark.record
def test_record_cassettes(fresh_gcs: str, tmp_path: Path) -> None:
    run_scenario(fresh_gcs, tmp_path / "record.db", record=True)


# -- replay, offline -------------------------------------------------------------------


replay = cassettes(CASSETTES, **OPTIONS)


def test_replay_full_then_incremental(tmp_path: Path) -> None:
    db = tmp_path / "replay.db"
    with replay("full.yaml"):
        check_full(tapyard.sync("gcp", config(REPLAY_ENDPOINT), to=f"sqlite:///{db}", **SERIAL), db)
    with replay("incremental.yaml"):
        result = tapyard.sync("gcp", config(REPLAY_ENDPOINT), to=f"sqlite:///{db}", streams=["blobs", "blob_records"], **SERIAL)
    check_incremental(result, db)


def test_replay_missing_bucket_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with replay("missing_bucket.yaml"):
        code = main([
            "sync", "gcp", "--streams", "blobs", "--to", f"sqlite:///{tmp_path}/m.db",
            "-c", json.dumps(config(REPLAY_ENDPOINT, bucket="no-such-bucket")),
        ])
    err = capsys.readouterr().err
    assert code == 1
    assert "bucket 'no-such-bucket' does not exist" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def _fault(interaction: dict[str, Any], status: int, reason: str) -> dict[str, Any]:
    fault = copy.deepcopy(interaction)
    body = json.dumps({"error": {"code": status, "message": reason, "errors": [{"reason": reason}]}})
    fault["response"] = {
        "status": {"code": status, "message": reason},
        "headers": {"Content-Type": ["application/json; charset=UTF-8"], "Content-Length": [str(len(body))]},
        "body": {"string": body},
    }
    return fault


def _index(interactions: list[dict[str, Any]], needle: str) -> int:
    return next(i for i, x in enumerate(interactions) if needle in x["request"]["uri"])


def test_replay_throttling_and_5xx_are_retried(tmp_path: Path) -> None:
    data = yaml.safe_load((CASSETTES / "full.yaml").read_text())
    interactions = data["interactions"]
    for needle, status, reason in (("/b/data/o?", 503, "backendError"), ("in%2Fa.csv", 429, "rateLimitExceeded")):
        index = _index(interactions, needle)
        interactions.insert(index, _fault(interactions[index], status, reason))
    path = tmp_path / "faults.yaml"
    path.write_text(yaml.safe_dump(data))
    db = tmp_path / "faults.db"
    with replay(path):
        result = tapyard.sync("gcp", config(REPLAY_ENDPOINT), to=f"sqlite:///{db}", **SERIAL)
    check_full(result, db)
    assert result.http["retries"] >= 2
    assert result.http["throttled"] >= 1


def test_replay_wrong_credentials_are_an_authentication_error(tmp_path: Path) -> None:
    data = yaml.safe_load((CASSETTES / "full.yaml").read_text())
    interactions = data["interactions"]
    index = _index(interactions, "/b/data/o?")
    interactions[index] = _fault(interactions[index], 401, "Invalid Credentials")
    path = tmp_path / "denied.yaml"
    path.write_text(yaml.safe_dump(data))
    db = tmp_path / "denied.db"
    with replay(path):
        result = tapyard.sync("gcp", config(REPLAY_ENDPOINT), to=f"sqlite:///{db}", streams=["blobs"], **SERIAL)
    assert result.streams[0].error == "google refused the credentials (HTTP 401) to list bucket 'data'"
    assert rows(db, "SELECT count(*) FROM blobs") == [(0,)]


def test_no_thread_of_the_sdk_outlives_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # google-cloud-storage 3.x would fetch the bucket's metadata from a daemon
    # thread: a request nobody asked for, still running after the sync returned.
    import threading

    started: list[threading.Thread] = []
    start = threading.Thread.start

    def recording_start(thread: threading.Thread) -> None:
        started.append(thread)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", recording_start)
    with replay("full.yaml"):
        result = tapyard.sync("gcp", config(REPLAY_ENDPOINT), to=f"sqlite:///{tmp_path}/t.db", streams=["blobs"], **SERIAL)
    assert result.ok
    assert [t.name for t in started if t.is_alive()] == []
    assert not [t.name for t in started if "_fetch_background" in t.name or "_verify_existence" in t.name]


def test_listing_needs_no_sdk_import() -> None:
    import subprocess
    import sys

    code = "import tapyard; tapyard.collect_connectors(); import sys; print('google.cloud.storage' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
