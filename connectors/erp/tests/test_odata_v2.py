"""OData v2 (SAP Gateway JSON: ``d.results``, ``d.__next``, ``/Date(ms)/``)
against an in-test fake of an S/4HANA sales-order service, and the pieces of
the connector that need no server."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import tapyard
from tapyard_erp._connector import AzureAdCredentials, _literal
from tapyard_erp._metadata import parse_metadata, record_model

ROOT = "/sap/opu/odata/sap/API_SALES_ORDER_SRV"
METADATA = """<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="1.0" xmlns:edmx="http://schemas.microsoft.com/ado/2007/06/edmx"
    xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata">
 <edmx:DataServices m:DataServiceVersion="2.0">
  <Schema Namespace="API_SALES_ORDER_SRV" xml:lang="en" xmlns="http://schemas.microsoft.com/ado/2008/09/edm">
   <EntityType Name="A_SalesOrderType">
    <Key><PropertyRef Name="SalesOrder"/></Key>
    <Property Name="SalesOrder" Type="Edm.String" Nullable="false" MaxLength="10"/>
    <Property Name="SalesOrderType" Type="Edm.String" MaxLength="4"/>
    <Property Name="SoldToParty" Type="Edm.String" MaxLength="10"/>
    <Property Name="CreationDate" Type="Edm.DateTime" Precision="0"/>
    <Property Name="LastChangeDateTime" Type="Edm.DateTimeOffset" Precision="7"/>
    <Property Name="TotalNetAmount" Type="Edm.Decimal" Precision="16" Scale="3"/>
    <Property Name="TransactionCurrency" Type="Edm.String" MaxLength="5"/>
    <NavigationProperty Name="to_Item" Relationship="API_SALES_ORDER_SRV.assoc_Items" FromRole="FromRole" ToRole="ToRole"/>
   </EntityType>
   <EntityContainer Name="API_SALES_ORDER_SRV_Entities" m:IsDefaultEntityContainer="true">
    <EntitySet Name="A_SalesOrder" EntityType="API_SALES_ORDER_SRV.A_SalesOrderType"/>
   </EntityContainer>
  </Schema>
 </edmx:DataServices>
