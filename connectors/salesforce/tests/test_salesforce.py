"""tapyard-salesforce: a live run against the local fake Salesforce
(``tapyard_salesforce.testing``), replays of syncs recorded through
simple-salesforce against it (cassettes/salesforce), fault injection and bad input.

Re-record: ``TAPYARD_RECORD=all .venv/bin/pytest connectors/salesforce/tests -m record``
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import tapyard
from tapyard.testing import cassette
from tapyard_salesforce._connector import SalesforcePassword
from tapyard_salesforce.testing import FakeSalesforce, change, edited, fault, recording
from tapyard_salesforce.testing import password_credentials as password
from tapyard_salesforce.testing import refresh_credentials as refresh

CASSETTES = Path(__file__).parents[3] / "cassettes" / "salesforce"
RECORD_PORT = 8421
CONFIG: dict[str, Any] = {"login_url": f"https://127.0.0.1:{RECORD_PORT}", "batch_size": 200, "retry_backoff_s": 0.01}
F = FakeSalesforce


def _counts(result: tapyard.SyncResult) -> dict[str, int]:
    return {s.name: s.records for s in result.streams}


@pytest.mark.record
def test_record_against_the_fake(tmp_path: Path) -> None:
    with recording(CASSETTES, ("full.yaml", "incremental.yaml"), RECORD_PORT, accounts=450, contacts=30) as org:
        config = {**CONFIG, "ca_bundle": org.ca_bundle}
        db = f"sqlite:///{tmp_path}/sf.db"
        with cassette(CASSETTES / "full.yaml", record_mode="all"):
            first = tapyard.sync("salesforce", config, credentials=password(), to=db, concurrency=1)
        assert first.ok, [s.error for s in first.streams]
        changed = change(org)
        with cassette(CASSETTES / "incremental.yaml", record_mode="all"):
            second = tapyard.sync("salesforce", config, credentials=refresh(), to=db, concurrency=1)
        assert second.ok, [s.error for s in second.streams]
        (CASSETTES / "changed.json").write_text(json.dumps(changed, indent=1) + "\n")


@pytest.mark.record
def test_record_the_conformance_cassette(tmp_path: Path) -> None:
    """What the conformance kit replays (pyproject.toml, [tool.tapyard.conformance.salesforce]): a
    full read, an incremental read right after it (nothing changed), and a read stopped after its
    first page then resumed, against the fake org."""
    path = CASSETTES / "conformance.yaml"
    with recording(CASSETTES, ("conformance.yaml",), RECORD_PORT, accounts=450, contacts=30) as org:
        config = {**CONFIG, "ca_bundle": org.ca_bundle}
        with cassette(path, record_mode="all"):
            db = f"sqlite:///{tmp_path}/full.db"
            full = tapyard.sync("salesforce", config, credentials=password(), to=db, concurrency=1)
            again = tapyard.sync("salesforce", config, credentials=password(), to=db, concurrency=1)
            stopped = f"sqlite:///{tmp_path}/stopped.db"
            tapyard.sync("salesforce", config, credentials=password(), to=stopped, concurrency=1, max_pages=1)
            resumed = tapyard.sync("salesforce", config, credentials=password(), to=stopped, concurrency=1)
    assert full.ok and again.ok and resumed.ok, (full, again, resumed)
    assert not any(s.inserted or s.updated for s in again.streams), [(s.name, s.inserted, s.updated) for s in again.streams]


def test_the_conformance_cassette_replays_a_full_then_an_unchanged_incremental_read(tmp_path: Path) -> None:
    first = _sync(tmp_path, CASSETTES / "conformance.yaml")
    assert first.ok and _counts(first) == {"Account": 450, "Contact": 30}
    with cassette(CASSETTES / "conformance.yaml"):
        again = tapyard.sync("salesforce", CONFIG, credentials=password(), to=f"sqlite:///{tmp_path / 'sf.db'}", concurrency=1)
    assert again.ok and not any(s.inserted or s.updated for s in again.streams)


def _sync(tmp_path: Path, path: Path, credentials: Any = None, db: str = "sf.db") -> tapyard.SyncResult:
    with cassette(path):
        return tapyard.sync("salesforce", CONFIG, credentials=credentials or password(),
                            to=f"sqlite:///{tmp_path / db}", concurrency=1)


def test_replayed_full_sync_then_incremental_with_deletes(tmp_path: Path) -> None:
    first = _sync(tmp_path, CASSETTES / "full.yaml")
    assert first.ok, [s.error for s in first.streams]
    assert _counts(first) == {"Account": 450, "Contact": 30}
    db = sqlite3.connect(tmp_path / "sf.db")
    types = {r[1]: r[2] for r in db.execute("PRAGMA table_info(Account)")}
    assert types["NumberOfEmployees"] == "INTEGER" and types["IsDeleted"] == "INTEGER" and types["Type"] == "TEXT"
    assert db.execute("SELECT AnnualRevenue, Balance__c FROM Account ORDER BY Id LIMIT 1").fetchone() == (
        "123456789012345678", "98765432109876.54")  # the digits Salesforce sent, not a float's
    assert db.execute("SELECT count(*) FROM Account WHERE BillingCity = 'Springfield'").fetchone() == (450,)
    address = json.loads(db.execute("SELECT BillingAddress FROM Account LIMIT 1").fetchone()[0])
    assert address["city"] == "Springfield"
    assert db.execute("SELECT SystemModstamp FROM Account ORDER BY SystemModstamp LIMIT 1").fetchone()[0].startswith("2024-01-01T00:00:01")

    changed = json.loads((CASSETTES / "changed.json").read_text())
    second = _sync(tmp_path, CASSETTES / "incremental.yaml", refresh())
    assert second.ok, [s.error for s in second.streams]
    assert _counts(second) == {"Account": 8, "Contact": 2}  # what changed, and the boundary record read again (>=)
    assert db.execute("SELECT count(*) FROM Account").fetchone() == (455,)
    assert db.execute("SELECT Name FROM Account WHERE Id = ?", (changed["renamed"],)).fetchone() == ("Renamed Account",)
    assert db.execute("SELECT Id FROM Account WHERE IsDeleted").fetchall() == [(changed["deleted"],)]
    assert db.execute("SELECT Email FROM Contact WHERE Id = ?", (changed["contact"],)).fetchone() == ("moved@example.test",)


def _with(tmp_path: Path, name: str, edit: Any) -> Path:
    return edited(CASSETTES / "full.yaml", tmp_path / name, edit)


def _is_query(interaction: dict[str, Any], sobject: str) -> bool:
    uri = interaction["request"]["uri"]
    return "/queryAll/?" in uri and f"+FROM+{sobject}+" in uri


LIMITED = '[{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]'


def test_request_limit_exceeded_and_503_injected_into_a_replay_are_retried(tmp_path: Path) -> None:
    def edit(interactions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for interaction in interactions:
            if _is_query(interaction, "Account"):
                out.append(fault(interaction, 403, LIMITED))
                out.append(fault(interaction, 503, "<html><title>Service Unavailable</title></html>", "text/html"))
            out.append(interaction)
        return out

    result = _sync(tmp_path, _with(tmp_path, "faults.yaml", edit))
    assert result.ok, [s.error for s in result.streams]
    assert _counts(result) == {"Account": 450, "Contact": 30}
    assert result.http["throttled"] == 1 and result.http["server_errors"] == 1 and result.http["retries"] == 2


def test_bad_input_is_one_line_each(tmp_path: Path) -> None:
    invalid = ('[{"message": "\\nSELECT Id, Nope__c\\n ^\\nERROR at Row:1:Column:8\\nNo such column \'Nope__c\' '
               'on entity \'Account\'.", "errorCode": "INVALID_FIELD"}]')
    expired = '[{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]'
    page = "<html><head><title>Salesforce is down for maintenance</title></head><body>back soon</body></html>"

    def edit(interactions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for interaction in interactions:
            if _is_query(interaction, "Account"):
                interaction = fault(interaction, 400, invalid)
            elif _is_query(interaction, "Contact"):
                interaction = fault(interaction, 200, page, "text/html")
            out.append(interaction)
        return out

    result = _sync(tmp_path, _with(tmp_path, "bad.yaml", edit))
    failed = {s.name: s.error or "" for s in result.streams if s.status == "failed"}
    assert failed["Account"].startswith("SOQL query on Account failed: 400: INVALID_FIELD: ")
    assert "No such column 'Nope__c'" in failed["Account"]
    assert failed["Contact"].startswith("GET https://127.0.0.1:8421/services/data/v59.0/queryAll/ returned an HTML page")
    assert "maintenance" in failed["Contact"]

    def revoke(interactions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # every API call says the session is gone, and so does the one after a new login
        return [interactions[0], interactions[0], *(fault(i, 401, expired) for i in interactions[1:] for _ in range(2))]

    with pytest.raises(tapyard.AuthenticationError) as caught:
        _sync(tmp_path, _with(tmp_path, "revoked.yaml", revoke), db="revoked.db")
    message = str(caught.value)
    assert "session is expired or revoked" in message or "was refused: 401" in message
    for text in (*failed.values(), message):
        assert "\n" not in text and F.PASSWORD not in text and "Traceback" not in text


def test_discover_lists_streams_and_missing_credentials_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from tapyard.cli import main

    assert main(["connectors", "list", "--json"]) == 0
    assert "salesforce" in capsys.readouterr().out
    with cassette(CASSETTES / "full.yaml"):
        connector = tapyard.get_connector("salesforce")
        context = tapyard.RunContext(pm=tapyard.get_plugin_manager(), credentials=password())
        with connector.open(connector.parse_config(CONFIG), context) as source:
            streams = {s.name: s for s in source.streams()}
    assert list(streams) == ["Account", "Contact"]
    schema = streams["Contact"].schema_model.model_json_schema()
    assert schema["properties"]["Birthdate"]["anyOf"][0]["format"] == "date"
    assert schema["properties"]["MailingAddress"]["anyOf"][0]["type"] == "object"
    assert streams["Account"].cursor_field == "SystemModstamp" and streams["Account"].primary_key == ("Id",)
    assert main(["sync", "salesforce", "--to", "jsonl:-"]) == 1
    assert "salesforce needs a salesforce_password, oauth2_refresh_token or jwt_bearer credential" in capsys.readouterr().err


def test_live_sync_against_the_fake(tmp_path: Path) -> None:
    org = FakeSalesforce(0, accounts=4500, contacts=30)
    try:
        config = {"login_url": org.url, "ca_bundle": org.ca_bundle, "retry_backoff_s": 0.01}
        db = f"sqlite:///{tmp_path}/live.db"
        first = tapyard.sync("salesforce", config, credentials=password(), to=db, concurrency=2)
        assert first.ok and _counts(first) == {"Account": 4500, "Contact": 30}
        queries = [p for p in org.requests if "/queryAll/" in p]
        assert len(queries) == 4  # Account: 2,000 + 2,000 + 500 through nextRecordsUrl; Contact: 1
        changed = change(org)
        org.revoke_sessions()  # the next call gets INVALID_SESSION_ID: log in again, once
        org.inject(403, LIMITED)
        second = tapyard.sync("salesforce", config, credentials=refresh(), to=db, concurrency=1)
        assert second.ok, [s.error for s in second.streams]
        assert _counts(second) == {"Account": 8, "Contact": 2}
        assert second.http["retries"] == 1
        rows = sqlite3.connect(tmp_path / "live.db")
        assert rows.execute("SELECT Id FROM Account WHERE IsDeleted").fetchall() == [(changed["deleted"],)]
        org.revoke_sessions()
        bad = SalesforcePassword(username=F.USERNAME, password="wrong", client_id=F.CLIENT_ID, client_secret=F.CLIENT_SECRET)
        with pytest.raises(tapyard.AuthenticationError, match=r"was refused: 400; check the credential .*invalid_grant"):
            tapyard.sync("salesforce", config, credentials=bad, to=db)
    finally:
        org.stop()


def test_request_limit_exceeded_live_is_paced_by_the_shared_limiter_and_counted(tmp_path: Path) -> None:
    """The fake org answers a query with REQUEST_LIMIT_EXCEEDED and a Retry-After of
    1 s: every request waits it out, the run finishes, the summary counts it; and a
    rate set for the run keeps the org under it."""
    from tests.test_ratelimit import max_in_window

    org = FakeSalesforce(0, accounts=1000, contacts=10)
    try:
        config = {"login_url": org.url, "ca_bundle": org.ca_bundle, "retry_backoff_s": 0.01}
        tapyard.sync("salesforce", config, credentials=password(), to=f"sqlite:///{tmp_path}/w.db", concurrency=1)
        org.inject(403, LIMITED, headers={"Retry-After": "1"})
        start = len(org.arrivals)
        result = tapyard.sync("salesforce", config, credentials=password(), to=f"sqlite:///{tmp_path}/t.db",
                              concurrency=2)
        assert result.ok, [s.error for s in result.streams]
        assert _counts(result) == {"Account": 1000, "Contact": 10}
        assert result.http["throttled"] == 1 and result.http["retries"] == 1
        arrivals = org.arrivals[start:]
        assert arrivals[1] - arrivals[0] >= 0.95  # nobody went during the hold
        start = len(org.arrivals)
        paced = tapyard.sync("salesforce", {**config, "batch_size": 200}, credentials=password(),
                             to=f"sqlite:///{tmp_path}/r.db", concurrency=2, rate_limit={"rate": 4, "burst": 1})
        assert paced.ok
        arrivals = org.arrivals[start:]
        assert len(arrivals) >= 8 and max_in_window(arrivals, 1.0) <= 5
        assert (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) <= 4 * 1.05
    finally:
        org.stop()
