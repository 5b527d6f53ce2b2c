"""A local fake of the Salesforce REST API, for this connector's tests.

No Salesforce emulator exists, so this one follows Salesforce's published REST
API reference for what the connector uses: the OAuth 2.0 token endpoint
(``password`` and ``refresh_token`` grants), ``sobjects/<Object>/describe``,
``query`` and ``queryAll`` with batches of 2,000 (``Sforce-Query-Options:
batchSize=N`` for 200..2,000) linked by ``nextRecordsUrl``, ``IsDeleted`` rows
only from ``queryAll``, ``INVALID_SESSION_ID`` (401), ``INVALID_FIELD`` and
``MALFORMED_QUERY`` (400), and an ``Sforce-Limit-Info`` header on every
response. Faults (``REQUEST_LIMIT_EXCEEDED``, 5xx, HTML pages) are injectable.

It serves HTTPS on 127.0.0.1 with a self-signed certificate made at start
(simple-salesforce only speaks https); it parses only the SOQL the connector
emits: ``SELECT f, ... FROM Obj [WHERE SystemModstamp > T] ORDER BY SystemModstamp, Id``.
Needs ``cryptography`` (the ``testing`` extra).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import json
import re
import secrets
import ssl
import tempfile
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["FakeSalesforce"]

API_VERSION = "59.0"
EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

_ADDRESS_PARTS = ("Street", "City", "State", "PostalCode", "Country")

#: name -> (type, compound field it belongs to)
ACCOUNT_FIELDS: dict[str, tuple[str, str | None]] = {
    "Id": ("id", None), "IsDeleted": ("boolean", None), "Name": ("string", None),
    "Type": ("picklist", None), "Industry": ("picklist", None), "OwnerId": ("reference", None),
    "AnnualRevenue": ("currency", None), "NumberOfEmployees": ("int", None),
    "Discount__c": ("percent", None), "Score__c": ("double", None),
    "BillingAddress": ("address", None),
    **{f"Billing{part}": ("string", "BillingAddress") for part in _ADDRESS_PARTS},
    "LastActivityDate": ("date", None), "CreatedDate": ("datetime", None), "SystemModstamp": ("datetime", None),
}
CONTACT_FIELDS: dict[str, tuple[str, str | None]] = {
    "Id": ("id", None), "IsDeleted": ("boolean", None), "LastName": ("string", None),
    "Email": ("email", None), "AccountId": ("reference", None), "Birthdate": ("date", None),
    "HasOptedOutOfEmail": ("boolean", None), "MailingAddress": ("address", None),
    **{f"Mailing{part}": ("string", "MailingAddress") for part in _ADDRESS_PARTS},
    "Location__c": ("location", None), "CreatedDate": ("datetime", None), "SystemModstamp": ("datetime", None),
}
PREFIX = {"Account": "001", "Contact": "003"}
FIELDS = {"Account": ACCOUNT_FIELDS, "Contact": CONTACT_FIELDS}

_SOQL = re.compile(
    r"^SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<obj>\w+)"
    r"(?:\s+WHERE\s+SystemModstamp\s*(?P<op>>=|>)\s*(?P<since>\S+))?"
    r"(?:\s+ORDER\s+BY\s+SystemModstamp\s*,\s*Id)?\s*$",
    re.IGNORECASE | re.DOTALL,
)


def _stamp(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def _certificate(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "fake-salesforce.pem", directory / "fake-salesforce.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    return cert_path, key_path


class FakeSalesforce:
    """The fake org, served over HTTPS. ``url`` is its address (login and instance
    alike); ``ca_bundle`` the certificate file to trust.

    Users: ``USERNAME`` with ``PASSWORD`` + ``SECURITY_TOKEN``; connected app
    ``CLIENT_ID``/``CLIENT_SECRET``; refresh token ``REFRESH_TOKEN``.
    """

    USERNAME = "etl@example.test"
    PASSWORD = "fake-password"
    SECURITY_TOKEN = "FakeSecurityToken"
    CLIENT_ID = "3MVG9fakeClientId"
    CLIENT_SECRET = "fake-client-secret"
    REFRESH_TOKEN = "5Aep861fakeRefreshToken"
    LIMIT = 15000

    def __init__(self, port: int = 0, accounts: int = 0, contacts: int = 0) -> None:
        self.records: dict[str, list[dict[str, Any]]] = {"Account": [], "Contact": []}
        self.sessions: set[str] = set()
        self.faults: list[tuple[int, str, dict[str, str]]] = []
        self.requests: list[str] = []
        self.api_usage = 0
        self._cursors: dict[str, tuple[list[dict[str, Any]], int, int, bool]] = {}
        self._clock = itertools.count(1)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._dir = tempfile.TemporaryDirectory(prefix="fake-salesforce-")
        cert, key = _certificate(Path(self._dir.name))
        self.ca_bundle = str(cert)
        self.add("Account", accounts)
        self.add("Contact", contacts)
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._dir.cleanup()

    # -- the org's data ------------------------------------------------------

    def _tick(self) -> str:
        return _stamp(EPOCH + dt.timedelta(seconds=next(self._clock)))

    def add(self, sobject: str, count: int) -> list[str]:
        made = []
        for _ in range(count):
            n = next(self._ids)
            stamp = self._tick()
            record: dict[str, Any] = {
                "Id": f"{PREFIX[sobject]}5g{n:010d}AAA", "IsDeleted": False, "CreatedDate": stamp, "SystemModstamp": stamp,
            }
            if sobject == "Account":
                address = {"street": f"{n} Main St", "city": "Springfield", "state": None, "postalCode": f"{n % 90000 + 10000}",
                           "country": "US", "geocodeAccuracy": None, "latitude": None, "longitude": None}
                record.update({
                    "Name": f"Account {n}", "Type": ["Customer - Direct", "Prospect", None][n % 3],
                    "Industry": "Energy" if n % 2 else "Retail", "OwnerId": "0055g00000AbCdEAAV",
                    "AnnualRevenue": n * 1000.5, "NumberOfEmployees": n % 500, "Discount__c": (n % 10) * 1.5,
                    "Score__c": n / 7, "BillingAddress": address, "LastActivityDate": f"2023-{n % 12 + 1:02d}-15",
                    **{f"Billing{p}": address[p[0].lower() + p[1:]] for p in _ADDRESS_PARTS},
                })
            else:
                accounts = self.records["Account"]
                address = {"street": f"{n} Elm St", "city": "Shelbyville", "state": "IL", "postalCode": "62565",
                           "country": "US", "geocodeAccuracy": None, "latitude": None, "longitude": None}
                record.update({
                    "LastName": f"Contact {n}", "Email": f"c{n}@example.test",
                    "AccountId": accounts[n % len(accounts)]["Id"] if accounts else None,
                    "Birthdate": f"19{n % 90 + 10:02d}-0{n % 9 + 1}-1{n % 9}", "HasOptedOutOfEmail": n % 4 == 0,
                    "MailingAddress": address, "Location__c": {"latitude": 39.78 + n / 1000, "longitude": -89.65},
                    **{f"Mailing{p}": address[p[0].lower() + p[1:]] for p in _ADDRESS_PARTS},
                })
            self.records[sobject].append(record)
            made.append(record["Id"])
        return made

    def find(self, record_id: str) -> dict[str, Any]:
        return next(r for rs in self.records.values() for r in rs if r["Id"] == record_id)

    def update(self, record_id: str, **fields: Any) -> None:
        record = self.find(record_id)
        record.update(fields)
        record["SystemModstamp"] = self._tick()

    def delete(self, record_id: str) -> None:
        self.update(record_id, IsDeleted=True)

    def revoke_sessions(self) -> None:
        """Every issued session id becomes invalid (as when an admin revokes them)."""
        self.sessions.clear()

    def inject(self, status: int, body: str, content_type: str = "application/json") -> None:
        """The next API request (not the token endpoint) gets this reply instead."""
        self.faults.append((status, body, {"Content-Type": content_type}))

    # -- the API -------------------------------------------------------------

    def describe(self, sobject: str) -> dict[str, Any]:
        fields = []
        for name, (kind, compound) in FIELDS[sobject].items():
            fields.append({
                "name": name, "label": name.replace("__c", "").replace("_", " "), "type": kind,
                "nillable": name not in ("Id", "IsDeleted", "SystemModstamp", "CreatedDate"),
                "compoundFieldName": compound, "custom": name.endswith("__c"),
                "referenceTo": ["User"] if name == "OwnerId" else ["Account"] if name == "AccountId" else [],
                "picklistValues": [{"value": "Customer - Direct", "active": True}, {"value": "Prospect", "active": True}]
                if kind == "picklist" else [],
            })
        return {"name": sobject, "label": sobject, "queryable": True, "replicateable": True, "fields": fields}

    def query(self, soql: str, include_deleted: bool, batch: int) -> tuple[int, Any]:
        match = _SOQL.match(soql.strip())
        if not match:
            return 400, [{"message": f"unexpected token: {soql[:60]}", "errorCode": "MALFORMED_QUERY"}]
        sobject = match["obj"]
        if sobject not in FIELDS:
            return 400, [{"message": f"sObject type '{sobject}' is not supported.", "errorCode": "INVALID_TYPE"}]
        names = [f.strip() for f in match["fields"].split(",")]
        for name in names:
            if name not in FIELDS[sobject]:
                return 400, [{
                    "message": f"\n{match['fields'][:40]}\n       ^\nERROR at Row:1:Column:8\n"
                    f"No such column '{name}' on entity '{sobject}'. If you are attempting to use a custom field, "
                    "be sure to append the '__c' after the custom field name.",
                    "errorCode": "INVALID_FIELD",
                }]
        rows = [r for r in self.records[sobject] if include_deleted or not r["IsDeleted"]]
        if match["since"]:
            since = dt.datetime.fromisoformat(match["since"].replace("Z", "+00:00"))
            strict = match["op"] == ">"
            rows = [
                r for r in rows
                if (stamp := dt.datetime.fromisoformat(r["SystemModstamp"])) > since or (not strict and stamp == since)
            ]
        rows.sort(key=lambda r: (r["SystemModstamp"], r["Id"]))
        selected = [
            {"attributes": {"type": sobject, "url": f"/services/data/v{API_VERSION}/sobjects/{sobject}/{r['Id']}"},
             **{n: r.get(n) for n in names}}
            for r in rows
        ]
        locator = f"01g5g{secrets.token_hex(6)}"
        self._cursors[locator] = (selected, 0, batch, include_deleted)
        return 200, self._batch(locator, 0)

    def _batch(self, locator: str, start: int) -> dict[str, Any]:
        rows, _, size, include_deleted = self._cursors[locator]
        end = min(start + size, len(rows))
        body: dict[str, Any] = {"totalSize": len(rows), "done": end >= len(rows), "records": rows[start:end]}
        if end < len(rows):
            endpoint = "queryAll" if include_deleted else "query"
            body["nextRecordsUrl"] = f"/services/data/v{API_VERSION}/{endpoint}/{locator}-{end}"
        return body

    def more(self, locator: str) -> tuple[int, Any]:
        base, _, start = locator.rpartition("-")
        if base not in self._cursors or not start.isdigit():
            return 400, [{"message": "invalid query locator", "errorCode": "INVALID_QUERY_LOCATOR"}]
        return 200, self._batch(base, int(start))

    def token(self, form: dict[str, str]) -> tuple[int, Any]:
        grant = form.get("grant_type")
        app_ok = form.get("client_id") == self.CLIENT_ID and form.get("client_secret") == self.CLIENT_SECRET
        if grant == "password":
            ok = app_ok and form.get("username") == self.USERNAME and form.get("password") == self.PASSWORD + self.SECURITY_TOKEN
        elif grant == "refresh_token":
            ok = app_ok and form.get("refresh_token") == self.REFRESH_TOKEN
        else:
            return 400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"}
        if not ok:
            return 400, {"error": "invalid_grant", "error_description": "authentication failure"}
        session = "00D5g000004Fake!AQ" + secrets.token_urlsafe(48).replace("-", "x").replace("_", "y")
        self.sessions.add(session)
        return 200, {
            "access_token": session, "instance_url": self.url, "id": f"{self.url}/id/00D5g000004FakeEAA/0055g00000AbCdEAAV",
            "token_type": "Bearer", "issued_at": "1704067200000", "signature": secrets.token_urlsafe(32),
        }


def _handler(org: FakeSalesforce) -> type[BaseHTTPRequestHandler]:
    prefix = f"/services/data/v{API_VERSION}/"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            for name, value in (headers or {"Content-Type": "application/json;charset=UTF-8"}).items():
                self.send_header(name, value)
            self.send_header("Sforce-Limit-Info", f"api-usage={org.api_usage}/{org.LIMIT}")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            if urllib.parse.urlsplit(self.path).path != "/services/oauth2/token":
                self._send(404, [{"message": "not found", "errorCode": "NOT_FOUND"}])
                return
            with org._lock:
                self._send(*org.token(form))

        def do_GET(self) -> None:
            split = urllib.parse.urlsplit(self.path)
            with org._lock:
                org.requests.append(split.path)
                org.api_usage += 1
                if org.faults:
                    status, body, headers = org.faults.pop(0)
                    self._send(status, body, headers)
                    return
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Bearer ") or auth[7:] not in org.sessions:
                    self._send(401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
                    return
                self._send(*self._route(split))

        def _route(self, split: urllib.parse.SplitResult) -> tuple[int, Any]:
            path = split.path
            if not path.startswith(prefix):
                return 404, [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]
            rest = path[len(prefix):].strip("/")
            parts = rest.split("/")
            if len(parts) == 3 and parts[0] == "sobjects" and parts[2] == "describe":
                if parts[1] not in FIELDS:
                    return 404, [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]
                return 200, org.describe(parts[1])
            if parts[0] in ("query", "queryAll"):
                if len(parts) == 2:
                    return org.more(parts[1])
                soql = dict(urllib.parse.parse_qsl(split.query)).get("q", "")
                options = self.headers.get("Sforce-Query-Options", "")
                found = re.search(r"batchSize=(\d+)", options)
                batch = max(200, min(2000, int(found.group(1)))) if found else 2000
                return org.query(soql, parts[0] == "queryAll", batch)
            return 404, [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]

    return Handler
