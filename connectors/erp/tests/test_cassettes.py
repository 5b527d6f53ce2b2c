"""Replays of syncs recorded against the SAP CAP emulator (cassettes/erp), and
the test that records them (only with ``TAPYARD_RECORD=all``).

Re-record: ``TAPYARD_RECORD=all .venv/bin/pytest connectors/erp/tests/test_cassettes.py -k record``
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import tapyard
from tapyard.testing import cassette

HERE = Path(__file__).parent
CASSETTES = HERE.parents[2] / "cassettes" / "erp"
SERVICE = "http://127.0.0.1:4004/odata/v4/erp"
CONFIG: dict[str, Any] = {"service_url": SERVICE, "select": {"Items": ["description", "unitPrice"]}}
#: fast retries for replays
HTTP = {"backoff_base": 0.0, "max_attempts": 4}


def creds() -> Any:
    return tapyard.BasicAuth.Options(username="erp-reader", password="erp-reader-pass")


def apply_changes(url: str) -> None:
    """What changes in the ERP between the full and the incremental run."""
    auth = ("erp-reader", "erp-reader-pass")
    with httpx.Client(base_url=url + "/", auth=auth) as client:
        for key, change in ((5, {"name": "Customer 005 (renamed)"}), (17, {"blocked": False}), (200, {"city": "Graz", "country": "AT"})):
            client.patch(f"Customers({key})", json=change).raise_for_status()
        for number, customer in (("SO-00301", 5), ("SO-00302", 17)):
            order = {"orderNo": number, "customer_ID": customer, "amount": 99.5, "currency": "EUR",
                     "status": "open", "orderDate": "2024-04-01", "weightKg": 1.5}
            client.post("SalesOrders", json=order).raise_for_status()


@pytest.mark.record
def test_record_against_the_cap_emulator(tmp_path: Path, start_cap: Any) -> None:
    server = start_cap(4004)
    try:
        assert server.url == SERVICE
        for name in ("full.yaml", "incremental.yaml"):
            (CASSETTES / name).unlink(missing_ok=True)  # vcr would append to an old one
        db = f"sqlite:///{tmp_path}/erp.db"
        with cassette(CASSETTES / "full.yaml", record_mode="all"):
            first = tapyard.sync("erp", CONFIG, credentials=creds(), to=db)
        assert first.ok, first
        apply_changes(server.url)
        with cassette(CASSETTES / "incremental.yaml", record_mode="all"):
            second = tapyard.sync("erp", CONFIG, credentials=creds(), to=db)
        assert second.ok, second
    finally:
        server.stop()


@pytest.mark.record
def test_record_the_conformance_cassette(tmp_path: Path, start_cap: Any) -> None:
    """What the conformance kit replays (pyproject.toml, [tool.tapyard.conformance.erp]): a full
    read, an incremental read right after it (nothing changed), and a read stopped after its
    first page then resumed, against an unchanged CAP service."""
    server = start_cap(4004)
    path = CASSETTES / "conformance.yaml"
    try:
        assert server.url == SERVICE
        path.unlink(missing_ok=True)  # vcr would append to an old one
        with cassette(path, record_mode="all"):
            db = f"sqlite:///{tmp_path}/full.db"
            full = tapyard.sync("erp", CONFIG, credentials=creds(), to=db, concurrency=1)
            again = tapyard.sync("erp", CONFIG, credentials=creds(), to=db, concurrency=1)
            stopped = f"sqlite:///{tmp_path}/stopped.db"
            tapyard.sync("erp", CONFIG, credentials=creds(), to=stopped, concurrency=1, max_pages=1)
            resumed = tapyard.sync("erp", CONFIG, credentials=creds(), to=stopped, concurrency=1)
        assert full.ok and again.ok and resumed.ok, (full, again, resumed)
        assert not any(s.inserted or s.updated for s in again.streams)
    finally:
        server.stop()


def test_the_conformance_cassette_replays_a_full_then_an_unchanged_incremental_read(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/erp.db"
    with cassette(CASSETTES / "conformance.yaml"):
        full = tapyard.sync("erp", CONFIG, credentials=creds(), to=db, concurrency=1)
        again = tapyard.sync("erp", CONFIG, credentials=creds(), to=db, concurrency=1)
    assert full.ok and _counts(full) == {"Customers": 250, "SalesOrders": 300, "Items": 40, "LedgerEntries": 3}
    assert again.ok and not any(s.inserted or s.updated for s in again.streams)


def _sync(tmp_path: Path, path: Path, config: dict[str, Any] | None = None, db: str = "erp.db") -> tapyard.SyncResult:
    with cassette(path):
        return tapyard.sync("erp", config or CONFIG, credentials=creds(), to=f"sqlite:///{tmp_path / db}", http=HTTP)


def _counts(result: tapyard.SyncResult) -> dict[str, int]:
    return {s.name: s.records for s in result.streams}


def test_a_replayed_full_sync_then_an_incremental_one(tmp_path: Path) -> None:
    first = _sync(tmp_path, CASSETTES / "full.yaml")
    assert first.ok and _counts(first) == {"Customers": 250, "SalesOrders": 300, "Items": 40, "LedgerEntries": 3}
    assert first.http["requests"] == 10  # $metadata, 3 + 4 pages (the last one empty), 1 page, 1 page
    db = sqlite3.connect(tmp_path / "erp.db")
    types = {row[1]: row[2] for row in db.execute("PRAGMA table_info(Customers)")}
    assert types["ID"] == "INTEGER" and types["name"] == "TEXT" and types["blocked"] == "INTEGER"  # SQLite booleans
    assert types["creditLimit"] == "TEXT"  # Edm.Decimal stays exact
    assert {row[1]: row[2] for row in db.execute("PRAGMA table_info(SalesOrders)")}["weightKg"] == "REAL"
    assert [r[1] for r in db.execute("PRAGMA table_info(Items)")][:3] == ["sku", "description", "unitPrice"]
    assert db.execute("SELECT creditLimit, since FROM Customers WHERE ID = 1").fetchone() == ("1137.01", "2015-01-12")
    # Int64 and Decimal asked for as strings (IEEE754Compatible), so they land digit for digit
    assert db.execute("SELECT amount, units FROM LedgerEntries WHERE entryNo = 9007199254740993").fetchone() == (
        "98765432109.8765", 9223372036854775807)
    recorded = _load(CASSETTES / "full.yaml")["interactions"]
    assert all("IEEE754Compatible=true" in i["request"]["headers"]["accept"][0]
               for i in recorded if "$metadata" not in i["request"]["uri"])

    second = _sync(tmp_path, CASSETTES / "incremental.yaml")
    # the changes, and the boundary record of each incremental stream read again (ge)
    assert second.ok and _counts(second) == {"Customers": 4, "SalesOrders": 3, "Items": 40, "LedgerEntries": 1}
    assert db.execute("SELECT count(*) FROM Customers").fetchone() == (250,)
    assert db.execute("SELECT count(*) FROM SalesOrders").fetchone() == (302,)
    assert db.execute("SELECT name FROM Customers WHERE ID = 5").fetchone() == ("Customer 005 (renamed)",)
    assert db.execute("SELECT city FROM Customers WHERE ID = 200").fetchone() == ("Graz",)
    assert db.execute("SELECT count(*) FROM _tapyard_dead_letters").fetchone() == (0,)


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _fault(template: dict[str, Any], status: int, body: str, headers: dict[str, list[str]]) -> dict[str, Any]:
    fault = yaml.safe_load(yaml.safe_dump(template))
    fault["response"] = {"status": {"code": status, "message": "fault"}, "headers": headers, "body": {"string": body}}
    return fault


def test_throttling_and_server_errors_injected_into_a_replay_are_retried(tmp_path: Path) -> None:
    data = _load(CASSETTES / "full.yaml")
    out: list[dict[str, Any]] = []
    maintenance = "<html><head><title>Service Unavailable - Maintenance</title></head><body>Back soon</body></html>"
    for interaction in data["interactions"]:
        uri = interaction["request"]["uri"]
        if uri.endswith("Customers?%24orderby=modifiedAt"):
            out.append(_fault(interaction, 429, '{"error": {"message": "Too many requests"}}', {"Retry-After": ["0"]}))
        if "SalesOrders" in uri and "skiptoken=100" in uri:
            out.append(_fault(interaction, 503, maintenance, {"Content-Type": ["text/html"]}))
            out.append(_fault(interaction, 502, "", {}))
        out.append(interaction)
    data["interactions"] = out
    faulty = tmp_path / "faulty.yaml"
    faulty.write_text(yaml.safe_dump(data))
    result = _sync(tmp_path, faulty)
    assert result.ok and _counts(result) == {"Customers": 250, "SalesOrders": 300, "Items": 40, "LedgerEntries": 3}
    assert result.http["throttled"] == 1 and result.http["server_errors"] == 2 and result.http["retries"] == 3


def test_an_unknown_entity_set_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(tapyard.ConfigError) as caught:
        _sync(tmp_path, CASSETTES / "full.yaml", {**CONFIG, "entity_sets": ["Customers", "Invoices"]})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("unknown entity set 'Invoices'") and "Customers, Items, LedgerEntries, SalesOrders" in message


def test_a_maintenance_page_instead_of_metadata_is_one_clear_line(tmp_path: Path) -> None:
    data = _load(CASSETTES / "full.yaml")
    page = "<!DOCTYPE html><html><head><title>System maintenance</title></head><body>down</body></html>"
    data["interactions"] = [_fault(data["interactions"][0], 200, page, {"Content-Type": ["text/html"]})]
    path = tmp_path / "maintenance.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(tapyard.ResponseError) as caught:
        _sync(tmp_path, path)
    assert str(caught.value) == (
        f"GET {SERVICE}/$metadata returned an HTML page instead of OData metadata "
        "('System maintenance'); is the service URL right, or the system under maintenance?"
    )


def test_the_cli_discovers_streams_and_json_schemas_and_fails_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from tapyard.cli import main

    with cassette(CASSETTES / "full.yaml"):
        code = main(["discover", "erp", "-c", json.dumps(CONFIG), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    streams = {s["name"]: s for s in json.loads(out)["streams"]}
    assert set(streams) == {"Customers", "SalesOrders", "Items", "LedgerEntries"}
    customers = streams["Customers"]
    assert customers["primary_key"] == ["ID"] and customers["cursor_field"] == "modifiedAt"
    props = customers["json_schema"]["properties"]
    assert props["ID"]["type"] == "integer"
    assert {"type": "string", "format": "date-time"} in props["modifiedAt"]["anyOf"]
    assert streams["Items"]["cursor_field"] is None
    with cassette(CASSETTES / "full.yaml"):
        code = main(["sync", "erp", "-c", json.dumps({**CONFIG, "entity_sets": ["Nope"]}),
                     "--to", f"sqlite:///{tmp_path}/x.db"])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in err
    assert err.startswith("Error: unknown entity set 'Nope'") and err.count("\n") == 1
    code = main(["connectors", "list", "--json"])
    listed = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert listed["erp"]["distribution"] == "tapyard-erp"
