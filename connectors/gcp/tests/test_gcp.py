"""The GCP connector against fake-gcs-server: cassettes replayed offline, and the
same scenario live against the emulator.

The scenario: a bucket with CSV, JSON Lines and Parquet objects (a bad row in
each text file, an unreadable Parquet object, a file of another format, an
object outside the prefix) and a second bucket; a full sync; then an object
changed and one added, and an incremental sync that must fetch only those; a
missing bucket. ``TAPYARD_RECORD=all`` re-records the cassettes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tapyard.testing import ObjectStoreScenario, faulty, seeded_objects

pytest.importorskip("pyarrow", reason="the scenario has Parquet objects: pip install pyarrow (the parquet extra)")


class Scenario(ObjectStoreScenario):
    connector, location = "gcp", "bucket"
    objects, key, records = "blobs", "name", "blob_records"
    full_counts = {"buckets": (2, 0), "blobs": (5, 0), "blob_records": (6, 4)}
    incremental_objects = 3  # the changed, the new, and readme.txt, at the cursor (milliseconds)
    cassette_dir = Path(__file__).resolve().parents[3] / "cassettes" / "gcp"
    #: The port is left out of matching: cassettes are recorded against the emulator on a free port.
    vcr_options = {"match_on": ["method", "scheme", "host", "path", "query"]}
    #: the fake-gcs-server the cassettes were recorded against: objects are downloaded from the mediaLink
    #: each listing names, on that address, which the manifest then allows ({config.endpoint_url})
    replay_endpoint = "http://127.0.0.1:50855"
    settle_s = 5.1  # milliseconds: past readme.txt's

    def config(self, endpoint: str, **extra: Any) -> dict[str, Any]:
        return {
            "endpoint_url": endpoint, "project": "test-project", "bucket": "data", "prefix": "in/",
            "page_size": 2, "retry_initial_s": 0.05, "retry_deadline_s": 10, **extra,
        }

    def seed(self, endpoint: str) -> None:
        gcs = client(endpoint)
        gcs.create_bucket("data")
        gcs.create_bucket("logs")
        self.put(endpoint, seeded_objects())

    def put(self, endpoint: str, objects: Iterable[tuple[str, bytes]]) -> None:
        data = client(endpoint).bucket("data")
        for name, body in objects:
            data.blob(name).upload_from_string(body)


SCENARIO = Scenario()


def client(endpoint: str) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project="test-project", credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint})


def fault(status: int, reason: str) -> dict[str, Any]:
    """A reply as Cloud Storage's JSON API words an error."""
    body = json.dumps({"error": {"code": status, "message": reason, "errors": [{"reason": reason}]}})
    return faulty(status, body, {"Content-Type": "application/json; charset=UTF-8"})


# -- live against fake-gcs-server ------------------------------------------------------


@pytest.fixture
def fresh_gcs(gcs_endpoint: str) -> Iterator[str]:
    """A fake-gcs-server of the test's own: the scenario counts every bucket of the
    project, and other tests leave theirs in the session's server."""
    from tapyard_gcp.testing import fake_gcs_server

    with fake_gcs_server() as endpoint:
        yield endpoint


def test_live_against_fake_gcs(fresh_gcs: str, tmp_path: Path) -> None:
    SCENARIO.run(fresh_gcs, tmp_path / "live.db")


@pytest.mark.record
def test_record_cassettes(fresh_gcs: str, tmp_path: Path) -> None:
    SCENARIO.run(fresh_gcs, tmp_path / "record.db", record=True)


# -- replay, offline -------------------------------------------------------------------


def test_replay_full_then_incremental(tmp_path: Path) -> None:
    SCENARIO.replay_full_then_incremental(tmp_path)


def test_replay_missing_bucket_is_one_clear_line(tmp_path: Path) -> None:
    SCENARIO.replay_missing_location_on_the_cli(tmp_path)


def test_replay_throttling_and_5xx_are_retried(tmp_path: Path) -> None:
    result = SCENARIO.replay_with_faults(tmp_path, [
        ("/b/data/o?", fault(503, "backendError")), ("in%2Fa.csv", fault(429, "rateLimitExceeded")),
    ])
    assert result.http["retries"] >= 2
    assert result.http["throttled"] >= 1


def test_replay_wrong_credentials_are_an_authentication_error(tmp_path: Path) -> None:
    SCENARIO.replay_refused(
        tmp_path, "/b/data/o?", fault(401, "Invalid Credentials"),
        "google refused the credentials (HTTP 401) to list bucket 'data'",
    )


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
    with SCENARIO.replay("full.yaml"):
        result = SCENARIO.sync(SCENARIO.replay_endpoint, tmp_path / "t.db", serial=True, streams=["blobs"])
    assert result.ok
    assert [t.name for t in started if t.is_alive()] == []
    assert not [t.name for t in started if "_fetch_background" in t.name or "_verify_existence" in t.name]


def test_listing_needs_no_sdk_import() -> None:
    SCENARIO.assert_listing_imports_no("google.cloud.storage")
