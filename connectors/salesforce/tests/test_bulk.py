"""tapyard-salesforce through the Bulk API 2.0: replays of query jobs recorded
against the local fake (cassettes/salesforce/bulk*.yaml) compared with the REST
replays of the same org, faults injected while polling, a failed job through
the CLI, and live runs for the threshold, resuming, timeouts and CSV parsing.

Re-record: ``TAPYARD_RECORD=all .venv/bin/pytest connectors/salesforce/tests -m record``
"""

from __future__ import annotations

import io
import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import tapyard
from tapyard.cli import main
from tapyard.testing import cassette
from tapyard_salesforce._bulk import csv_lines, typed_rows
from tapyard_salesforce.testing import (
    FakeSalesforce,
    change,
    edited,
    fault,
    password_credentials,
    recording,
    refresh_credentials,
)

CASSETTES = Path(__file__).parents[3] / "cassettes" / "salesforce"
RECORD_PORT = 8421
CONFIG: dict[str, Any] = {
    "login_url": f"https://127.0.0.1:{RECORD_PORT}", "batch_size": 200, "retry_backoff_s": 0.01,
    "bulk_sobjects": ["Account", "Contact"], "bulk_page_size": 200, "bulk_poll_s": 0.01,
}
#: Bulk queries cannot select compound fields: they are put together from their parts.
COMPOUND = {"Account": ["BillingAddress"], "Contact": ["MailingAddress", "Location__c"]}
LIMITED = '[{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]'


def _counts(result: tapyard.SyncResult) -> dict[str, int]:
    assert result.ok, [s.error for s in result.streams]
    return {s.name: s.records for s in result.streams}


def _sync(tmp_path: Path, path: Path, db: str, credentials: Any = None, **config: Any) -> tapyard.SyncResult:
    with cassette(path):
        return tapyard.sync("salesforce", {**CONFIG, **config}, credentials=credentials or password_credentials(),
                            to=f"sqlite:///{tmp_path / db}", concurrency=1)


@pytest.mark.record
def test_record_bulk_jobs_against_the_fake(tmp_path: Path) -> None:
    # the same seed as full.yaml and incremental.yaml: the same records, so the replays can be compared
    names = ("bulk.yaml", "bulk_incremental.yaml")
    with recording(CASSETTES, names, RECORD_PORT, accounts=450, contacts=30) as org:
        config = {**CONFIG, "ca_bundle": org.ca_bundle}
        db = f"sqlite:///{tmp_path}/sf.db"
        with cassette(CASSETTES / "bulk.yaml", record_mode="all"):
            first = tapyard.sync("salesforce", config, credentials=password_credentials(), to=db, concurrency=1)
        assert _counts(first) == {"Account": 450, "Contact": 30}
        assert change(org) == json.loads((CASSETTES / "changed.json").read_text())
        with cassette(CASSETTES / "bulk_incremental.yaml", record_mode="all"):
            second = tapyard.sync("salesforce", config, credentials=refresh_credentials(), to=db, concurrency=1)
        assert _counts(second) == {"Account": 8, "Contact": 2}
        assert org.jobs == {}  # every job deleted once read


