"""tapyard-salesforce against the local fake, value for value: compound fields
keep their parts and exact numbers stay exact through REST and Bulk alike,
records stamped in the saved cursor's millisecond are not missed, and a
connected app that rotates refresh tokens works run after run, the rotated token
saved to the vault before the new session id is used."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import tapyard
from tapyard.cli import main
from tapyard_salesforce.testing import AWKWARD_ACCOUNT, FakeSalesforce, refresh_credentials

F = FakeSalesforce
BULK = {"bulk_sobjects": ["Account", "Contact"], "bulk_poll_s": 0.01}


@pytest.fixture
def org() -> Iterator[FakeSalesforce]:
    fake = FakeSalesforce(0, accounts=40, contacts=25, rotate_refresh_tokens=True)
    try:
        yield fake
    finally:
        fake.stop()


def _config(org: FakeSalesforce, **extra: Any) -> dict[str, Any]:
    return {"login_url": org.url, "ca_bundle": org.ca_bundle, "retry_backoff_s": 0.01, **extra}


def _sync(org: FakeSalesforce, db: Path, **extra: Any) -> tapyard.SyncResult:
    result = tapyard.sync("salesforce", _config(org, **extra), credentials=refresh_credentials(), to=f"sqlite:///{db}")
    assert result.ok, [(s.name, s.error) for s in result.streams]
    assert sum(s.dead_letters for s in result.streams) == 0
    return result


def _table(db: Path, table: str) -> dict[str, dict[str, Any]]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    return {row["Id"]: dict(row) for row in conn.execute(f"SELECT * FROM {table}")}


def _same(landed: Any, sent: Any) -> bool:
    """Whether a stored value is the value the org holds, exactly."""
    if sent is None or landed is None:
        return landed is sent
    if isinstance(sent, bool):
        return bool(landed) is sent
    if isinstance(sent, int | float | Decimal):
        return Decimal(str(landed)) == Decimal(str(sent))
    if isinstance(sent, dict):
        parsed = json.loads(landed)
        return parsed.keys() == sent.keys() and all(_same(parsed[k], sent[k]) for k in sent)
    if isinstance(sent, str) and "T" in sent and sent.endswith("+0000"):
        import datetime as dt

        return tapyard.parse_timestamp(landed) == dt.datetime.fromisoformat(sent)
    return bool(landed == sent)


@pytest.mark.parametrize("mode", ["rest", "bulk"])
def test_every_field_lands_as_the_org_holds_it(org: FakeSalesforce, tmp_path: Path, mode: str) -> None:
    """Compound fields' parts (Contact FirstName/LastName/Salutation of Name,
    BillingCity of BillingAddress, Location__Latitude__s of Location__c) are
    columns, and currency past a double's digits stays exact, in either API."""
    db = tmp_path / f"{mode}.db"
    _sync(org, db, **(BULK if mode == "bulk" else {}))
    for sobject in ("Account", "Contact"):
        landed = _table(db, sobject)
        assert len(landed) == len(org.records[sobject])
        for record in org.records[sobject]:
            row = landed[record["Id"]]
            wrong = {name: (row.get(name), value) for name, value in record.items() if not _same(row.get(name), value)}
            assert not wrong, (sobject, record["Id"], wrong)
    first = _table(db, "Account")[org.records["Account"][0]["Id"]]
    assert first["Balance__c"] == "98765432109876.54" and first["AnnualRevenue"] == "123456789012345678"
    assert first["Discount__c"] == "10.10" and first["Name"] == AWKWARD_ACCOUNT["Name"]
    contacts = _table(db, "Contact").values()
    assert all(c["FirstName"] and c["LastName"] for c in contacts)
    assert {c["Salutation"] for c in contacts} == {"Mr.", "Ms.", None}


