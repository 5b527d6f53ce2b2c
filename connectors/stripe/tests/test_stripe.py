"""tapyard-stripe: replays of syncs recorded through the stripe SDK against
localstripe (cassettes/stripe), fault injection, bad input, and a live run.

Re-record: ``TAPYARD_RECORD=all .venv/bin/pytest connectors/stripe/tests/test_stripe.py -k record``
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

import tapyard
from tapyard.testing import cassette

CASSETTES = Path(__file__).parents[3] / "cassettes" / "stripe"
API = "http://127.0.0.1:8420"
CONFIG: dict[str, Any] = {"api_base": API, "page_size": 10, "max_network_retries": 3}
KEY = "rk_test_tapyardReadOnly0123456789"


def creds(key: str = KEY) -> Any:
    from tapyard_stripe._connector import StripeKey

    return StripeKey(api_key=key)


#: Values that break naive syncs, on the last customer seeded: combining marks, emoji,
#: right-to-left text, an empty string (not null), and a long value.
AWKWARD = {
    "name": "Zoe\u0301 \U0001f680 \u05e2\u05d1\u05e8\u05d9\u05ea",
    "description": "",
    "metadata": {"note": "x" * 500, "emoji": "\U0001f9fe", "empty": ""},
}


def seed(url: str) -> dict[str, list[str]]:
    """Objects made through the stripe SDK on the emulator: among them, payment
    intents confirmed with a card, whose ``latest_charge`` localstripe sends
    expanded (as Stripe does when asked to expand it)."""
    import stripe

    client = stripe.StripeClient("sk_test_seed0123456789", base_addresses={"api": url}).v1
    made: dict[str, list[str]] = {
        "customers": [], "products": [], "prices": [], "payment_intents": [], "charges": [], "confirmed": [],
    }
    for i in range(25):
        params: dict[str, Any] = {"email": f"c{i}@example.test", "name": f"Customer {i}"}
        if i == 24:
            params.update(AWKWARD)
        made["customers"].append(client.customers.create(params=params).id)
    for i in range(3):
        product = client.products.create(params={"name": f"Plan {i}"})
        made["products"].append(product.id)
        for amount in (500, 900):
            price = client.prices.create(params={"product": product.id, "currency": "eur", "unit_amount": amount * (i + 1)})
            made["prices"].append(price.id)
    for i in range(4):
        intent = client.payment_intents.create(params={"amount": 1000 + i, "currency": "eur", "customer": made["customers"][i]})
        made["payment_intents"].append(intent.id)
    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    for i in range(3):
        method = client.payment_methods.create(params={"type": "card", "card": card})
        made["charges"].append(client.charges.create(params={"amount": 2000 + i, "currency": "eur", "source": method.id}).id)
    for i in range(2):
        method = client.payment_methods.create(params={"type": "card", "card": card})
        intent = client.payment_intents.create(params={
            "amount": 3000 + i, "currency": "eur", "customer": made["customers"][5 + i],
            "payment_method": method.id, "confirm": True,
        })
        made["confirmed"].append(intent.id)
        made["charges"].append(intent.latest_charge.id)
    return made


def change(url: str, made: dict[str, list[str]]) -> None:
    """Between the runs: 2 customers updated, 1 deleted, 2 created; 1 product updated."""
    import stripe

    client = stripe.StripeClient("sk_test_seed0123456789", base_addresses={"api": url}).v1
    client.customers.update(made["customers"][3], params={"name": "Customer 3 (renamed)"})
    client.customers.update(made["customers"][7], params={"email": "seven@example.test"})
    client.customers.delete(made["customers"][11])
    for i in (25, 26):
        client.customers.create(params={"email": f"c{i}@example.test", "name": f"Customer {i}"})
    client.products.update(made["products"][0], params={"name": "Plan 0 (gold)"})


@pytest.mark.record
def test_record_against_localstripe(tmp_path: Path, start_localstripe: Any) -> None:
    server = start_localstripe(8420)
    try:
        made = seed(server.url)
        for name in ("full.yaml", "incremental.yaml"):
            (CASSETTES / name).unlink(missing_ok=True)  # vcr would append to an old one
        db = f"sqlite:///{tmp_path}/stripe.db"
        with cassette(CASSETTES / "full.yaml", record_mode="all"):
            first = tapyard.sync("stripe", CONFIG, credentials=creds(), to=db, concurrency=1)
        assert first.ok, first
        change(server.url, made)
        with cassette(CASSETTES / "incremental.yaml", record_mode="all"):
            second = tapyard.sync("stripe", CONFIG, credentials=creds(), to=db, concurrency=1)
        assert second.ok, second
        (CASSETTES / "seeded.json").write_text(json.dumps(made, indent=1) + "\n")
    finally:
        server.stop()


def _sync(tmp_path: Path, path: Path, key: str = KEY, db: str = "stripe.db") -> tapyard.SyncResult:
    with cassette(path):
        return tapyard.sync("stripe", CONFIG, credentials=creds(key), to=f"sqlite:///{tmp_path / db}", concurrency=1)


def _counts(result: tapyard.SyncResult) -> dict[str, int]:
    return {s.name: s.records for s in result.streams}


def _seeded() -> dict[str, list[str]]:
    return json.loads((CASSETTES / "seeded.json").read_text())  # type: ignore[no-any-return]


def test_replayed_full_sync_then_incremental_with_events(tmp_path: Path) -> None:
    made = _seeded()
    first = _sync(tmp_path, CASSETTES / "full.yaml")
    assert first.ok, [s.error for s in first.streams]
    counts = _counts(first)
    assert counts["customers"] == 25 and counts["products"] == 3 and counts["prices"] == 6
    assert counts["payment_intents"] == 6 and counts["charges"] == 5 and counts["events"] >= 36
    db = sqlite3.connect(tmp_path / "stripe.db")
    types = {r[1]: r[2] for r in db.execute("PRAGMA table_info(customers)")}
    assert types["created"] == "INTEGER" and types["email"] == "TEXT" and types["metadata"] == "TEXT"  # JSON text
    assert {r[1]: r[2] for r in db.execute("PRAGMA table_info(charges)")}["amount"] == "INTEGER"

    second = _sync(tmp_path, CASSETTES / "incremental.yaml")
    assert second.ok, [s.error for s in second.streams]
    customers = made["customers"]
    assert db.execute("SELECT count(*) FROM customers").fetchone() == (27,)
    assert db.execute("SELECT name FROM customers WHERE id = ?", (customers[3],)).fetchone() == ("Customer 3 (renamed)",)
    assert db.execute("SELECT email FROM customers WHERE id = ?", (customers[7],)).fetchone() == ("seven@example.test",)
    assert db.execute("SELECT id FROM customers WHERE deleted").fetchall() == [(customers[11],)]
    assert db.execute("SELECT name FROM products WHERE id = ?", (made["products"][0],)).fetchone() == ("Plan 0 (gold)",)
    # Only what changed came back (plus the boundary second, read again on purpose).
    counts = _counts(second)
    # customers: 3 listed by created[gte] (the boundary one and the 2 new), then 6
    # from events (the 3 changed ones, the 2 new ones and the boundary one again).
    assert counts["customers"] == 3 + 6 and counts["charges"] <= 2 and counts["prices"] <= 2
    assert second.http["requests"] == 14


def _fault(template: dict[str, Any], status: int, body: str, headers: dict[str, list[str]]) -> dict[str, Any]:
    fault = yaml.safe_load(yaml.safe_dump(template))
    fault["response"] = {"status": {"code": status, "message": "fault"}, "headers": headers, "body": {"string": body}}
    return fault


def _with(tmp_path: Path, name: str, edit: Any) -> Path:
    data = yaml.safe_load((CASSETTES / "full.yaml").read_text())
    data["interactions"] = edit(data["interactions"])
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_429_and_5xx_injected_into_a_replay_are_retried_as_stripe_documents(tmp_path: Path) -> None:
    def edit(interactions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for i, interaction in enumerate(interactions):
            if i == 0:
                limited = '{"error": {"message": "Too many requests", "type": "rate_limit_error", "code": "rate_limit"}}'
                out.append(_fault(interaction, 429, limited, {"Content-Type": ["application/json"], "Retry-After": ["0"]}))
            if i == 1:
                out.append(_fault(interaction, 500, '{"error": {"type": "api_error"}}', {"Stripe-Should-Retry": ["true"]}))
            out.append(interaction)
        return out

    result = _sync(tmp_path, _with(tmp_path, "faults.yaml", edit))
    assert result.ok, [s.error for s in result.streams]
    assert _counts(result)["customers"] == 25
    assert result.http["throttled"] == 1 and result.http["server_errors"] == 1 and result.http["retries"] == 2


def test_stripe_should_retry_false_is_not_retried_and_fails_in_one_line(tmp_path: Path) -> None:
    def edit(interactions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        first = _fault(interactions[0], 500, '{"error": {"type": "api_error", "message": "An unknown error occurred"}}',
                       {"Stripe-Should-Retry": ["false"], "Content-Type": ["application/json"]})
        return [first, *interactions[1:]]

    result = _sync(tmp_path, _with(tmp_path, "noretry.yaml", edit))
    failed = {s.name: s.error for s in result.streams if s.status == "failed"}
    assert list(failed) == ["customers"] and result.http["retries"] == 0
    assert failed["customers"] == "GET /v1/customers failed: 500: An unknown error occurred"


def test_a_revoked_key_and_a_maintenance_page_are_one_line_each(tmp_path: Path) -> None:
    revoked = '{"error": {"message": "Expired API Key provided: rk_test_****6789", "type": "invalid_request_error"}}'
    page = "<html><head><title>Stripe maintenance</title></head><body>down</body></html>"

    def edit(interactions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for interaction in interactions:
            uri = interaction["request"]["uri"]
            if uri.endswith("/v1/customers?limit=10"):
                interaction = _fault(interaction, 401, revoked, {"Content-Type": ["application/json"]})
            elif uri.endswith("/v1/products?limit=10"):
                interaction = _fault(interaction, 200, page, {"Content-Type": ["text/html"]})
            out.append(interaction)
        return out

    result = _sync(tmp_path, _with(tmp_path, "bad.yaml", edit))
    failed = {s.name: s.error or "" for s in result.streams if s.status == "failed"}
    assert set(failed) == {"customers", "products"}
    assert failed["customers"].startswith("GET /v1/customers was refused: 401; check the API key")
    assert "not Stripe JSON" in failed["products"]
    for message in failed.values():
        assert "\n" not in message and KEY not in message
    assert _counts(result)["prices"] == 6  # the other streams went on


def test_discover_lists_streams_and_a_bad_key_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from tapyard.cli import main

    assert main(["discover", "stripe", "--json"]) == 0
    streams = {s["name"]: s for s in json.loads(capsys.readouterr().out)["streams"]}
    assert list(streams) == ["customers", "charges", "payment_intents", "invoices", "subscriptions",
                             "products", "prices", "balance_transactions", "events"]
    assert streams["customers"]["cursor_field"] == "changed_at"
    assert streams["charges"]["json_schema"]["properties"]["amount"]["anyOf"][0]["type"] == "integer"
    with pytest.raises(Exception, match="starts with sk_ or, restricted, rk_"):
        creds("pk_test_public")
    assert main(["sync", "stripe", "--to", "jsonl:-"]) == 1
    assert "stripe needs an api_key credential" in capsys.readouterr().err


def test_live_sync_against_localstripe(tmp_path: Path, start_localstripe: Any) -> None:
    server = start_localstripe(0)
    try:
        made = seed(server.url)
        config = {**CONFIG, "api_base": server.url}
        db = f"sqlite:///{tmp_path}/live.db"
        first = tapyard.sync("stripe", config, credentials=creds(), to=db, concurrency=2)
        assert first.ok and _counts(first)["customers"] == 25
        change(server.url, made)
        second = tapyard.sync("stripe", config, credentials=creds(), to=db, concurrency=2)
        assert second.ok
        rows = sqlite3.connect(tmp_path / "live.db")
        assert rows.execute("SELECT count(*) FROM customers WHERE deleted").fetchone() == (1,)
    finally:
        server.stop()


def _expanded_checks(db: sqlite3.Connection, made: dict[str, list[str]]) -> None:
    """Payment intents whose latest_charge came expanded are all there, the id in
    the column and the object in ``latest_charge_expanded``; nothing dead-lettered."""
    assert db.execute("SELECT count(*) FROM _tapyard_dead_letters").fetchone() == (0,)
    rows = dict(db.execute("SELECT id, latest_charge FROM payment_intents WHERE latest_charge IS NOT NULL").fetchall())
    assert sorted(rows) == sorted(made["confirmed"])
    for intent, charge in rows.items():
        assert charge in made["charges"]
        kept = json.loads(db.execute("SELECT latest_charge_expanded FROM payment_intents WHERE id = ?", (intent,)).fetchone()[0])
        assert kept["id"] == charge and kept["object"] == "charge" and kept["payment_intent"] == intent
    columns = [r[1] for r in db.execute("PRAGMA table_info(payment_intents)")]
    for row in db.execute("SELECT * FROM payment_intents"):  # client_secret is never stored
        assert not any("_secret_" in str(value) for value in row), dict(zip(columns, row, strict=True))
    plain = db.execute("SELECT count(*) FROM payment_intents WHERE latest_charge IS NULL AND latest_charge_expanded IS NULL")
    assert plain.fetchone() == (4,)
    name, description, metadata = db.execute(
        "SELECT name, description, metadata FROM customers WHERE id = ?", (made["customers"][24],)
    ).fetchone()
    assert (name, description, json.loads(metadata)) == (AWKWARD["name"], "", AWKWARD["metadata"])


def test_replayed_expanded_objects_are_kept_not_dead_lettered(tmp_path: Path) -> None:
    result = _sync(tmp_path, CASSETTES / "full.yaml")
    assert result.ok and _counts(result)["payment_intents"] == 6
    _expanded_checks(sqlite3.connect(tmp_path / "stripe.db"), _seeded())


def test_live_expanded_fields_as_ids_and_objects(tmp_path: Path, start_localstripe: Any) -> None:
    """Against localstripe: latest_charge comes expanded by itself; customer and
    payment_intent of charges are expanded on request (``expand``)."""
    server = start_localstripe(0)
    try:
        made = seed(server.url)
        config = {**CONFIG, "api_base": server.url, "expand": {"charges": ["customer", "payment_intent"]}}
        result = tapyard.sync("stripe", config, credentials=creds(), to=f"sqlite:///{tmp_path}/x.db", concurrency=2)
        assert result.ok and sum(s.dead_letters for s in result.streams) == 0
        db = sqlite3.connect(tmp_path / "x.db")
        _expanded_checks(db, made)
        charges = db.execute(
            "SELECT id, customer, customer_expanded, payment_intent, payment_intent_expanded FROM charges"
        ).fetchall()
        assert len(charges) == 5
        for _, customer, customer_obj, intent, intent_obj in charges:
            if customer is None:  # the three charges made from a bare card
                assert customer_obj is None
                continue
            assert customer in made["customers"] and json.loads(customer_obj)["id"] == customer
            assert intent in made["confirmed"] and json.loads(intent_obj)["id"] == intent
    finally:
        server.stop()


def test_expand_names_only_expandable_fields() -> None:
    from tapyard_stripe._connector import StripeConfig

    with pytest.raises(ValueError, match="charges cannot expand amount"):
        StripeConfig(expand={"charges": ["amount"]})
    with pytest.raises(ValueError, match="expand names stream 'nope'"):
        StripeConfig(expand={"nope": ["customer"]})


def seed_subscription(url: str) -> None:
    """A customer paying a monthly plan: a subscription, its invoice (whose
    ``charge`` localstripe sends expanded), a payment intent and a charge."""
    import stripe

    client = stripe.StripeClient("sk_test_seed0123456789", base_addresses={"api": url}).v1
    customer = client.customers.create(params={"email": "subscriber@example.test", "name": "Zoe\u0301"})
    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    method = client.payment_methods.create(params={"type": "card", "card": card})
    client.payment_methods.attach(method.id, params={"customer": customer.id})
    client.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": method.id}})
    plan = client.plans.create(params={"amount": 1234, "currency": "eur", "interval": "month", "product": {"name": "Gold"}})
    client.subscriptions.create(params={"customer": customer.id, "items": [{"plan": plan.id}]})


def test_schema_drift_against_localstripe(start_localstripe: Any) -> None:
    """Every field localstripe sends, in every stream, has a column (or is left out
    on purpose: each model's UNSYNCED), and no value is rejected or changed."""
    from tapyard.testing import schema_drift

    server = start_localstripe(0)
    try:
        seed(server.url)
        seed_subscription(server.url)
        config = {**CONFIG, "api_base": server.url}
        assert [str(d) for d in schema_drift("stripe", config, credentials=creds())] == []
        expanded = {**config, "expand": {"charges": ["customer", "payment_intent"], "invoices": ["customer"]}}
        assert [str(d) for d in schema_drift("stripe", expanded, credentials=creds())] == []
    finally:
        server.stop()


def test_undeclared_fields_are_kept_in_extra_and_secrets_never() -> None:
    from tapyard_stripe._models import PaymentIntent

    sent = {"id": "pi_1", "object": "payment_intent", "amount": 5, "client_secret": "pi_1_secret_x",
            "payment_method_types": ["card"], "latest_charge": {"id": "ch_1", "object": "charge"}}
    intent = PaymentIntent.model_validate(sent)
    assert intent.extra == {"payment_method_types": ["card"]}
    assert intent.latest_charge == "ch_1" and intent.latest_charge_expanded == {"id": "ch_1", "object": "charge"}
    assert "pi_1_secret_x" not in intent.model_dump_json()
    assert PaymentIntent.model_validate({"id": "pi_2", "object": "payment_intent"}).extra is None


LIMITED = (429, {"Content-Type": "application/json", "Retry-After": "1"},
           b'{"error": {"message": "Too many requests", "type": "rate_limit_error", "code": "rate_limit"}}')


def test_a_429_injected_live_is_paced_by_the_shared_limiter_and_counted(tmp_path: Path, start_localstripe: Any) -> None:
    """Through a proxy in front of localstripe that answers the second request with
    Stripe's 429: every request waits out its Retry-After, the run finishes, and the
    summary counts it. A --rate for the run keeps the server under it."""
    from tests.test_ratelimit import max_in_window

    from tapyard.testing import ThrottlingProxy

    server = start_localstripe(0)
    try:
        seed(server.url)
        with ThrottlingProxy(server.url, LIMITED, inject=(2,)) as proxy:
            config = {**CONFIG, "api_base": proxy.url, "events_resync": False}
            result = tapyard.sync("stripe", config, credentials=creds(), to=f"sqlite:///{tmp_path}/t.db",
                                  streams=["customers", "products"], concurrency=2)
        assert result.ok, [s.error for s in result.streams]
        assert _counts(result) == {"customers": 25, "products": 3}
        assert result.http["throttled"] == 1 and result.http["retries"] == 1
        assert proxy.after_throttle() >= 0.95
        with ThrottlingProxy(server.url, LIMITED, inject=()) as proxy:
            config = {**CONFIG, "api_base": proxy.url, "page_size": 2, "rate_limit": {"rate": 4, "burst": 1}}
            paced = tapyard.sync("stripe", config, credentials=creds(), to=f"sqlite:///{tmp_path}/r.db",
                                 streams=["customers"], concurrency=1)
        assert paced.ok
        arrivals = [a.at for a in proxy.arrivals]
        assert len(arrivals) == 13 and max_in_window(arrivals, 1.0) <= 5
        assert (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) <= 4 * 1.05
    finally:
        server.stop()