def _rows(db: sqlite3.Connection, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    return db.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY Id").fetchall()


def test_replayed_bulk_sync_gives_the_rest_sync_rows_then_only_changes_with_deletes(tmp_path: Path) -> None:
    assert _counts(_sync(tmp_path, CASSETTES / "bulk.yaml", "bulk.db")) == {"Account": 450, "Contact": 30}
    with cassette(CASSETTES / "full.yaml"):
        rest = tapyard.sync("salesforce", {**CONFIG, "bulk_sobjects": []}, credentials=password_credentials(),
                            to=f"sqlite:///{tmp_path}/rest.db", concurrency=1)
    assert _counts(rest) == {"Account": 450, "Contact": 30}
    bulk_db, rest_db = sqlite3.connect(tmp_path / "bulk.db"), sqlite3.connect(tmp_path / "rest.db")
    for table, compound in COMPOUND.items():
        info = [r[1:3] for r in bulk_db.execute(f"PRAGMA table_info({table})")]
        assert info == [r[1:3] for r in rest_db.execute(f"PRAGMA table_info({table})")]  # the same typed columns
        everything = [name for name, _ in info]
        assert _rows(bulk_db, table, everything) == _rows(rest_db, table, everything)  # and the same values,
        assert all(value is not None for row in _rows(bulk_db, table, compound) for value in row)  # compounds too
    types = dict(info for info in (r[1:3] for r in bulk_db.execute("PRAGMA table_info(Account)")))
    assert types["NumberOfEmployees"] == "INTEGER" and types["IsDeleted"] == "INTEGER" and "BillingCity" in types
    # typed values, not the CSV's text (exact decimals are kept as their digits); a null
    # Type came from an empty CSV value
    assert bulk_db.execute("SELECT AnnualRevenue, Balance__c, typeof(NumberOfEmployees) FROM Account ORDER BY Id "
                           "LIMIT 1").fetchone() == ("123456789012345678", "98765432109876.54", "integer")
    assert bulk_db.execute("SELECT count(*) FROM Account WHERE Type IS NULL").fetchone() == (150,)
    assert bulk_db.execute("SELECT count(*) FROM Contact WHERE HasOptedOutOfEmail").fetchone() == (8,)

    changed = json.loads((CASSETTES / "changed.json").read_text())
    second = _sync(tmp_path, CASSETTES / "bulk_incremental.yaml", "bulk.db", refresh_credentials())
    assert _counts(second) == {"Account": 8, "Contact": 2}  # what changed, and the boundary record read again (>=)
    assert second.http["bulk_jobs"] == 2
    assert bulk_db.execute("SELECT count(*) FROM Account").fetchone() == (455,)
    assert bulk_db.execute("SELECT Id FROM Account WHERE IsDeleted").fetchall() == [(changed["deleted"],)]
    assert bulk_db.execute("SELECT Name FROM Account WHERE Id = ?", (changed["renamed"],)).fetchone() == ("Renamed Account",)
    assert bulk_db.execute("SELECT Email FROM Contact WHERE Id = ?", (changed["contact"],)).fetchone() == ("moved@example.test",)
    recorded = (CASSETTES / "bulk_incremental.yaml").read_text()
    assert '"operation": "queryAll"' in recorded and "WHERE SystemModstamp >= 2024-01-01T00:07:30.000Z" in recorded


def _edited(tmp_path: Path, name: str, edit: Any) -> Path:
    return edited(CASSETTES / "bulk.yaml", tmp_path / name, edit)


def _is_poll(interaction: dict[str, Any]) -> bool:
    request = interaction["request"]
    return request["method"] == "GET" and "/jobs/query/" in request["uri"] and "/results" not in request["uri"]


def test_request_limit_exceeded_and_503_while_polling_are_retried(tmp_path: Path) -> None:
    def edit(interactions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for interaction in interactions:
            if _is_poll(interaction) and '"InProgress"' in interaction["response"]["body"]["string"]:
                out.append(fault(interaction, 403, LIMITED))
                out.append(fault(interaction, 503, "<html><title>Service Unavailable</title></html>", "text/html"))
            out.append(interaction)
        return out

    result = _sync(tmp_path, _edited(tmp_path, "faults.yaml", edit), "faults.db")
    assert _counts(result) == {"Account": 450, "Contact": 30}
    # the first poll of each of the two jobs: throttled, then a 503 page, then InProgress
    assert result.http["throttled"] == 2 and result.http["server_errors"] == 2 and result.http["retries"] == 4
    assert result.http["bulk_jobs"] == 2


def test_a_failed_job_is_one_line_and_a_non_zero_exit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    said = "Failed to process query: FUNCTIONALITY_NOT_ENABLED: Selecting compound data\nnot supported in Bulk Query"

    def edit(interactions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for interaction in interactions:
            body = interaction["response"]["body"]["string"]
            if _is_poll(interaction) and '"JobComplete"' in body and '"Account"' in body:
                info = json.loads(body)
                info.update(state="Failed", errorMessage=said)
                interaction["response"]["body"]["string"] = json.dumps(info)
        return interactions

    from tapyard_credentials import generate_key

    monkeypatch.setenv("TAPYARD_VAULT_KEY", generate_key())
    fields = password_credentials().fields()
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(fields)))
    assert main(["creds", "add", "sf", "--connector", "salesforce", "--kind", "salesforce_password", "--from-json", "-"]) == 0
    capsys.readouterr()
    with cassette(_edited(tmp_path, "failed.yaml", edit)):
        # One stream at a time: the two job creations differ only in their bodies,
        # which the cassette does not match on, so concurrent streams could swap jobs.
        code = main(["sync", "salesforce", "--creds", "sf", "-c", json.dumps(CONFIG), "--to", f"sqlite:///{tmp_path}/f.db",
                     "--concurrency", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("Error: stream 'Account' failed: Bulk API 2.0 query on Account: job 7505g")
    assert err.endswith(" failed: Failed to process query: FUNCTIONALITY_NOT_ENABLED: Selecting compound data not "
                        "supported in Bulk Query; fix the query or read Account through the REST API (leave it out "
                        "of bulk_sobjects)")
    assert fields["password"] not in err
    rows = sqlite3.connect(tmp_path / "f.db")
    assert rows.execute("SELECT count(*) FROM Contact").fetchone() == (30,)  # the other stream went on


def test_live_threshold_chooses_bulk_for_large_reads_and_rest_for_small(tmp_path: Path) -> None:
    org = FakeSalesforce(0, accounts=4500, contacts=30)
    try:
        config = {"login_url": org.url, "ca_bundle": org.ca_bundle, "retry_backoff_s": 0.01,
                  "bulk_threshold": 1000, "bulk_poll_s": 0.01, "bulk_page_size": 3000}
        db = f"sqlite:///{tmp_path}/live.db"
        first = tapyard.sync("salesforce", config, credentials=password_credentials(), to=db, concurrency=2)
        assert _counts(first) == {"Account": 4500, "Contact": 30}
        jobs = [p for p in org.requests if p.startswith("POST ") and p.endswith("/jobs/query")]
        results = [p for p in org.requests if p.endswith("/results")]
        rest = [p for p in org.requests if p.endswith("/queryAll/")]
        assert len(jobs) == 1 and len(results) == 2  # Account: 3,000 + 1,500 per results page
        assert len(rest) == 3  # a COUNT() of each, then Contact's 30 records through REST
        assert first.streams[0].pages == 3  # 2,000 + 1,000 | 1,500: pages of batch_size at most
        changed = change(org)
        org.requests.clear()
        second = tapyard.sync("salesforce", config, credentials=refresh_credentials(), to=db, concurrency=1)
        assert _counts(second) == {"Account": 8, "Contact": 2}
        assert not any("/jobs/" in p for p in org.requests)  # 7 records: not worth a job
        rows = sqlite3.connect(tmp_path / "live.db")
        assert rows.execute("SELECT Id FROM Account WHERE IsDeleted").fetchall() == [(changed["deleted"],)]
        with pytest.raises(tapyard.ConfigError, match=r"^invalid config for 'salesforce': .*bulk_sobjects names Lead, "
                           r"not in sobjects; add it there too$"):
            tapyard.sync("salesforce", {**config, "bulk_sobjects": ["Lead"]}, credentials=password_credentials(), to=db)
    finally:
        org.stop()


def test_live_an_interrupted_bulk_read_resumes_from_its_locator_and_a_slow_job_is_aborted() -> None:
    org = FakeSalesforce(0, accounts=900)
    try:
        config = {"login_url": org.url, "ca_bundle": org.ca_bundle, "sobjects": ["Account"], "bulk_sobjects": ["Account"],
                  "bulk_page_size": 400, "batch_size": 200, "bulk_poll_s": 0.01}
        connector = tapyard.get_connector("salesforce")
        context = tapyard.RunContext(pm=tapyard.get_plugin_manager(), credentials=password_credentials())
        with connector.open(connector.parse_config(config), context) as source:
            stream = source.streams()[0]
            pages = source.read(stream, tapyard.StreamState(), {})
            first, second = next(pages), next(pages)  # the first results page: 200 + 200 records
            pages.close()  # the run dies here
            assert second.resume is not None and second.resume.params["locator"]
            assert first.resume is not None and first.resume.params == {"locator": ""}
            resumed = list(source.read(stream, tapyard.StreamState(resume=second.resume), {}))
        ids = [r["Id"] for p in (first, second, *resumed) for r in p.records]
        assert len(ids) == len(set(ids)) == 900
        assert sum(p.startswith("POST ") for p in org.requests) == 1  # no second job

        slow = {**config, "bulk_timeout_s": 0.001}
        with connector.open(connector.parse_config(slow), context) as source, pytest.raises(tapyard.ResponseError) as caught:
            list(source.read(source.streams()[0], tapyard.StreamState(), {}))
        assert str(caught.value).endswith("was still InProgress after 0.001s and was aborted; raise bulk_timeout_s")
        assert [job["info"]["state"] for job in org.jobs.values()] == ["Aborted"]
    finally:
        org.stop()


def test_csv_is_parsed_across_any_chunk_boundary_with_typed_values() -> None:
    text = ('"Id","Name","IsDeleted","NumberOfEmployees","Score__c","Note"\n'
            '"001A","Zoë, \\"Ltd\\"","false","12","0.5","two\nlines"\n'
            '"001B","","true","","1e3",""\n').replace('\\"', '""')
    data = text.encode()
    chunks = [data[i:i + 1] for i in range(len(data))]  # "ë" split between chunks as well
    fields = {"Id": "id", "Name": "string", "IsDeleted": "boolean", "NumberOfEmployees": "int", "Score__c": "double"}
    assert list(typed_rows(csv_lines(chunks), fields)) == [
        {"Id": "001A", "Name": 'Zoë, "Ltd"', "IsDeleted": False, "NumberOfEmployees": 12, "Score__c": Decimal("0.5"),
         "Note": "two\nlines"},
        {"Id": "001B", "Name": None, "IsDeleted": True, "NumberOfEmployees": None, "Score__c": Decimal("1e3"), "Note": None},
    ]
    # a value that does not fit its type stays text, so the record goes to the dead letters
    assert list(typed_rows(iter(['"NumberOfEmployees"\n', '"many"\n']), fields)) == [{"NumberOfEmployees": "many"}]
