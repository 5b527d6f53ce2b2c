"""Column policies for personal data: fields hashed, masked or dropped before a destination sees them."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

import tapyard
from tapyard.base._policies import Policies, hash_value, mask_value, parse_policies
from tapyard_sample import SampleConfig, source_records
from tests.creds_helpers import run, vault_environment

KEY = "policy-key-" + "0123456789abcdef" * 2
SIZE = 120
POLICY = "email=hash,phone=drop"


@pytest.fixture(autouse=True)
def policy_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAPYARD_POLICY_KEY", KEY)


def _hmac(value: str) -> str:
    return hmac.new(KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def _source(stream: str) -> list[dict[str, Any]]:
    return source_records(SampleConfig(records_per_stream=SIZE), stream)


def _personal_values() -> list[bytes]:
    emails = [r["email"] for r in _source("customers")]
    phones = [r["phone"] for r in _source("orders") if r["phone"]]
    assert len(emails) == SIZE and len(phones) > SIZE / 2
    return [v.encode() for v in emails + phones]


def _files(path: Path) -> bytes:
    """Every byte tapyard left for a destination: the file and its -wal, -shm and state files."""
    return b"".join(p.read_bytes() for p in sorted(path.parent.rglob(path.name + "*")) if p.is_file())


def _rows(db: Path, table: str) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return {row["id"]: dict(row) for row in conn.execute(f'SELECT * FROM "{table}"')}


class _BreakSome:
    """Corrupts every fifth customer and order so that it is dead-lettered with its raw payload."""

    @tapyard.hookimpl
    def tapyard_map_records(self, connector: Any, stream: Any, records: list[dict[str, Any]]) -> Any:
        if stream.name == "customers":
            return [{**r, "balance": "lots"} if int(r["id"][4:]) % 5 == 0 else r for r in records]
        if stream.name == "orders":
            return [{**r, "amount": "lots"} if int(r["id"][4:]) % 5 == 0 else r for r in records]
        return None


def test_hash_and_drop_on_sqlite_leave_no_personal_value_anywhere(
    tmp_path: Path, register_plugin: Any
) -> None:
    plain, policied = tmp_path / "plain.db", tmp_path / "policied.db"
    config = {"records_per_stream": SIZE, "page_size": 25}
    register_plugin(_BreakSome(), "break-some")
    assert tapyard.sync("sample", config, to=f"sqlite:///{plain}").ok
    result = tapyard.sync("sample", config, to=f"sqlite:///{policied}", policies=POLICY)
    assert result.ok and sum(s.dead_letters for s in result.streams) > 0
    data = _files(policied)
    leaked = [v for v in _personal_values() if v in data]
    assert not leaked, f"{len(leaked)} personal values in the destination, e.g. {leaked[0]!r}"
    assert any(v in _files(plain) for v in _personal_values())  # the check can see them

    customers, orders = _rows(policied, "customers"), _rows(policied, "orders")
    plain_customers, plain_orders = _rows(plain, "customers"), _rows(plain, "orders")
    assert customers.keys() == plain_customers.keys() and orders.keys() == plain_orders.keys()
    source = {r["id"]: r for r in _source("customers")}
    for cid, row in customers.items():
        # The hash is HMAC-SHA256 under the key: anyone with the key can join on it.
        assert row.pop("email") == _hmac(source[cid]["email"])
        expected = dict(plain_customers[cid])
        expected.pop("email")
        assert row == expected  # every other field exactly as without the policy
    for oid, row in orders.items():
        assert "phone" not in row
        expected = dict(plain_orders[oid])
        expected.pop("phone")
        assert row == expected
    assert _rows(policied, "events") == _rows(plain, "events")

    # Dead letters keep their raw payload, policied the same way.
    with sqlite3.connect(policied) as conn:
        dead = [(s, json.loads(raw)) for s, raw in conn.execute("SELECT stream, raw FROM _tapyard_dead_letters")]
    assert {s for s, _ in dead} == {"customers", "orders"}
    for stream, raw in dead:
        if stream == "customers":
            assert raw["email"] == _hmac(source[raw["id"]]["email"]) and raw["balance"] == "lots"
        else:
            assert "phone" not in raw and raw["amount"] == "lots"


def test_the_hash_is_stable_across_runs_and_destinations(tmp_path: Path) -> None:
    config = {"records_per_stream": SIZE}
    tapyard.sync("sample", config, to=f"sqlite:///{tmp_path / 'a.db'}", policies=POLICY)
    tapyard.sync("sample", config, to=f"sqlite:///{tmp_path / 'b.db'}", policies={"email": "hash"})
    tapyard.sync("sample", config, to=f"jsonl:///{tmp_path / 'c.jsonl'}", policies=POLICY)
    first = {k: r["email"] for k, r in _rows(tmp_path / "a.db", "customers").items()}
    second = {k: r["email"] for k, r in _rows(tmp_path / "b.db", "customers").items()}
    lines = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    third = {x["record"]["id"]: x["record"]["email"] for x in lines if x.get("stream") == "customers"}
    assert first == second == third and len(set(first.values())) == SIZE


def test_jsonl_records_and_dead_letters_carry_no_personal_value(tmp_path: Path, register_plugin: Any) -> None:
    out = tmp_path / "out.jsonl"
    register_plugin(_BreakSome(), "break-some")
    result = tapyard.sync("sample", {"records_per_stream": SIZE}, to=f"jsonl:///{out}", policies=POLICY)
    assert result.ok
    data = _files(out)
    assert not [v for v in _personal_values() if v in data]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    orders = [x["record"] for x in lines if x["stream"] == "orders" and "record" in x]
    dead = [x["dead_letter"]["raw"] for x in lines if "dead_letter" in x]
    assert orders and all("phone" not in r for r in orders)
    assert dead and all("phone" not in r for r in dead if r["id"].startswith("ord_"))
    source = {r["id"]: r for r in _source("orders")}
    for record in orders:
        assert {**record, "phone": source[record["id"]]["phone"]}.keys() == source[record["id"]].keys()
        assert record["amount"] == source[record["id"]]["amount"]
        assert record["items"] == source[record["id"]]["items"]


def test_mask_keep_and_kinds(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    policies = {"@*": "mask", "customers.name": "keep", "@address": "drop"}
    assert tapyard.sync("sample", {"records_per_stream": 30}, to=f"sqlite:///{db}", policies=policies).ok
    source = {r["id"]: r for r in source_records(SampleConfig(records_per_stream=30), "customers")}
    for cid, row in _rows(db, "customers").items():
        local, _, domain = source[cid]["email"].rpartition("@")
        assert row["email"] == f"{local[0]}***@{domain}"
        assert row["name"] == source[cid]["name"]
        assert "address" not in row
    orders = {r["id"]: r for r in source_records(SampleConfig(records_per_stream=30), "orders")}
    for oid, row in _rows(db, "orders").items():
        phone = orders[oid]["phone"]
        assert row["phone"] == (None if phone is None else "****" + phone[-4:])


def test_a_policies_key_in_the_config_and_the_cli_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "c.db"
    config = json.dumps({"records_per_stream": 20, "policies": {"email": "drop"}})
    code, _, err = run(capsys, "sync", "sample", "-c", config, "--policy", "phone=drop", "--to", f"sqlite:///{db}")
    assert code == 0, err
    assert "email" not in _rows(db, "customers")["cus_000001"]
    assert "phone" not in _rows(db, "orders")["ord_000001"]
    # --policy wins over the config for the same field
    db2 = tmp_path / "d.db"
    code, _, err = run(capsys, "sync", "sample", "-c", config, "--policy", "email=hash", "--to", f"sqlite:///{db2}")
    assert code == 0, err
    assert len(_rows(db2, "customers")["cus_000001"]["email"]) == 64


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("emial=hash", "did you mean 'email'?"),
        ("email=hush", "unknown action 'hush'"),
        ("email", "FIELD=ACTION"),
        ("customers.id=hash", "primary key"),
        ("updated_at=mask", "cursor field"),
        ("invoices.email=hash", "no stream named 'invoices'"),
        ("orders.email=hash", "stream 'orders' has no field 'email'"),
        ("@ssn=drop", "matches no field"),
        ("a b=hash", "use FIELD, STREAM.FIELD"),
        ("\x1b[31m" + "x" * 5000 + "=drop", "use FIELD, STREAM.FIELD"),
    ],
)
def test_a_bad_policy_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], policy: str, message: str
) -> None:
    db = tmp_path / "x.db"
    code, _, err = run(capsys, "sync", "sample", "--policy", policy, "--to", f"sqlite:///{db}")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and message in lines[0], err
    assert "\x1b" not in err and len(err) < 400
    if db.exists():
        with sqlite3.connect(db) as conn:
            tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in set(tables) & {"customers", "orders", "events"}:
                assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


def test_without_a_key_the_installation_key_is_made_once_and_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("TAPYARD_POLICY_KEY")
    home = tmp_path / "home"
    monkeypatch.setenv("TAPYARD_HOME", str(home))
    config = {"records_per_stream": 20}
    assert tapyard.sync("sample", config, to=f"sqlite:///{tmp_path / 'a.db'}", policies=POLICY).ok
    key_file = home / "policy.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text().strip()
    assert len(key) == 64 and not list(home.glob(".policy.key.*"))
    assert tapyard.sync("sample", config, to=f"sqlite:///{tmp_path / 'b.db'}", policies=POLICY).ok
    first, second = _rows(tmp_path / "a.db", "customers"), _rows(tmp_path / "b.db", "customers")
    source = {r["id"]: r for r in source_records(SampleConfig(records_per_stream=20), "customers")}
    for cid, row in first.items():
        expected = hmac.new(key.encode(), source[cid]["email"].encode(), hashlib.sha256).hexdigest()
        assert row["email"] == second[cid]["email"] == expected
    # drop and mask need no key at all; an unusable key file is one line
    (home / "policy.key").write_text("short\n")
    with pytest.raises(tapyard.ConfigError, match="no usable policy key"):
        tapyard.sync("sample", config, to=f"sqlite:///{tmp_path / 'c.db'}", policies=POLICY)
    assert tapyard.sync("sample", config, to=f"sqlite:///{tmp_path / 'c.db'}", policies="phone=drop,email=mask").ok


def test_the_key_can_come_from_the_vault(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generator = vault_environment(monkeypatch, tmp_path)
    next(generator)
    monkeypatch.delenv("TAPYARD_POLICY_KEY")
    monkeypatch.setenv("PK_API_KEY", KEY)
    code, _, err = run(capsys, "creds", "add", "pii", "--connector", "sample", "--kind", "api_key", "--from-env", "PK_")
    assert code == 0, err
    db = tmp_path / "v.db"
    code, _, err = run(capsys, "sync", "sample", "-c", '{"records_per_stream": 10}', "--policy", "email=hash",
                       "--policy-key", "pii", "--to", f"sqlite:///{db}")  # fmt: skip
    assert code == 0, err
    source = {r["id"]: r for r in source_records(SampleConfig(records_per_stream=10), "customers")}
    assert all(row["email"] == _hmac(source[cid]["email"]) for cid, row in _rows(db, "customers").items())
    assert KEY not in err
    next(generator, None)


def test_discover_shows_the_marks_and_the_policies(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "discover", "sample", "--json", "--policy", POLICY)
    assert code == 0, err
    streams = {s["name"]: s for s in json.loads(out)["streams"]}
    assert streams["customers"]["personal"] == {"email": "email", "name": "name", "address": "address"}
    assert streams["orders"]["personal"] == {"phone": "phone"}
    assert streams["customers"]["policies"] == {"email": "hash"}
    assert streams["orders"]["policies"] == {"phone": "drop"}
    assert streams["customers"]["json_schema"]["properties"]["email"]["personal"] == "email"
    code, out, _ = run(capsys, "discover", "sample")
    assert code == 0 and "email (email)" in out and "phone (phone)" in out


class _Contact(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int
    mail: str | None = Field(None, alias="Mail", json_schema_extra={"personal": "email"})
    phone: str | None = None
    score: float = 0.0


class _Address(BaseModel):
    phone: str


def test_aliases_extras_nulls_and_non_object_dead_letters() -> None:
    policies = Policies.from_spec({"@email": "hash", "phone": "drop", "note": "mask"}, KEY)
    policy = policies.for_stream("contacts", _Contact)
    assert policy is not None
    policies.check_used()  # "note" is no declared field, but the model keeps extra keys
    items = [_Contact.model_validate({"id": 1, "Mail": "a@b.c", "phone": "+1 555", "score": 0.1, "note": "secret note"}),
             _Contact.model_validate({"id": 2, "Mail": None, "score": 1e300})]  # fmt: skip
    from tapyard.base._schema import DeadLetter

    out, dead = policy.apply(items, [DeadLetter(raw={"id": "x", "Mail": "d@e.f", "phone": "9"}, error="bad"),
                                     DeadLetter(raw="d@e.f", error="not an object")])  # fmt: skip
    first = out[0].model_dump(by_alias=True)
    assert first == {"id": 1, "Mail": hash_value(KEY.encode(), "a@b.c"), "score": 0.1, "note": "****note"}
    assert out[1].model_dump(by_alias=True)["Mail"] is None and out[1].score == 1e300
    assert dead[0].raw == {"id": "x", "Mail": hash_value(KEY.encode(), "d@e.f")}
    with pytest.raises(tapyard.ConfigError, match="did you mean 'phone'"):
        strict = Policies.from_spec({"phome": "drop"})
        strict.for_stream("contacts", _Address)
        strict.check_used()
    assert "d@e.f" not in json.dumps(dead[1].raw)
    stream = tapyard.Stream(name="contacts", primary_key=("id",), schema_model=_Contact)
    assert [c.name for c in policies.columns(stream, _Contact)] == ["id", "Mail", "score"]


def test_parsing_and_helpers() -> None:
    rules = parse_policies(["email=hash, phone=drop", "customers.name=mask", "@*=keep"])
    assert [(r.selector, r.action) for r in rules] == [
        ("email", "hash"), ("phone", "drop"), ("customers.name", "mask"), ("@*", "keep"),
    ]  # fmt: skip
    with pytest.raises(tapyard.ConfigError, match="given twice"):
        parse_policies(["email=hash", "email=drop"])
    assert mask_value("ada@example.com", "email") == "a***@example.com"
    assert mask_value("+15550001234") == "****1234" and mask_value("1234567") == "****"
    assert mask_value(None) is None and hash_value(b"k", None) is None
    assert hash_value(b"k", 42) == hmac.new(b"k", b"42", hashlib.sha256).hexdigest()
