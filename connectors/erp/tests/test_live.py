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
    assert again.ok and again.records == 0
    with httpx.Client(base_url=cap.url + "/", auth=("erp-reader", "erp-reader-pass")) as client:
        client.patch("Customers(42)", json={"creditLimit": 12345.67}).raise_for_status()
    third = tapyard.sync("erp", config, credentials=_creds(), to=db)
    assert {s.name: s.records for s in third.streams} == {"Customers": 1, "SalesOrders": 0}


def test_a_wrong_password_is_one_clear_line(cap: Any, tmp_path: Path) -> None:
    with pytest.raises(tapyard.AuthenticationError) as caught:
        tapyard.sync("erp", {"service_url": cap.url}, credentials=_creds("wrong"), to=f"sqlite:///{tmp_path}/x.db")
    message = str(caught.value)
    assert "\n" not in message and "401 Unauthorized" in message and "wrong" not in message
