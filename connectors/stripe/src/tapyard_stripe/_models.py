"""Record models of the Stripe streams: the fields most analyses need, typed;
nested objects kept as JSON. ``changed_at`` is tapyard's: when the row's
content was last known to change (the event's time for objects re-synced from
events, else the object's ``created``); it is the streams' cursor.

**Expandable fields.** Stripe sends a field such as ``latest_charge`` or
``customer`` as the related object's id, or, expanded (asked for with
``expand[]``, or as some emulators and older API versions send them), as the
object itself. Each model lists its expandable fields in ``EXPANDABLE``; for
each, the column holds the id either way, and ``<field>_expanded`` holds the
object as JSON when it came expanded (null otherwise)."""

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

    id: str
    object: str
    created: int | None = None
    livemode: bool | None = None
    metadata: dict[str, Any] | None = None
    changed_at: int | None = None
    deleted: bool = False

    @model_validator(mode="before")
    @classmethod
    def _expanded(cls, data: Any) -> Any:
        """An expanded object becomes its id, the object moving to ``<field>_expanded``."""
        if not isinstance(data, Mapping) or not any(isinstance(data.get(f), Mapping) for f in cls.EXPANDABLE):
            return data
        out = dict(data)
        for name in cls.EXPANDABLE:
            value = out.get(name)
            if isinstance(value, Mapping):
                out[f"{name}_expanded"] = dict(value)
                found = value.get("id")
                out[name] = found if isinstance(found, str) else None
        return out


class Customer(_Object):
    EXPANDABLE = ("default_source",)

    email: str | None = None
    name: str | None = None
    description: str | None = None
    phone: str | None = None
    currency: str | None = None
    balance: int | None = None
    delinquent: bool | None = None
    address: dict[str, Any] | None = None
    default_source: str | None = None
    default_source_expanded: dict[str, Any] | None = None


class Charge(_Object):
    EXPANDABLE = ("customer", "payment_intent", "balance_transaction", "invoice")

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


class PaymentIntent(_Object):
    EXPANDABLE = ("customer", "payment_method", "latest_charge", "invoice")

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


class Invoice(_Object):
    EXPANDABLE = ("customer", "subscription", "charge", "payment_intent")

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


class Subscription(_Object):
    EXPANDABLE = ("customer", "latest_invoice", "default_payment_method")

    customer: str | None = None
    customer_expanded: dict[str, Any] | None = None
    status: str | None = None
    current_period_start: int | None = None
    current_period_end: int | None = None
    cancel_at_period_end: bool | None = None
    canceled_at: int | None = None
    items: dict[str, Any] | None = None
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


class Event(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    type: str
    created: int
    api_version: str | None = None
    livemode: bool | None = None
    data: dict[str, Any]
