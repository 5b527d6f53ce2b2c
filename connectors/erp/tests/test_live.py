"""Live syncs against the SAP CAP emulator (started by the ``cap`` fixture)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

import tapyard


def _creds(password: str = "erp-reader-pass") -> Any:
    return tapyard.BasicAuth.Options(username="erp-reader", password=password)


def test_full_then_incremental_sync_against_sap_cap(cap: Any, tmp_path: Path) -> None:
    config = {"service_url": cap.url, "page_size": 70, "entity_sets": ["Customers", "SalesOrders"]}
    db = f"sqlite:///{tmp_path}/live.db"
    first = tapyard.sync("erp", config, credentials=_creds(), to=db)
    assert first.ok and {s.name: s.records for s in first.streams} == {"Customers": 250, "SalesOrders": 300}
    again = tapyard.sync("erp", config, credentials=_creds(), to=db)
    assert again.ok and again.records == 2  # only the boundary record of each stream, read again (ge)
    with httpx.Client(base_url=cap.url + "/", auth=("erp-reader", "erp-reader-pass")) as client:
        client.patch("Customers(42)", json={"creditLimit": 12345.67}).raise_for_status()
    third = tapyard.sync("erp", config, credentials=_creds(), to=db)
    assert {s.name: s.records for s in third.streams} == {"Customers": 2, "SalesOrders": 1}  # + the boundary


def test_a_wrong_password_is_one_clear_line(cap: Any, tmp_path: Path) -> None:
    with pytest.raises(tapyard.AuthenticationError) as caught:
        tapyard.sync("erp", {"service_url": cap.url}, credentials=_creds("wrong"), to=f"sqlite:///{tmp_path}/x.db")
    message = str(caught.value)
    assert "\n" not in message and "401 Unauthorized" in message and "wrong" not in message


def _seeded(name: str) -> list[dict[str, str]]:
    import csv

    with open(Path(__file__).parent / "cap" / "db" / "data" / f"tapyard.erp-{name}.csv", encoding="utf-8", newline="") as seed:
        return list(csv.DictReader(seed, delimiter=";"))


def test_values_that_break_naive_syncs_land_exactly(cap: Any, tmp_path: Path) -> None:
    """Int64 past 2^53 and at both ends, decimals with trailing zeros, doubles,
    unicode, nulls and timestamps before 1970, as the CAP service holds them."""
    import datetime as dt
    import sqlite3
    from decimal import Decimal

    result = tapyard.sync("erp", {"service_url": cap.url, "entity_sets": ["LedgerEntries"]}, credentials=_creds(),
                          to=f"sqlite:///{tmp_path}/ledger.db")
    assert result.ok and result.records == 3 and result.streams[0].dead_letters == 0
    db = sqlite3.connect(tmp_path / "ledger.db")
    db.row_factory = sqlite3.Row
    landed = {str(row["entryNo"]): dict(row) for row in db.execute("SELECT * FROM LedgerEntries")}
    assert sorted(landed) == sorted(row["entryNo"] for row in _seeded("LedgerEntries"))
    for seed in _seeded("LedgerEntries"):
        row = landed[seed["entryNo"]]
        assert Decimal(row["amount"]) == Decimal(seed["amount"]), seed["entryNo"]
        assert (row["units"] is None) if not seed["units"] else int(row["units"]) == int(seed["units"])
        assert (row["rate"] is None) if not seed["rate"] else float(row["rate"]) == float(seed["rate"])
        assert row["memo"] == (seed["memo"] or None)
        if seed["bookedAt"]:
            assert tapyard.parse_timestamp(row["bookedAt"]) == dt.datetime.fromisoformat(seed["bookedAt"])
        else:
            assert row["bookedAt"] is None
    assert landed["9007199254740993"]["amount"] == "98765432109.8765"  # the digits, not a float's


def test_a_change_in_the_cursors_instant_is_fetched(cap: Any, tmp_path: Path) -> None:
    """``ge``: a record stamped in the very instant the saved cursor holds, after
    the run that saved it, comes in the next incremental run."""
    config = {"service_url": cap.url, "entity_sets": ["Customers"]}
    db = f"sqlite:///{tmp_path}/instant.db"
    assert tapyard.sync("erp", config, credentials=_creds(), to=db).ok
    import sqlite3

    cursor = sqlite3.connect(tmp_path / "instant.db").execute("SELECT max(modifiedAt) FROM Customers").fetchone()[0]
    with httpx.Client(base_url=cap.url + "/", auth=("erp-reader", "erp-reader-pass")) as client:
        response = client.patch("Customers(3)", json={"name": "Same instant", "modifiedAt": cursor})
        response.raise_for_status()
    stamped = sqlite3.connect(tmp_path / "instant.db")
    again = tapyard.sync("erp", config, credentials=_creds(), to=db)
    assert again.ok
    assert stamped.execute("SELECT name FROM Customers WHERE ID = 3").fetchone() == ("Same instant",)


def test_schema_drift_against_sap_cap(cap: Any) -> None:
    """Every property CAP sends, in every entity set, has a column of its EDM type,
    and no value is rejected or changed (Int64 and Decimal as strings, exact)."""
    from tapyard.testing import schema_drift

    assert [str(d) for d in schema_drift("erp", {"service_url": cap.url}, credentials=_creds())] == []
