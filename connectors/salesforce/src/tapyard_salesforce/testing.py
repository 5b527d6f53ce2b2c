"""A local fake of the Salesforce REST API, for this connector's tests.

No Salesforce emulator exists, so this one follows Salesforce's published REST
API reference for what the connector uses: the OAuth 2.0 token endpoint
(``password``, ``refresh_token`` and JWT bearer grants; with
``rotate_refresh_tokens`` each refresh answers with a new refresh token and
spends the old one, and a spent one presented again revokes them all; an assertion must be
RS256-signed by the key of the connected app's certificate, with ``iss`` the
consumer key, ``sub`` the user, ``aud`` the login URL and an ``exp`` within 3
minutes, else ``invalid_grant``), ``sobjects/<Object>/describe`` (compound fields' parts listed with their
``compoundFieldName``: a contact's ``Name``, address and location fields),
numbers written digit for digit (``Decimal`` values), ``query``
and ``queryAll`` with batches of 2,000 (``Sforce-Query-Options:
batchSize=N`` for 200..2,000) linked by ``nextRecordsUrl``, ``SELECT COUNT()``,
``IsDeleted`` rows only from ``queryAll``, ``INVALID_SESSION_ID`` (401),
``INVALID_FIELD`` and ``MALFORMED_QUERY`` (400), and an ``Sforce-Limit-Info``
header on every response. Faults (``REQUEST_LIMIT_EXCEEDED``, 5xx, HTML pages)
are injectable.

Bulk API 2.0 query jobs (``jobs/query``): a job is created ``UploadComplete``,
reads ``InProgress`` on the first poll and ``JobComplete`` (or ``Failed``, when
:meth:`FakeSalesforce.fail_next_bulk_job` asked for it) on the second; its
results are CSV with a header row, every value quoted, ``true``/``false``,
datetimes in UTC with ``Z``, nulls empty, paged by ``maxRecords`` with the next
page's ``Sforce-Locator`` (``null`` on the last) and ``Sforce-NumberOfRecords``.
Compound fields are refused, as Bulk queries refuse them. Jobs can be aborted
(``PATCH``) and deleted.

It serves HTTPS on 127.0.0.1 with a self-signed certificate made at start
(simple-salesforce only speaks https); it parses only the SOQL the connector
emits: ``SELECT f, ... | COUNT() FROM Obj [WHERE SystemModstamp >|>= T] [ORDER BY SystemModstamp, Id]``.
Needs ``cryptography`` (the ``testing`` extra).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import datetime as dt
import io
import ipaddress
import itertools
import json
import re
import secrets
import ssl
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tapyard_salesforce._connector import (
        SalesforceJwt,
        SalesforcePassword,
        SalesforceRefreshToken,
    )

__all__ = [
    "FakeSalesforce",
    "change",
    "connected_app_key",
    "edited",
    "fault",
    "jwt_credentials",
    "password_credentials",
    "recording",
    "refresh_credentials",
]

API_VERSION = "59.0"
EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

_ADDRESS_PARTS = ("Street", "City", "State", "PostalCode", "Country", "Latitude", "Longitude", "GeocodeAccuracy")
_PART_TYPES = {"Latitude": "double", "Longitude": "double", "GeocodeAccuracy": "picklist"}

#: name -> (type, compound field it belongs to)
ACCOUNT_FIELDS: dict[str, tuple[str, str | None]] = {
    "Id": ("id", None), "IsDeleted": ("boolean", None), "Name": ("string", None),
    "Type": ("picklist", None), "Industry": ("picklist", None), "OwnerId": ("reference", None),
    "AnnualRevenue": ("currency", None), "NumberOfEmployees": ("int", None),
    "Discount__c": ("percent", None), "Score__c": ("double", None), "Balance__c": ("currency", None),
    "BillingAddress": ("address", None),
    **{f"Billing{part}": (_PART_TYPES.get(part, "string"), "BillingAddress") for part in _ADDRESS_PARTS},
    "LastActivityDate": ("date", None), "CreatedDate": ("datetime", None), "SystemModstamp": ("datetime", None),
}
CONTACT_FIELDS: dict[str, tuple[str, str | None]] = {
    "Id": ("id", None), "IsDeleted": ("boolean", None),
    # Name is compound: describe lists its parts with compoundFieldName "Name"
    "Name": ("string", None), "Salutation": ("picklist", "Name"), "FirstName": ("string", "Name"),
    "LastName": ("string", "Name"),
    "Email": ("email", None), "AccountId": ("reference", None), "Birthdate": ("date", None),
    "HasOptedOutOfEmail": ("boolean", None), "MailingAddress": ("address", None),
    **{f"Mailing{part}": (_PART_TYPES.get(part, "string"), "MailingAddress") for part in _ADDRESS_PARTS},
    "Location__c": ("location", None), "Location__Latitude__s": ("double", "Location__c"),
    "Location__Longitude__s": ("double", "Location__c"),
    "CreatedDate": ("datetime", None), "SystemModstamp": ("datetime", None),
}
PREFIX = {"Account": "001", "Contact": "003"}
FIELDS = {"Account": ACCOUNT_FIELDS, "Contact": CONTACT_FIELDS}

_SOQL = re.compile(
    r"^SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<obj>\w+)"
    r"(?:\s+WHERE\s+SystemModstamp\s*(?P<op>>=|>)\s*(?P<since>\S+))?"
    r"(?:\s+ORDER\s+BY\s+SystemModstamp\s*,\s*Id)?\s*$",
    re.IGNORECASE | re.DOTALL,
)


#: Values that break naive syncs, on the first account: a currency value past a
#: double's 15-16 digits, an integer revenue past 2**53, a number field of 18
#: digits, unicode in the name.
AWKWARD_ACCOUNT: dict[str, Any] = {
    "AnnualRevenue": 123456789012345678, "Balance__c": Decimal("98765432109876.54"),
    "Score__c": Decimal("1234567890123456.78"), "Discount__c": Decimal("10.10"),
    "Name": "Zoe\u0301 \U0001f680 \u05e2\u05d1\u05e8\u05d9\u05ea GmbH",
}


def _sorted(value: dict[str, Any]) -> dict[str, Any]:
    """A compound value with its keys in the order Salesforce's JSON has them."""
    return dict(sorted(value.items()))


