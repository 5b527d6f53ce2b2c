"""The Azure connector against Azurite: cassettes replayed offline, and the same
scenario live against Azurite.

The scenario: a container with CSV, JSON Lines and Parquet blobs (a bad row in
each text file, an unreadable Parquet blob, a file of another format, a blob
outside the prefix) and an empty second container; a full sync; then a blob
changed and one added, and an incremental sync that must fetch only those; a
missing container; a wrong account key (Azurite checks SharedKey signatures).
``TAPYARD_RECORD=all`` re-records the cassettes.
"""

from __future__ import annotations

import contextlib
import io
import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

import tapyard
from tapyard.cli import main
from tapyard.testing import ObjectStoreScenario, cassettes, faulty, seeded_objects
from tapyard.testing import sqlite_rows as rows

pytest.importorskip("pyarrow", reason="the scenario has Parquet objects: pip install pyarrow (the parquet extra)")

WRONG_KEY = "d3JvbmcgYWNjb3VudCBrZXkgZm9yIHRlc3Rz" * 2
WRONG_KEY_ERROR = "azure refused the credentials (AuthorizationFailure) to list container 'data'"


class Scenario(ObjectStoreScenario):
    connector, location = "azure", "container"
    objects, key, records = "blobs", "name", "blob_records"
    full_counts = {"containers": (3, 0), "blobs": (5, 0), "blob_records": (6, 4)}
    incremental_objects = 4  # the changed, the new, and the two at the cursor
    cassette_dir = Path(__file__).resolve().parents[3] / "cassettes" / "azure"
    #: The port is left out of matching: cassettes are recorded against Azurite on a free port.
    vcr_options = {"match_on": ["method", "scheme", "host", "path", "query"]}
    replay_endpoint = "http://127.0.0.1:10055/devstoreaccount1"

    def config(self, endpoint: str, **extra: Any) -> dict[str, Any]:
        # the endpoint is in the credential's connection string
        return {"container": "data", "prefix": "in/", "page_size": 2, "max_attempts": 4, "retry_backoff_s": 0.1, **extra}

    def credentials(self, endpoint: str, key: str | None = None) -> tapyard.Credentials:
        from tapyard_azure import AzureConnectionStringAuth

        return AzureConnectionStringAuth.Options(connection_string=connection_string(endpoint, key))

    def seed(self, endpoint: str) -> None:
        svc = service(endpoint)
        for name in ("data", "logs", "more"):
            with contextlib.suppress(Exception):
                svc.delete_container(name)
        for name in ("data", "logs", "more"):
            svc.create_container(name)
        self.put(endpoint, seeded_objects())

    def put(self, endpoint: str, objects: Iterable[tuple[str, bytes]]) -> None:
        data = service(endpoint).get_container_client("data")
        for name, body in objects:
            data.upload_blob(name, body, overwrite=True)

    def check_full(self, result: Any, db: Path) -> None:
        super().check_full(result, db)
        assert [n for (n,) in rows(db, "SELECT name FROM containers ORDER BY name")] == ["data", "logs", "more"]

    def run(self, endpoint: str, db: Path, *, record: bool = False) -> None:
        """The shared scenario, then a wrong account key (Azurite checks SharedKey signatures)."""
        super().run(endpoint, db, record=record)
        recorded = cassettes(self.cassette_dir, mode="record" if record else "live", **self.vcr_options)
        with recorded("wrong_key.yaml"):
            wrong = self.sync(endpoint, Path(f"{db}.wrong"), serial=record, streams=["blobs"],
                              credentials=self.credentials(endpoint, WRONG_KEY))
        assert wrong.streams[0].error == WRONG_KEY_ERROR


SCENARIO = Scenario()


def connection_string(endpoint: str, key: str | None = None) -> str:
    from tapyard_azure.testing import connection_string as build

    return build(endpoint, key) if key else build(endpoint)


def service(endpoint: str) -> Any:
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient.from_connection_string(connection_string(endpoint))


def fault(status: int, code: str) -> dict[str, Any]:
    """A reply as Blob Storage words an error: the code in the body and in x-ms-error-code."""
    body = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>fault</Message></Error>'
    return faulty(status, body, {
        "Content-Type": "application/xml", "x-ms-error-code": code, "x-ms-request-id": str(uuid.uuid4()),
    })


# -- live against Azurite --------------------------------------------------------------


def test_live_against_azurite(azurite_endpoint: str, tmp_path: Path) -> None:
    SCENARIO.run(azurite_endpoint, tmp_path / "live.db")


@pytest.mark.record
def test_record_cassettes(azurite_endpoint: str, tmp_path: Path) -> None:
    SCENARIO.run(azurite_endpoint, tmp_path / "record.db", record=True)


# -- replay, offline -------------------------------------------------------------------


def test_replay_full_then_incremental(tmp_path: Path) -> None:
    SCENARIO.replay_full_then_incremental(tmp_path)


def test_replay_missing_container_and_wrong_key(tmp_path: Path) -> None:
    endpoint = SCENARIO.replay_endpoint
    with SCENARIO.replay("missing_container.yaml"):
        missing = SCENARIO.sync(endpoint, tmp_path / "m.db", serial=True, streams=["blobs"], container="no-such-container")
    assert missing.streams[0].error == "container 'no-such-container' does not exist"
    with SCENARIO.replay("wrong_key.yaml"):
        wrong = SCENARIO.sync(endpoint, tmp_path / "w.db", serial=True, streams=["blobs"],
                              credentials=SCENARIO.credentials(endpoint, WRONG_KEY))
    assert wrong.streams[0].error == WRONG_KEY_ERROR
    assert rows(tmp_path / "w.db", "SELECT count(*) FROM blobs") == [(0,)]


def test_cli_with_a_vault_credential_prints_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from tapyard_credentials import generate_key

    monkeypatch.setenv("TAPYARD_VAULT_KEY", generate_key())
    secret = json.dumps({"connection_string": connection_string(SCENARIO.replay_endpoint)})
    monkeypatch.setattr("sys.stdin", io.StringIO(secret))
    assert main(["creds", "add", "azurite", "--connector", "azure", "--kind", "azure_connection_string", "--from-json", "-"]) == 0
    capsys.readouterr()
    SCENARIO.replay_missing_location_on_the_cli(tmp_path, "--creds", "azurite")


def test_replay_throttling_and_5xx_are_retried(tmp_path: Path) -> None:
    result = SCENARIO.replay_with_faults(tmp_path, [
        ("prefix=in%2F&restype=container", fault(503, "ServerBusy")), ("in/a.csv", fault(500, "InternalError")),
    ])
    assert result.http["retries"] >= 2
    assert result.http["throttled"] >= 1


def test_listing_needs_no_sdk_import() -> None:
    SCENARIO.assert_listing_imports_no("azure")
