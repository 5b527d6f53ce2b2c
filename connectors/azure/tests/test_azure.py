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
import copy
import io
import json
import time
import uuid
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

CASSETTES = Path(__file__).resolve().parents[3] / "cassettes" / "azure"
#: The port is left out of matching: cassettes are recorded against Azurite on a free port.
OPTIONS: dict[str, Any] = {"match_on": ["method", "scheme", "host", "path", "query"]}
REPLAY_ENDPOINT = "http://127.0.0.1:10055/devstoreaccount1"
#: vcrpy is not thread-safe: runs under a cassette read one stream at a time.
SERIAL = {"concurrency": 1}
WRONG_KEY = "d3JvbmcgYWNjb3VudCBrZXkgZm9yIHRlc3Rz" * 2



def connection_string(endpoint: str, key: str | None = None) -> str:
    from tapyard_azure.testing import connection_string as build

    return build(endpoint, key) if key else build(endpoint)


def creds(endpoint: str, key: str | None = None) -> tapyard.Credentials:
    from tapyard_azure import AzureConnectionStringAuth

    text = connection_string(endpoint, key)
    return AzureConnectionStringAuth.Options(connection_string=text)


def config(**extra: Any) -> dict[str, Any]:
    return {"container": "data", "prefix": "in/", "page_size": 2, "max_attempts": 4, "retry_backoff_s": 0.1, **extra}


def service(endpoint: str) -> Any:
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient.from_connection_string(connection_string(endpoint))


def seed(endpoint: str) -> None:
    svc = service(endpoint)
    for name in ("data", "logs", "more"):
        with contextlib.suppress(Exception):
            svc.delete_container(name)
    data = svc.create_container("data")
    svc.create_container("logs")
    svc.create_container("more")
    for name, body in seeded_objects():
        data.upload_blob(name, body, overwrite=True)


def change(endpoint: str) -> None:
    time.sleep(1.1)  # listings give seconds: the changes must be in a later second
    data = service(endpoint).get_container_client("data")
    for name, body in CHANGED_OBJECTS.items():
        data.upload_blob(name, body, overwrite=True)


def check_full(result: tapyard.SyncResult, db: Path) -> None:
    assert result.ok, [(s.name, s.error) for s in result.streams]
    counts = {s.name: (s.records, s.dead_letters) for s in result.streams}
    assert counts == {"containers": (3, 0), "blobs": (5, 0), "blob_records": (6, 4)}
    assert [n for (n,) in rows(db, "SELECT name FROM containers ORDER BY name")] == ["data", "logs", "more"]
    check_seeded(db, "blobs", "name", "blob_records")


def check_incremental(result: tapyard.SyncResult, db: Path) -> None:
    assert result.ok, [(s.name, s.error) for s in result.streams]
    assert {s.name: s.records for s in result.streams} == {"blobs": 4, "blob_records": 4}  # and the two at the cursor
    check_changed(db, "blobs", "blob_records")


def run_scenario(endpoint: str, db: Path, record: bool) -> None:
    """Seed Azurite, sync, change, sync again, then the bad inputs; with ``record``, into cassettes."""

    recorded = cassettes(CASSETTES, mode="record" if record else "live", **OPTIONS)

    serial = SERIAL if record else {}
    seed(endpoint)
    # A pass commits no cursor later than the store's clock when it began, less
    # tapyard.files.CLOCK_MARGIN_S and the Date header's truncation: the first sync
    # starts late enough for its cursor to reach the last seeded object.
    time.sleep(4.1)  # (with a first request slow by up to a second)
    with recorded("full.yaml"):
        full = tapyard.sync("azure", config(), to=f"sqlite:///{db}", credentials=creds(endpoint), **serial)
    check_full(full, db)
    change(endpoint)
    with recorded("incremental.yaml"):
        incremental = tapyard.sync(
            "azure", config(), to=f"sqlite:///{db}", credentials=creds(endpoint),
            streams=["blobs", "blob_records"], **serial,
        )
    check_incremental(incremental, db)
    with recorded("missing_container.yaml"):
        missing = tapyard.sync(
            "azure", config(container="no-such-container"), to=f"sqlite:///{db}.missing",
            credentials=creds(endpoint), streams=["blobs"], **serial,
        )
    assert missing.streams[0].error == "container 'no-such-container' does not exist"
    with recorded("wrong_key.yaml"):
        wrong = tapyard.sync(
            "azure", config(), to=f"sqlite:///{db}.wrong", credentials=creds(endpoint, WRONG_KEY),
            streams=["blobs"], **serial,
        )
    assert wrong.streams[0].error == "azure refused the credentials (AuthorizationFailure) to list container 'data'"