def _dumps(body: Any) -> str:
    """JSON as Salesforce writes it: decimals as plain numbers, digit for digit."""
    exact: dict[str, str] = {}

    def number(value: Any) -> str:
        if not isinstance(value, Decimal):
            raise TypeError(type(value).__name__)
        mark = f"\x00{len(exact)}\x00"
        exact[json.dumps(mark)] = str(value)
        return mark

    text = json.dumps(body, default=number)
    for mark, digits in exact.items():
        text = text.replace(mark, digits)
    return text


def _stamp(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def _self_signed(key: Any, name: str) -> Any:
    """A self-signed certificate for ``key``, valid for two days."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )


def _pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))


def _certificate(directory: Path) -> tuple[Path, Path]:
    """The TLS certificate and key files of the fake's HTTPS server."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    cert_path, key_path = directory / "fake-salesforce.pem", directory / "fake-salesforce.key"
    cert_path.write_bytes(_self_signed(key, "127.0.0.1").public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_pem(key))
    return cert_path, key_path


def connected_app_key() -> tuple[str, str]:
    """A new RSA private key (PEM) and the certificate (PEM) an admin would upload
    to a connected app for the JWT bearer flow."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = _self_signed(key, "tapyard connected app").public_bytes(serialization.Encoding.PEM)
    return _pem(key).decode("ascii"), cert.decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _csv_value(value: Any, kind: str) -> str:
    """A value as Bulk API 2.0 CSV writes it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if kind == "datetime":
        return str(value).replace("+0000", "Z")
    return repr(value) if isinstance(value, float) else str(value)


class FakeSalesforce:
    """The fake org, served over HTTPS. ``url`` is its address (login and instance
    alike); ``ca_bundle`` the certificate file to trust.

    Users: ``USERNAME`` with ``PASSWORD`` + ``SECURITY_TOKEN``; connected app
    ``CLIENT_ID``/``CLIENT_SECRET``; refresh token ``REFRESH_TOKEN``. For the JWT
    bearer flow the connected app trusts ``jwt_certificate`` (made at start, or
    given), whose private key is ``jwt_private_key`` (``None`` when given).
    ``assertions`` keeps every assertion received, for leak checks.
    """

    USERNAME = "etl@example.test"
    PASSWORD = "fake-password"
    SECURITY_TOKEN = "FakeSecurityToken"
    CLIENT_ID = "3MVG9fakeClientId"
    CLIENT_SECRET = "fake-client-secret"
    REFRESH_TOKEN = "5Aep861fakeRefreshToken"
    LIMIT = 15000

    def __init__(
        self, port: int = 0, accounts: int = 0, contacts: int = 0, jwt_certificate: str | None = None,
        *, rotate_refresh_tokens: bool = False,
    ) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.records: dict[str, list[dict[str, Any]]] = {"Account": [], "Contact": []}
        self.sessions: set[str] = set()
        #: refresh tokens that are valid now; with ``rotate_refresh_tokens`` each use
        #: answers with a new one and spends the one used, and presenting a spent one
        #: revokes the whole family (every token descended from it), as a connected
        #: app with refresh token rotation does
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.refresh_tokens: set[str] = {self.REFRESH_TOKEN}
        self.spent_refresh_tokens: set[str] = set()
        #: token endpoint outcomes: "refresh_token:ok", "refresh_token:reused", ...
        self.grants: Counter[str] = Counter()
        #: the access token of every API request, in order
        self.bearers: list[str] = []
        self.faults: list[tuple[int, str, dict[str, str]]] = []
        self.requests: list[str] = []
        #: when each API request arrived (``time.monotonic``), beside ``requests``
        self.arrivals: list[float] = []
        self.assertions: list[str] = []
        self.api_usage = 0
        self.jobs: dict[str, dict[str, Any]] = {}
        self._job_failures: list[str] = []
        self._cursors: dict[str, tuple[list[dict[str, Any]], int, int, bool]] = {}
        self.jwt_private_key: str | None = None
        if jwt_certificate is None:
            self.jwt_private_key, jwt_certificate = connected_app_key()
        self.jwt_certificate = jwt_certificate
        public = x509.load_pem_x509_certificate(jwt_certificate.encode()).public_key()
        if not isinstance(public, rsa.RSAPublicKey):
            raise ValueError("the connected app's certificate must hold an RSA key (the JWT flow signs RS256)")
        self._jwt_key = public
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
                address = _sorted({"street": f"{n} Main St", "city": "Springfield", "state": None, "postalCode": f"{n % 90000 + 10000}",
                           "country": "US", "geocodeAccuracy": None, "latitude": None, "longitude": None})
                record.update({
                    "Name": f"Account {n}", "Type": ["Customer - Direct", "Prospect", None][n % 3],
                    "Industry": "Energy" if n % 2 else "Retail", "OwnerId": "0055g00000AbCdEAAV",
                    "AnnualRevenue": n * 1000.5, "NumberOfEmployees": n % 500, "Discount__c": (n % 10) * 1.5,
                    "Score__c": n / 7, "Balance__c": Decimal(f"{n}.10"), "BillingAddress": address,
                    "LastActivityDate": f"2023-{n % 12 + 1:02d}-15",
                    **{f"Billing{p}": address[p[0].lower() + p[1:]] for p in _ADDRESS_PARTS},
                })
                if n == 1:
                    record.update(AWKWARD_ACCOUNT)
            else:
                accounts = self.records["Account"]
                address = _sorted({"street": f"{n} Elm St", "city": "Shelbyville", "state": "IL", "postalCode": "62565",
                           "country": "US", "geocodeAccuracy": None, "latitude": None, "longitude": None})
                first = "Zoe\u0301 \U0001f680" if n % 10 == 0 else f"First {n}"
                location = {"latitude": Decimal(f"{39.78 + n / 1000:.6f}"), "longitude": Decimal("-89.65")}
                record.update({
                    "Salutation": ["Mr.", "Ms.", None][n % 3], "FirstName": first, "LastName": f"Contact {n}",
                    "Name": f"{first} Contact {n}", "Email": f"c{n}@example.test",
                    "AccountId": accounts[n % len(accounts)]["Id"] if accounts else None,
                    "Birthdate": f"19{n % 90 + 10:02d}-0{n % 9 + 1}-1{n % 9}", "HasOptedOutOfEmail": n % 4 == 0,
                    "MailingAddress": address, "Location__c": location,
                    "Location__Latitude__s": location["latitude"], "Location__Longitude__s": location["longitude"],
                    **{f"Mailing{p}": address[p[0].lower() + p[1:]] for p in _ADDRESS_PARTS},
                })
            self.records[sobject].append(record)
            made.append(record["Id"])
        return made

    def find(self, record_id: str) -> dict[str, Any]:
        return next(r for rs in self.records.values() for r in rs if r["Id"] == record_id)

    def update(self, record_id: str, *, stamp: str | None = None, **fields: Any) -> None:
        """Change a record; its ``SystemModstamp`` moves to the next tick, or to
        ``stamp`` (an instant already given out: Salesforce stamps in milliseconds,
        so records changed in the same millisecond share one)."""
        record = self.find(record_id)
        record.update(fields)
        record["SystemModstamp"] = stamp or self._tick()

    def delete(self, record_id: str) -> None:
        self.update(record_id, IsDeleted=True)

    def revoke_sessions(self) -> None:
        """Every issued session id becomes invalid (as when an admin revokes them)."""
        self.sessions.clear()

    def inject(
        self, status: int, body: str, content_type: str = "application/json", headers: dict[str, str] | None = None
    ) -> None:
        """The next API request (not the token endpoint) gets this reply instead (with ``headers``)."""
        self.faults.append((status, body, {"Content-Type": content_type, **(headers or {})}))

    def fail_next_bulk_job(self, message: str) -> None:
        """The next Bulk query job ends ``Failed`` with this ``errorMessage``."""
        self._job_failures.append(message)

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

    def _select(self, soql: str, include_deleted: bool) -> tuple[int, Any]:
        """(200, (sObject, field names, rows in SystemModstamp order)) or an error reply."""
        match = _SOQL.match(soql.strip())
        if not match:
            return 400, [{"message": f"unexpected token: {soql[:60]}", "errorCode": "MALFORMED_QUERY"}]
        sobject = match["obj"]
        if sobject not in FIELDS:
            return 400, [{"message": f"sObject type '{sobject}' is not supported.", "errorCode": "INVALID_TYPE"}]
        names = [f.strip() for f in match["fields"].split(",")]
        for name in names:
            if name not in FIELDS[sobject] and names != ["COUNT()"]:
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
        return 200, (sobject, names, rows)

    def query(self, soql: str, include_deleted: bool, batch: int) -> tuple[int, Any]:
        status, found = self._select(soql, include_deleted)
        if status != 200:
            return status, found
        sobject, names, rows = found
        if names == ["COUNT()"]:
            return 200, {"totalSize": len(rows), "done": True, "records": []}
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

    # -- Bulk API 2.0 query jobs ----------------------------------------------

    def create_job(self, body: Any) -> tuple[int, Any]:
        operation = body.get("operation") if isinstance(body, dict) else None
        if operation not in ("query", "queryAll"):
            return 400, [{"errorCode": "INVALIDJOB", "message": f"Invalid operation: {operation}"}]
        if body.get("columnDelimiter", "COMMA") != "COMMA" or body.get("lineEnding", "LF") != "LF":
            return 400, [{"errorCode": "INVALIDJOB", "message": "this fake writes only COMMA-separated, LF-ended CSV"}]
        status, found = self._select(str(body.get("query") or ""), operation == "queryAll")
        if status != 200:
            return status, found
        sobject, names, rows = found
        if names == ["COUNT()"]:
            return 400, [{"errorCode": "INVALIDJOB", "message": "Aggregate queries are not supported by Bulk API 2.0"}]
        if any(FIELDS[sobject][n][0] in ("address", "location") for n in names):
            return 400, [{"errorCode": "API_ERROR", "message": "Selecting compound data not supported in Bulk Query"}]
        now = _stamp(dt.datetime.now(dt.UTC))
        info = {
            "id": f"7505g{secrets.token_hex(5).upper()}", "operation": operation, "object": sobject,
            "createdById": "0055g00000AbCdEAAV", "createdDate": now, "systemModstamp": now,
            "state": "UploadComplete", "concurrencyMode": "Parallel", "contentType": "CSV",
            "apiVersion": float(API_VERSION), "lineEnding": "LF", "columnDelimiter": "COMMA",
        }
        kinds = [FIELDS[sobject][n][0] for n in names]
        table = [[_csv_value(r.get(n), k) for n, k in zip(names, kinds, strict=True)] for r in rows]
        failure = self._job_failures.pop(0) if self._job_failures else None
        self.jobs[info["id"]] = {"info": info, "names": names, "rows": table, "polls": 0, "failure": failure}
        return 200, info

    def job(self, job_id: str) -> tuple[int, Any]:
        job = self.jobs.get(job_id)
        if job is None:
            return 404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
        info = job["info"]
        if info["state"] in ("UploadComplete", "InProgress"):
            job["polls"] += 1
            if job["polls"] == 1:
                info["state"] = "InProgress"
            elif job["failure"]:
                info.update(state="Failed", errorMessage=job["failure"])
            else:
                info.update(state="JobComplete", numberRecordsProcessed=len(job["rows"]), retries=0,
                            totalProcessingTime=40 * job["polls"])
            info["systemModstamp"] = _stamp(dt.datetime.now(dt.UTC))
        return 200, {**info, "jobType": "V2Query"}

    def abort_job(self, job_id: str, body: Any) -> tuple[int, Any]:
        job = self.jobs.get(job_id)
        if job is None:
            return 404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
        if not isinstance(body, dict) or body.get("state") != "Aborted":
            return 400, [{"errorCode": "INVALIDJOBSTATE", "message": "A query job can only be set to Aborted"}]
        if job["info"]["state"] in ("JobComplete", "Failed", "Aborted"):
            return 400, [{"errorCode": "INVALIDJOBSTATE", "message": f"Job is already {job['info']['state']}"}]
        job["info"]["state"] = "Aborted"
        return 200, job["info"]

    def delete_job(self, job_id: str) -> tuple[int, Any]:
        if self.jobs.pop(job_id, None) is None:
            return 404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
        return 204, ""

    def results(self, job_id: str, params: dict[str, str]) -> tuple[int, Any, dict[str, str]] | tuple[int, Any]:
        job = self.jobs.get(job_id)
        if job is None:
            return 404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
        if job["info"]["state"] != "JobComplete":
            return 400, [{"errorCode": "INVALIDJOBSTATE", "message": f"Job is {job['info']['state']}, not JobComplete"}]
        try:
            start = int(_unb64(params["locator"])) if params.get("locator") else 0
            size = int(params.get("maxRecords") or 10000)
        except ValueError:
            return 400, [{"errorCode": "INVALIDLOCATOR", "message": "The locator or maxRecords is invalid"}]
        rows = job["rows"][start:start + max(1, size)]
        end = start + len(rows)
        out = io.StringIO()
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(job["names"])
        writer.writerows(rows)
        locator = base64.urlsafe_b64encode(str(end).encode()).decode().rstrip("=") if end < len(job["rows"]) else "null"
        return 200, out.getvalue(), {
            "Content-Type": "text/csv", "Sforce-Locator": locator, "Sforce-NumberOfRecords": str(len(rows)),
        }

    # -- OAuth 2.0 ---------------------------------------------------------------

    def _jwt_refusal(self, assertion: str) -> tuple[str, str] | None:
        """Why Salesforce would refuse this assertion, or None."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            head, body, signature = assertion.split(".")
            header, claims = json.loads(_unb64(head)), json.loads(_unb64(body))
            self._jwt_key.verify(_unb64(signature), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except (ValueError, InvalidSignature):
            return "invalid_grant", "invalid assertion"
        if header.get("alg") != "RS256":
            return "invalid_grant", "invalid assertion"
        if claims.get("iss") != self.CLIENT_ID:
            return "invalid_client_id", "client identifier invalid"
        if claims.get("aud") != self.url:
            return "invalid_grant", "audience is invalid"
        if claims.get("sub") != self.USERNAME:
            return "invalid_grant", "user hasn't approved this consumer"
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= time.time():
            return "invalid_grant", "expired authorization code"
        if exp > time.time() + 240:  # within 3 minutes, a minute of clock skew allowed
            return "invalid_grant", "invalid assertion expiration"
        return None

    def token(self, form: dict[str, str]) -> tuple[int, Any]:
        grant = form.get("grant_type")
        app_ok = form.get("client_id") == self.CLIENT_ID and form.get("client_secret") == self.CLIENT_SECRET
        if grant == "password":
            ok = app_ok and form.get("username") == self.USERNAME and form.get("password") == self.PASSWORD + self.SECURITY_TOKEN
        elif grant == "refresh_token":
            presented = form.get("refresh_token", "")
            ok = app_ok and presented in self.refresh_tokens
            if app_ok and presented in self.spent_refresh_tokens:
                self.grants["refresh_token:reused"] += 1
                self.refresh_tokens.clear()  # a replayed token: revoke the family
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            self.assertions.append(form.get("assertion", ""))
            refusal = self._jwt_refusal(form.get("assertion", ""))
            if refusal is not None:
                return 400, {"error": refusal[0], "error_description": refusal[1]}
            ok = True
        else:
            return 400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"}
        if not ok:
            self.grants[f"{grant}:refused"] += 1
            return 400, {"error": "invalid_grant", "error_description": "authentication failure"}
        self.grants[f"{grant}:ok"] += 1
        session = "00D5g000004Fake!AQ" + secrets.token_urlsafe(48).replace("-", "x").replace("_", "y")
        self.sessions.add(session)
        answer = {
            "access_token": session, "instance_url": self.url, "id": f"{self.url}/id/00D5g000004FakeEAA/0055g00000AbCdEAAV",
            "token_type": "Bearer", "issued_at": "1704067200000", "signature": secrets.token_urlsafe(32),
        }
        if grant not in ("password", "refresh_token"):  # the JWT flow answers with scopes and no signature
            answer = {k: v for k, v in answer.items() if k not in ("signature", "issued_at")} | {"scope": "api"}
        if grant == "refresh_token" and self.rotate_refresh_tokens:
            rotated = "5Aep861" + secrets.token_urlsafe(40).replace("-", "x").replace("_", "y")
            self.refresh_tokens.discard(form["refresh_token"])
            self.spent_refresh_tokens.add(form["refresh_token"])
            self.refresh_tokens.add(rotated)
            answer["refresh_token"] = rotated
        return 200, answer


def _handler(org: FakeSalesforce) -> type[BaseHTTPRequestHandler]:
    prefix = f"/services/data/v{API_VERSION}/"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = body.encode() if isinstance(body, str) else _dumps(body).encode()
            self.send_response(status)
            for name, value in ({"Content-Type": "application/json;charset=UTF-8"} | (headers or {})).items():
                self.send_header(name, value)
            self.send_header("Sforce-Limit-Info", f"api-usage={org.api_usage}/{org.LIMIT}")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode()
            if urllib.parse.urlsplit(self.path).path == "/services/oauth2/token":
                with org._lock:
                    self._send(*org.token(dict(urllib.parse.parse_qsl(raw))))
                return
            self._api("POST", raw)

        def do_GET(self) -> None:
            self._api("GET", "")

        def do_PATCH(self) -> None:
            self._api("PATCH", self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())

        def do_DELETE(self) -> None:
            self._api("DELETE", "")

        def _api(self, method: str, raw: str) -> None:
            split = urllib.parse.urlsplit(self.path)
            with org._lock:
                org.requests.append(split.path if method == "GET" else f"{method} {split.path}")
                org.arrivals.append(time.monotonic())
                org.api_usage += 1
                if org.faults:
                    self._send(*org.faults.pop(0))
                    return
                auth = self.headers.get("Authorization", "")
                org.bearers.append(auth[7:])
                if not auth.startswith("Bearer ") or auth[7:] not in org.sessions:
                    self._send(401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
                    return
                body: Any
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    self._send(400, [{"message": "The request body is not JSON", "errorCode": "JSON_PARSER_ERROR"}])
                    return
                reply = self._route(method, split, body)
                headers = reply[2] if len(reply) == 3 else None
                self._send(reply[0], reply[1], headers)

        def _route(self, method: str, split: urllib.parse.SplitResult, body: Any) -> tuple[Any, ...]:
            missing = 404, [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]
            path = split.path
            if not path.startswith(prefix):
                return missing
            parts = path[len(prefix):].strip("/").split("/")
            params = dict(urllib.parse.parse_qsl(split.query))
            if parts[:2] == ["jobs", "query"]:
                jobs: dict[tuple[str, int], Any] = {
                    ("POST", 2): lambda: org.create_job(body),
                    ("GET", 3): lambda: org.job(parts[2]),
                    ("PATCH", 3): lambda: org.abort_job(parts[2], body),
                    ("DELETE", 3): lambda: org.delete_job(parts[2]),
                    ("GET", 4): lambda: org.results(parts[2], params) if parts[3] == "results" else missing,
                }
                call = jobs.get((method, len(parts)))
                return call() if call is not None else missing
            if method != "GET":
                return missing
            if len(parts) == 3 and parts[0] == "sobjects" and parts[2] == "describe":
                if parts[1] not in FIELDS:
                    return missing
                return 200, org.describe(parts[1])
            if parts[0] in ("query", "queryAll"):
                if len(parts) == 2:
                    return org.more(parts[1])
                options = self.headers.get("Sforce-Query-Options", "")
                found = re.search(r"batchSize=(\d+)", options)
                batch = max(200, min(2000, int(found.group(1)))) if found else 2000
                return org.query(params.get("q", ""), parts[0] == "queryAll", batch)
            return missing

    return Handler


# -- for tests and recordings ------------------------------------------------------


@contextlib.contextmanager
def recording(
    directory: Path, names: Sequence[str], port: int = 8421, *, accounts: int = 0, contacts: int = 0
) -> Iterator[FakeSalesforce]:
    """A fake org on ``port`` to record the cassettes ``names`` of ``directory``
    against; old copies are removed first, since vcr would append to them."""
    org = FakeSalesforce(port, accounts=accounts, contacts=contacts)
    try:
        for name in names:
            (directory / name).unlink(missing_ok=True)
        yield org
    finally:
        org.stop()


def password_credentials() -> SalesforcePassword:
    """The fake user's password credential."""
    from tapyard_salesforce._connector import SalesforcePassword

    F = FakeSalesforce
    return SalesforcePassword(
        username=F.USERNAME, password=F.PASSWORD, security_token=F.SECURITY_TOKEN,
        client_id=F.CLIENT_ID, client_secret=F.CLIENT_SECRET,
    )


def refresh_credentials() -> SalesforceRefreshToken:
    """The fake connected app's refresh-token credential."""
    from tapyard_salesforce._connector import SalesforceRefreshToken

    F = FakeSalesforce
    return SalesforceRefreshToken(client_id=F.CLIENT_ID, client_secret=F.CLIENT_SECRET, refresh_token=F.REFRESH_TOKEN)


def jwt_credentials(private_key: str, **fields: Any) -> SalesforceJwt:
    """A JWT bearer credential of the fake connected app and user, signing with ``private_key``."""
    from tapyard_salesforce._connector import SalesforceJwt

    values = {"client_id": FakeSalesforce.CLIENT_ID, "username": FakeSalesforce.USERNAME, **fields}
    return SalesforceJwt(private_key=private_key, **values)


def change(org: FakeSalesforce) -> dict[str, str]:
    """The changes the incremental cassettes were recorded after: 1 account
    renamed, 1 deleted, 5 created; 1 contact updated. Returns the ids touched."""
    accounts, contacts = org.records["Account"], org.records["Contact"]
    changed = {"renamed": accounts[10]["Id"], "deleted": accounts[20]["Id"], "contact": contacts[3]["Id"]}
    org.update(changed["renamed"], Name="Renamed Account")
    org.delete(changed["deleted"])
    org.update(changed["contact"], Email="moved@example.test")
    org.add("Account", 5)
    return changed


def fault(interaction: dict[str, Any], status: int, body: str, content_type: str = "application/json") -> dict[str, Any]:
    """A copy of a cassette interaction whose reply is ``status`` with ``body``,
    as the org says when its daily limit is spent."""
    copied: dict[str, Any] = json.loads(json.dumps(interaction))
    copied["response"] = {
        "status": {"code": status, "message": "fault"},
        "headers": {"Content-Type": [content_type], "Sforce-Limit-Info": ["api-usage=15001/15000"]},
        "body": {"string": body},
    }
    return copied


def edited(cassette: Path, target: Path, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> Path:
    """A copy of ``cassette`` at ``target`` whose interactions went through ``edit``
    (to inject faults into a replay)."""
    import yaml

    data = yaml.safe_load(cassette.read_text())
    data["interactions"] = edit(data["interactions"])
    target.write_text(yaml.safe_dump(data))
    return target