</edmx:Edmx>"""
BASE = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


class Gateway:
    """A fake SAP Gateway OData v2 service: pages of 20, ``__next`` links with a
    ``$skiptoken``, ``$filter=LastChangeDateTime ge|gt datetimeoffset'...'``."""

    def __init__(self, count: int = 45, bearer: Any = None) -> None:
        self.orders = [
            {"SalesOrder": f"{i:010d}", "SalesOrderType": "OR", "SoldToParty": f"17{i:05d}",
             "CreationDate": BASE - dt.timedelta(days=i), "changed": BASE + dt.timedelta(minutes=i),
             "TotalNetAmount": f"{i * 10}.500", "TransactionCurrency": "EUR"}
            for i in range(1, count + 1)
        ]
        self.queries: list[dict[str, list[str]]] = []
        #: with a token check (``bearer(authorization) -> bool``), data requests need a valid token
        self.bearer = bearer
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                if parts.path == f"{ROOT}/$metadata":
                    return self._send(200, METADATA.encode(), "application/xml")
                if parts.path != f"{ROOT}/A_SalesOrder":
                    return self._send(404, b'{"error": {"message": {"value": "Resource not found"}}}')
                if gateway.bearer is not None and not gateway.bearer(self.headers.get("Authorization")):
                    return self._send(401, b'{"error": {"message": {"value": "Unauthorized"}}}')
                gateway.queries.append(query)
                rows = sorted(gateway.orders, key=lambda o: o["changed"])
                if "$filter" in query:
                    condition = query["$filter"][0]
                    since = dt.datetime.fromisoformat(condition.split("datetimeoffset'")[1].rstrip("'").replace("Z", "+00:00"))
                    inclusive = " ge datetimeoffset" in condition
                    rows = [o for o in rows if o["changed"] > since or (inclusive and o["changed"] == since)]
                skip = int(query.get("$skiptoken", ["0"])[0])
                page = rows[skip : skip + 20]
                body: dict[str, Any] = {"results": [gateway.render(o) for o in page]}
                if skip + 20 < len(rows):
                    rest = "&".join(f"{k}={v[0]}" for k, v in query.items() if k != "$skiptoken")
                    body["__next"] = f"http://{self.headers['Host']}{ROOT}/A_SalesOrder?{rest}&$skiptoken={skip + 20}"
                self._send(200, json.dumps({"d": body}).encode())

            def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{ROOT}"

    def render(self, order: dict[str, Any]) -> dict[str, Any]:
        row = {k: v for k, v in order.items() if k not in ("changed", "CreationDate")}
        row["__metadata"] = {"id": f"{self.url}/A_SalesOrder('{order['SalesOrder']}')", "type": "API_SALES_ORDER_SRV.A_SalesOrderType"}
        row["CreationDate"] = f"/Date({_ms(order['CreationDate'])})/"
        row["LastChangeDateTime"] = f"/Date({_ms(order['changed'])}+0000)/"
        row["to_Item"] = {"__deferred": {"uri": f"{self.url}/A_SalesOrder('{order['SalesOrder']}')/to_Item"}}
        return row


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    fake = Gateway()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def test_an_sap_gateway_v2_service_full_then_incremental(gateway: Gateway, tmp_path: Path) -> None:
    config = {"service_url": gateway.url, "preset": "sap_s4hana"}
    db = f"sqlite:///{tmp_path}/sap.db"
    first = tapyard.sync("erp", config, to=db)
    assert first.ok and first.records == 45 and first.streams[0].pages == 3
    assert gateway.queries[0]["$format"] == ["json"] and gateway.queries[0]["$orderby"] == ["LastChangeDateTime"]
    rows = sqlite3.connect(tmp_path / "sap.db")
    row = rows.execute("SELECT CreationDate, LastChangeDateTime, TotalNetAmount FROM A_SalesOrder WHERE SalesOrder = '0000000003'").fetchone()
    assert row[0].startswith("2024-02-27T00:00:00") and row[1].startswith("2024-03-01T00:03:00") and row[2] == "30.500"
    assert "__metadata" not in [c[1] for c in rows.execute("PRAGMA table_info(A_SalesOrder)")]
    for order in gateway.orders[:2]:
        order["changed"] = BASE + dt.timedelta(days=1)
    gateway.orders[10]["changed"] = BASE + dt.timedelta(minutes=45)  # in the cursor's instant, after the run
    second = tapyard.sync("erp", config, to=db)
    assert second.records == 4  # the 2 changed, the 1 in the cursor's instant, and the boundary one again
    assert gateway.queries[-1]["$filter"] == ["LastChangeDateTime ge datetimeoffset'2024-03-01T00:45:00Z'"]


def test_metadata_parsing_and_types() -> None:
    version, sets = parse_metadata(METADATA)
    assert version == "2.0" and list(sets) == ["A_SalesOrder"]
    orders = sets["A_SalesOrder"]
    assert orders.key == ("SalesOrder",) and orders.modified_field() == "LastChangeDateTime"
    model = record_model(orders, ["TotalNetAmount"])
    assert set(model.model_fields) == {"SalesOrder", "TotalNetAmount"}
    with pytest.raises(ValueError, match="not an EDMX document"):
        parse_metadata("<html><body>hi</body></html>")


def test_filter_literals_per_version_and_type() -> None:
    assert _literal("2024-01-02T03:04:05Z", "Edm.DateTimeOffset", "4.0") == "2024-01-02T03:04:05Z"
    assert _literal("2024-01-02T03:04:05Z", "Edm.DateTimeOffset", "2.0") == "datetimeoffset'2024-01-02T03:04:05Z'"
    assert _literal("2024-01-02T03:04:05+01:00", "Edm.DateTime", "2.0") == "datetime'2024-01-02T02:04:05.000'"
    assert _literal("2024-01-02", "Edm.Date", "4.0") == "2024-01-02"


def test_entra_id_credentials_fill_the_token_url() -> None:
    creds = AzureAdCredentials(tenant_id="contoso", client_id="app", client_secret="s3cret-value")
    assert creds.token_url == "https://login.microsoftonline.com/contoso/oauth2/v2.0/token"
    assert creds.scope == "https://api.businesscentral.dynamics.com/.default"
    with pytest.raises(ValueError, match="give tenant_id or token_url"):
        AzureAdCredentials(client_id="app", client_secret="x")
    connector = tapyard.get_connector("erp")
    assert connector.credential_model("oauth2_client_credentials") is AzureAdCredentials


def test_entra_id_tokens_are_saved_to_the_vault_before_the_service_sees_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """OAuth 2.0 client credentials (the Entra ID kind) from a real local
    authorization server, the credential in the vault, three runs through the CLI:
    each access token the service accepts was in the vault before it first saw it."""
    import time

    from tapyard_sample import LocalAuthorizationServer, OAuthClient

    from tapyard.cli import main
    from tapyard_credentials import generate_key

    monkeypatch.setenv("TAPYARD_VAULT_KEY", generate_key())
    monkeypatch.setenv("TAPYARD_VAULT", str(tmp_path / "vault.db"))
    secret = "entra-" + "s3" * 12
    seen: list[bool] = []

    def stored_access_token() -> str:
        vault = tapyard.open_vault()
        return vault.get("entra", connector="erp").fields["access_token"].get_secret_value()

    with LocalAuthorizationServer([OAuthClient("erp-app", secret)], access_token_ttl=1) as authz:
        def bearer(authorization: str | None) -> bool:
            seen.append(stored_access_token() == (authorization or "")[7:])
            return authz.validate(authorization)

        fake = Gateway(count=5, bearer=bearer)
        thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
        thread.start()
        try:
            fields = tmp_path / "entra.json"
            fields.write_text(json.dumps({"token_url": authz.token_url, "client_id": "erp-app", "client_secret": secret,
                                          "scope": "api://erp/.default"}))
            add = ["creds", "add", "entra", "--connector", "erp", "--kind", "oauth2_client_credentials",
                   "--from-json", str(fields)]
            assert main(add) == 0, capsys.readouterr().err
            config = json.dumps({"service_url": fake.url, "preset": "sap_s4hana"})
            for _ in range(3):
                code = main(["sync", "erp", "--creds", "entra", "-c", config, "--to", f"sqlite:///{tmp_path}/e.db"])
                assert code == 0, capsys.readouterr().err
                time.sleep(0.6)  # past the stored token's refresh point
        finally:
            fake.server.shutdown()
            fake.server.server_close()
    assert len(seen) >= 3 and all(seen)
    assert authz.stats["client_credentials:ok"] >= 3
    assert secret.encode() not in (tmp_path / "vault.db").read_bytes()