def test_rest_and_bulk_give_the_same_rows(org: FakeSalesforce, tmp_path: Path) -> None:
    _sync(org, tmp_path / "rest.db")
    _sync(org, tmp_path / "bulk.db", **BULK)
    for sobject in ("Account", "Contact"):
        assert _table(tmp_path / "rest.db", sobject) == _table(tmp_path / "bulk.db", sobject)


def test_the_records_read_yield_decimals_not_floats(org: FakeSalesforce) -> None:
    connector = tapyard.get_connector("salesforce")
    context = tapyard.RunContext(pm=tapyard.get_plugin_manager(), credentials=refresh_credentials())
    with connector.open(connector.parse_config(_config(org, sobjects=["Account"])), context) as source:
        (stream,) = source.streams()
        page = next(iter(source.read(stream, tapyard.StreamState(), {})))
    first = page.records[0]
    assert first["Balance__c"] == Decimal("98765432109876.54") and isinstance(first["Score__c"], Decimal)
    validated = stream.schema_model.model_validate(first)
    assert validated.Balance__c == Decimal("98765432109876.54")  # type: ignore[attr-defined]
    assert validated.AnnualRevenue == 123456789012345678  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", ["rest", "bulk"])
def test_records_stamped_in_the_cursors_millisecond_are_fetched(org: FakeSalesforce, tmp_path: Path, mode: str) -> None:
    db = tmp_path / "ms.db"
    extra = BULK if mode == "bulk" else {}
    _sync(org, db, **extra)
    accounts = org.records["Account"]
    cursor = max(r["SystemModstamp"] for r in accounts)  # what the run saved
    touched = [accounts[3]["Id"], accounts[4]["Id"], accounts[5]["Id"]]
    for n, record_id in enumerate(touched):
        org.update(record_id, stamp=cursor, Name=f"Same millisecond {n}")
    second = _sync(org, db, **extra)
    landed = _table(db, "Account")
    assert [landed[i]["Name"] for i in touched] == [f"Same millisecond {n}" for n in range(3)]
    # the boundary is read again on purpose (>=): the 3 and the record that set the cursor
    assert {s.name: s.records for s in second.streams}["Account"] == 4


# -- rotated refresh tokens ---------------------------------------------------------------