# -- live against Azurite --------------------------------------------------------------


def test_live_against_azurite(azurite_endpoint: str, tmp_path: Path) -> None:
    run_scenario(azurite_endpoint, tmp_path / "live.db", record=False)


@pytest.mark.record
def test_record_cassettes(azurite_endpoint: str, tmp_path: Path) -> None:
    run_scenario(azurite_endpoint, tmp_path / "record.db", record=True)


# -- replay, offline -------------------------------------------------------------------


replay = cassettes(CASSETTES, **OPTIONS)


def test_replay_full_then_incremental(tmp_path: Path) -> None:
    db = tmp_path / "replay.db"
    with replay("full.yaml"):
        check_full(tapyard.sync("azure", config(), to=f"sqlite:///{db}", credentials=creds(REPLAY_ENDPOINT), **SERIAL), db)
    with replay("incremental.yaml"):
        result = tapyard.sync(
            "azure", config(), to=f"sqlite:///{db}", credentials=creds(REPLAY_ENDPOINT),
            streams=["blobs", "blob_records"], **SERIAL,
        )
    check_incremental(result, db)


def test_replay_missing_container_and_wrong_key(tmp_path: Path) -> None:
    with replay("missing_container.yaml"):
        missing = tapyard.sync(
            "azure", config(container="no-such-container"), to=f"sqlite:///{tmp_path}/m.db",
            credentials=creds(REPLAY_ENDPOINT), streams=["blobs"], **SERIAL,
        )
    assert missing.streams[0].error == "container 'no-such-container' does not exist"
    with replay("wrong_key.yaml"):
        wrong = tapyard.sync(
            "azure", config(), to=f"sqlite:///{tmp_path}/w.db", credentials=creds(REPLAY_ENDPOINT, WRONG_KEY),
            streams=["blobs"], **SERIAL,
        )
    assert wrong.streams[0].error == "azure refused the credentials (AuthorizationFailure) to list container 'data'"
    assert rows(tmp_path / "w.db", "SELECT count(*) FROM blobs") == [(0,)]


def test_cli_with_a_vault_credential_prints_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from tapyard_credentials import generate_key

    monkeypatch.setenv("TAPYARD_VAULT_KEY", generate_key())
    secret = json.dumps({"connection_string": connection_string(REPLAY_ENDPOINT)})
    monkeypatch.setattr("sys.stdin", io.StringIO(secret))
    assert main(["creds", "add", "azurite", "--connector", "azure", "--kind", "azure_connection_string", "--from-json", "-"]) == 0
    capsys.readouterr()
    with replay("missing_container.yaml"):
        code = main([
            "sync", "azure", "--creds", "azurite", "--streams", "blobs", "--to", f"sqlite:///{tmp_path}/c.db",
            "-c", json.dumps(config(container="no-such-container")),
        ])
    err = capsys.readouterr().err
    assert code == 1
    assert "container 'no-such-container' does not exist" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def _fault(interaction: dict[str, Any], status: int, code: str) -> dict[str, Any]:
    fault = copy.deepcopy(interaction)
    body = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>fault</Message></Error>'
    fault["response"] = {
        "status": {"code": status, "message": "fault"},
        "headers": {
            "Content-Type": ["application/xml"],
            "Content-Length": [str(len(body))],
            "x-ms-error-code": [code],
            "x-ms-request-id": [str(uuid.uuid4())],
        },
        "body": {"string": body},
    }
    return fault


def test_replay_throttling_and_5xx_are_retried(tmp_path: Path) -> None:
    data = yaml.safe_load((CASSETTES / "full.yaml").read_text())
    interactions = data["interactions"]
    for needle, status, code in (("prefix=in%2F&restype=container", 503, "ServerBusy"), ("in/a.csv", 500, "InternalError")):
        index = next(i for i, x in enumerate(interactions) if needle in x["request"]["uri"])
        interactions.insert(index, _fault(interactions[index], status, code))
    path = tmp_path / "faults.yaml"
    path.write_text(yaml.safe_dump(data))
    db = tmp_path / "faults.db"
    with replay(path):
        result = tapyard.sync("azure", config(), to=f"sqlite:///{db}", credentials=creds(REPLAY_ENDPOINT), **SERIAL)
    check_full(result, db)
    assert result.http["retries"] >= 2
    assert result.http["throttled"] >= 1


def test_listing_needs_no_sdk_import() -> None:
    import subprocess
    import sys

    code = "import tapyard; tapyard.collect_connectors(); import sys; print(any(m.startswith('azure') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
