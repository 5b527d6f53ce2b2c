"""OData v4 services that send Edm.Decimal and Edm.Int64 as JSON numbers (as
Business Central's .NET decimals do, up to 28 digits, when a client does not
ask for IEEE754Compatible): the values land digit for digit, never through a float."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import tapyard

METADATA = b"""<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">
 <edmx:DataServices>
  <Schema Namespace="Microsoft.NAV" xmlns="http://docs.oasis-open.org/odata/ns/edm">
   <EntityType Name="customer">
    <Key><PropertyRef Name="id"/></Key>
    <Property Name="id" Type="Edm.Guid" Nullable="false"/>
    <Property Name="balance" Type="Edm.Decimal" Scale="Variable"/>
    <Property Name="creditLimit" Type="Edm.Decimal" Scale="Variable"/>
    <Property Name="entries" Type="Edm.Int64"/>
    <Property Name="rate" Type="Edm.Double"/>
    <Property Name="lastModifiedDateTime" Type="Edm.DateTimeOffset"/>
   </EntityType>
   <EntityContainer Name="NAV">
    <EntitySet Name="customers" EntityType="Microsoft.NAV.customer"/>
   </EntityContainer>
  </Schema>
 </edmx:DataServices>
</edmx:Edmx>"""

#: the body as the service writes it: numbers, not strings
PAGE = b"""{"@odata.context": "$metadata#customers", "value": [
 {"@odata.etag": "W/\\"JzQ0O1ZrN2==\\"", "id": "6f1c1d1e-0000-0000-0000-000000000001", "rate@odata.type": "#Double", "balance": 12345678901234567890.123456789,
  "creditLimit": 10.10, "entries": 9223372036854775807, "rate": 0.1, "lastModifiedDateTime": "2024-03-01T10:00:00.123456Z"},
 {"id": "6f1c1d1e-0000-0000-0000-000000000002", "balance": -0.000000000000000001,
  "creditLimit": 1E+3, "entries": -9223372036854775808, "rate": 1e-300, "lastModifiedDateTime": "2024-03-01T10:00:01+02:00"}
]}"""


@pytest.fixture
def service() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            body, kind = (METADATA, "application/xml") if "$metadata" in self.path else (PAGE, "application/json")
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v2.0"
    finally:
        server.shutdown()
        server.server_close()


def test_decimals_sent_as_json_numbers_land_digit_for_digit(service: str, tmp_path: Path) -> None:
    result = tapyard.sync("erp", {"service_url": service}, to=f"sqlite:///{tmp_path}/bc.db")
    assert result.ok and result.records == 2 and result.streams[0].dead_letters == 0
    rows = sqlite3.connect(tmp_path / "bc.db").execute(
        "SELECT balance, creditLimit, entries, rate FROM customers ORDER BY id").fetchall()
    sent = [(Decimal("12345678901234567890.123456789"), Decimal("10.10"), 9223372036854775807),
            (Decimal("-0.000000000000000001"), Decimal("1E+3"), -9223372036854775808)]
    for row, (balance, limit, entries) in zip(rows, sent, strict=True):
        assert Decimal(row[0]) == balance and Decimal(row[1]) == limit and int(row[2]) == entries
    assert Decimal(rows[0][1]).as_tuple().exponent == -2  # 10.10, its trailing zero kept
    assert [r[3] for r in rows] == [0.1, 1e-300]


def test_the_records_yielded_hold_decimals(service: str) -> None:
    from tapyard.testing import schema_drift

    assert [str(d) for d in schema_drift("erp", {"service_url": service})] == []
    connector = tapyard.get_connector("erp")
    context = tapyard.RunContext(pm=tapyard.get_plugin_manager())
    with connector.open(connector.parse_config({"service_url": service}), context) as source:
        (stream,) = source.streams()
        page = next(iter(source.read(stream, tapyard.StreamState(), {})))
    assert page.records[0]["balance"] == Decimal("12345678901234567890.123456789")