def _vault_credential(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tapyard_credentials import generate_key

    monkeypatch.setenv("TAPYARD_VAULT_KEY", generate_key())
    monkeypatch.setenv("TAPYARD_VAULT", str(tmp_path / "vault.db"))
    fields = tmp_path / "sf.json"
    fields.write_text(json.dumps({"client_id": F.CLIENT_ID, "client_secret": F.CLIENT_SECRET, "refresh_token": F.REFRESH_TOKEN}))
    code = main(["creds", "add", "sf", "--connector", "salesforce", "--kind", "oauth2_refresh_token", "--from-json", str(fields)])
    assert code == 0, capsys.readouterr().err
    fields.unlink()


def _stored_refresh_token() -> str:
    from tapyard import open_vault

    return open_vault().get("sf", connector="salesforce").fields["refresh_token"].get_secret_value()


def test_ten_runs_in_a_row_with_refresh_token_rotation_through_the_cli(
    org: FakeSalesforce, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each run spends the stored refresh token and gets a new one; the vault holds
    the new one before the run goes on, so the next run presents a valid token
    (presenting a spent one would revoke the whole family)."""
    _vault_credential(monkeypatch, tmp_path, capsys)
    config = json.dumps(_config(org))
    for run in range(10):
        code = main(["sync", "salesforce", "--creds", "sf", "-c", config, "--to", f"sqlite:///{tmp_path}/r.db"])
        _, err = capsys.readouterr()
        assert code == 0, (run, err)
        assert org.refresh_tokens == {_stored_refresh_token()}
        if run == 4:
            org.revoke_sessions()  # a re-login inside a run presents the rotated token too
    assert org.grants["refresh_token:ok"] >= 10 and org.grants["refresh_token:reused"] == 0
    assert org.grants["refresh_token:refused"] == 0
    vault_text = (tmp_path / "vault.db").read_bytes()
    assert F.REFRESH_TOKEN.encode() not in vault_text and _stored_refresh_token().encode() not in vault_text


class _Unwritable:
    """A token store whose saves fail (a full disk), recording what was tried."""

    def __init__(self, fields: Mapping[str, str]) -> None:
        import threading

        self.fields = dict(fields)
        self.tried: list[str] = []
        self._lock = threading.RLock()

    def load(self) -> Mapping[str, str]:
        return dict(self.fields)

    def save(self, fields: Mapping[str, str]) -> None:
        from tapyard_credentials import VaultStorageError

        self.tried.append(fields["refresh_token"])
        raise VaultStorageError("the disk is full")

    def lock(self) -> Any:
        return self._lock


def test_a_rotated_refresh_token_that_cannot_be_saved_means_no_session_is_used(
    org: FakeSalesforce, tmp_path: Path
) -> None:
    from tapyard_credentials import VaultStorageError

    store = _Unwritable({"refresh_token": F.REFRESH_TOKEN})
    credentials = refresh_credentials().with_token_store(store)
    with pytest.raises(VaultStorageError):
        tapyard.sync("salesforce", _config(org), credentials=credentials, to=f"sqlite:///{tmp_path}/n.db")
    assert store.tried and store.tried[0] in org.refresh_tokens  # obtained...
    assert org.sessions and org.bearers == []  # ...but the session id never went out


def test_a_rotated_refresh_token_is_saved_before_the_new_session_goes_out(org: FakeSalesforce, tmp_path: Path) -> None:
    from tapyard import MemoryTokenStore

    seen: list[tuple[str, int]] = []

    class Recording(MemoryTokenStore):
        def save(self, fields: Mapping[str, str]) -> None:
            seen.append((fields["refresh_token"], len(org.bearers)))
            super().save(fields)

    store = Recording({"refresh_token": F.REFRESH_TOKEN})
    credentials = refresh_credentials().with_token_store(store)
    for _ in range(3):
        result = tapyard.sync("salesforce", _config(org), credentials=credentials, to=f"sqlite:///{tmp_path}/s.db")
        assert result.ok
    assert len(seen) == 3 and store.load()["refresh_token"] in org.refresh_tokens
    requests_before = [count for _, count in seen]
    assert requests_before[0] == 0  # the first save came before the first API request
    assert requests_before == sorted(requests_before)


@pytest.mark.parametrize("mode", ["rest", "bulk"])
def test_schema_drift_against_the_fake(org: FakeSalesforce, mode: str) -> None:
    """Every field the org sends (compound parts included) has a column of the
    described type, and no value is rejected or changed, in either API."""
    from tapyard.testing import schema_drift

    config = _config(org, **(BULK if mode == "bulk" else {}))
    assert [str(d) for d in schema_drift("salesforce", config, credentials=refresh_credentials())] == []
    # and every field describe() lists is a column: none is left out of the query
    connector = tapyard.get_connector("salesforce")
    context = tapyard.RunContext(pm=tapyard.get_plugin_manager(), credentials=refresh_credentials())
    with connector.open(connector.parse_config(config), context) as source:
        for stream in source.streams():
            described = {f["name"] for f in org.describe(stream.name)["fields"]}
            assert described - set(stream.schema_model.model_fields) == set(), stream.name


def test_a_credential_built_in_code_keeps_its_rotated_token_for_the_process(org: FakeSalesforce, tmp_path: Path) -> None:
    """No vault: the rotated refresh token lives in memory for the process, so the
    same credential object (or an equal one) works run after run."""
    for _ in range(5):
        result = tapyard.sync("salesforce", _config(org), credentials=refresh_credentials(), to=f"sqlite:///{tmp_path}/m.db")
        assert result.ok, [s.error for s in result.streams]
    assert org.grants["refresh_token:ok"] == 5 and org.grants["refresh_token:reused"] == 0
