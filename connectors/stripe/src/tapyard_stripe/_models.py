"""Record models of the Stripe streams: the fields most analyses need, typed;
nested objects kept as JSON. ``changed_at`` is tapyard's: when the row's
content was last known to change (the event's time for objects re-synced from
events, else the object's ``created``); it is the streams' cursor.

**Expandable fields.** Stripe sends a field such as ``latest_charge`` or
``customer`` as the related object's id, or, expanded (asked for with
``expand[]``, or as some emulators and older API versions send them), as the
object itself. Each model lists its expandable fields in ``EXPANDABLE``; for
each, the column holds the id either way, and ``<field>_expanded`` holds the
object as JSON when it came expanded (null otherwise).

**Fields left out.** Each model's ``UNSYNCED`` names the fields Stripe sends
that are left out on purpose (a secret, a deprecated alias, a list that has an
endpoint of its own). A field Stripe sends that no model field declares (one of
a newer API version) lands in ``extra``, as JSON, so nothing is dropped unseen;
the connector's schema-drift test gives every field localstripe sends a column
of its own."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

__all__ = [
    "BalanceTransaction",
    "Charge",
    "Customer",
    "Event",
    "Invoice",
    "PaymentIntent",
    "Price",
    "Product",
    "Subscription",
]


class _Object(BaseModel):
    model_config = ConfigDict(extra="ignore")

    #: fields Stripe sends as an id or, expanded, as the object
    EXPANDABLE: ClassVar[tuple[str, ...]] = ()
    #: fields Stripe sends that are left out on purpose (see the module docs)
    UNSYNCED: ClassVar[frozenset[str]] = frozenset()
    #: the field that keeps what Stripe sends and no other field declares
    UNDECLARED: ClassVar[str] = "extra"

    id: str
    object: str
    created: int | None = None
    livemode: bool | None = None
    metadata: dict[str, Any] | None = None
    changed_at: int | None = None
    deleted: bool = False
    #: what Stripe sent that no field here declares (a field of a newer API
    #: version, say), as JSON: nothing is dropped unseen
    extra: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _arrange(cls, data: Any) -> Any:
        """An expanded object becomes its id, the object moving to
        ``<field>_expanded``; ``UNSYNCED`` fields go; undeclared ones move to ``extra``."""
        if not isinstance(data, Mapping):
            return data
        out = {k: v for k, v in data.items() if k not in cls.UNSYNCED}
        for name in cls.EXPANDABLE:
            value = out.get(name)
            if isinstance(value, Mapping):
                out[f"{name}_expanded"] = dict(value)
                found = value.get("id")
                out[name] = found if isinstance(found, str) else None
        fields = cls.model_fields
        undeclared = {k: out.pop(k) for k in [k for k in out if k not in fields]}
        if undeclared:
            out["extra"] = undeclared
        return out


class Customer(_Object):
    EXPANDABLE = ("default_source",)
    # deprecated names of balance and tax_ids; lists with endpoints of their own
    UNSYNCED = frozenset({"account_balance", "business_vat_id", "sources", "subscriptions", "tax_ids"})

    email: str | None = None
    name: str | None = None
    description: str | None = None
    phone: str | None = None
    currency: str | None = None
    balance: int | None = None
    delinquent: bool | None = None
    address: dict[str, Any] | None = None
    shipping: dict[str, Any] | None = None
    discount: dict[str, Any] | None = None
    invoice_settings: dict[str, Any] | None = None
    preferred_locales: list[str] | None = None
    default_source: str | None = None
    default_source_expanded: dict[str, Any] | None = None


class Charge(_Object):
    EXPANDABLE = ("customer", "payment_intent", "balance_transaction", "invoice")
    UNSYNCED = frozenset({"refunds"})  # a list with an endpoint of its own

    amount: int | None = None
    amount_captured: int | None = None
    amount_refunded: int | None = None
    currency: str | None = None
    customer: str | None = None
    customer_expanded: dict[str, Any] | None = None
    description: str | None = None
    paid: bool | None = None
    captured: bool | None = None
    refunded: bool | None = None
    status: str | None = None
    payment_intent: str | None = None
    payment_intent_expanded: dict[str, Any] | None = None
    balance_transaction: str | None = None
    balance_transaction_expanded: dict[str, Any] | None = None
    invoice: str | None = None
    invoice_expanded: dict[str, Any] | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    payment_method: str | None = None
    receipt_email: str | None = None
    receipt_number: str | None = None
    statement_descriptor: str | None = None


class PaymentIntent(_Object):
    EXPANDABLE = ("customer", "payment_method", "latest_charge", "invoice")
    # client_secret completes a payment from a browser: a secret, never stored;
    # charges is the deprecated list that latest_charge replaced
    UNSYNCED = frozenset({"client_secret", "charges"})

    amount: int | None = None
    amount_received: int | None = None
    currency: str | None = None
    customer: str | None = None
    customer_expanded: dict[str, Any] | None = None
    description: str | None = None
    status: str | None = None
    capture_method: str | None = None
    payment_method: str | None = None
    payment_method_expanded: dict[str, Any] | None = None
    latest_charge: str | None = None
    latest_charge_expanded: dict[str, Any] | None = None
    invoice: str | None = None
    invoice_expanded: dict[str, Any] | None = None
    last_payment_error: dict[str, Any] | None = None
    next_action: dict[str, Any] | None = None


class Invoice(_Object):
    EXPANDABLE = ("customer", "subscription", "charge", "payment_intent")
    # deprecated (application_fee_amount, created, total_tax_amounts); lines has
    # an endpoint of its own
    UNSYNCED = frozenset({"application_fee", "date", "tax_percent", "lines"})

    customer: str | None = None
    customer_expanded: dict[str, Any] | None = None
    subscription: str | None = None
    subscription_expanded: dict[str, Any] | None = None
    charge: str | None = None
    charge_expanded: dict[str, Any] | None = None
    payment_intent: str | None = None
    payment_intent_expanded: dict[str, Any] | None = None
    status: str | None = None
    currency: str | None = None
    amount_due: int | None = None
    amount_paid: int | None = None
    amount_remaining: int | None = None
    total: int | None = None
    number: str | None = None
    period_start: int | None = None
    period_end: int | None = None
    attempt_count: int | None = None
    attempted: bool | None = None
    billing_reason: str | None = None
    collection_method: str | None = None
    customer_email: str | None = None
    description: str | None = None
    discount: dict[str, Any] | None = None
    starting_balance: int | None = None
    ending_balance: int | None = None
    subtotal: int | None = None
    tax: int | None = None
    total_tax_amounts: list[dict[str, Any]] | None = None
    default_tax_rates: list[Any] | None = None
    next_payment_attempt: int | None = None
    receipt_number: str | None = None
    statement_descriptor: str | None = None
    status_transitions: dict[str, Any] | None = None
    webhooks_delivered_at: int | None = None
    parent: dict[str, Any] | None = None


class Subscription(_Object):
    EXPANDABLE = ("customer", "latest_invoice", "default_payment_method")
    # deprecated (default_tax_rates); parameters of the create call that some
    # API versions and emulators echo back
    UNSYNCED = frozenset({"tax_percent", "trial_from_plan", "trial_period_days"})

    customer: str | None = None
    customer_expanded: dict[str, Any] | None = None
    status: str | None = None
    current_period_start: int | None = None
    current_period_end: int | None = None
    cancel_at_period_end: bool | None = None
    canceled_at: int | None = None
    items: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    quantity: int | None = None
    start_date: int | None = None
    billing_cycle_anchor: int | None = None
    cancel_at: int | None = None
    ended_at: int | None = None
    trial_start: int | None = None
    trial_end: int | None = None
    discount: dict[str, Any] | None = None
    default_tax_rates: list[Any] | None = None
    #: a percentage with decimals (``8.25``), kept exact
    application_fee_percent: Decimal | None = None
    latest_invoice: str | None = None
    latest_invoice_expanded: dict[str, Any] | None = None
    default_payment_method: str | None = None
    default_payment_method_expanded: dict[str, Any] | None = None


class Product(_Object):
    EXPANDABLE = ("default_price",)

    name: str | None = None
    description: str | None = None
    active: bool | None = None
    type: str | None = None
    updated: int | None = None
    attributes: list[str] | None = None
    caption: str | None = None
    shippable: bool | None = None
    statement_descriptor: str | None = None
    url: str | None = None
    default_price: str | None = None
    default_price_expanded: dict[str, Any] | None = None


class Price(_Object):
    EXPANDABLE = ("product",)

    product: str | None = None
    product_expanded: dict[str, Any] | None = None
    active: bool | None = None
    currency: str | None = None
    unit_amount: int | None = None
    #: sub-cent prices, as the decimal string Stripe sends (exact)
    unit_amount_decimal: Decimal | None = None
    nickname: str | None = None
    type: str | None = None
    recurring: dict[str, Any] | None = None


class BalanceTransaction(_Object):
    EXPANDABLE = ("source",)

    amount: int | None = None
    currency: str | None = None
    fee: int | None = None
    net: int | None = None
    status: str | None = None
    type: str | None = None
    source: str | None = None
    source_expanded: dict[str, Any] | None = None
    available_on: int | None = None
    description: str | None = None
    #: a decimal rate (``1.0856``), kept exact
    exchange_rate: Decimal | None = None
    fee_details: list[dict[str, Any]] | None = None
    reporting_category: str | None = None


class Event(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    object: str | None = None
    type: str
    created: int
    api_version: str | None = None
    livemode: bool | None = None
    data: dict[str, Any]
