"""Record models of the Stripe streams: the fields most analyses need, typed;
nested objects kept as JSON. ``changed_at`` is tapyard's: when the row's
content was last known to change (the event's time for objects re-synced from
events, else the object's ``created``); it is the streams' cursor."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Object(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    object: str
    created: int | None = None
    livemode: bool | None = None
    metadata: dict[str, Any] | None = None
    changed_at: int | None = None
    deleted: bool = False


class Customer(_Object):
    email: str | None = None
    name: str | None = None
    description: str | None = None
    phone: str | None = None
    currency: str | None = None
    balance: int | None = None
    delinquent: bool | None = None
    address: dict[str, Any] | None = None


class Charge(_Object):
    amount: int | None = None
    amount_captured: int | None = None
    amount_refunded: int | None = None
    currency: str | None = None
    customer: str | None = None
    description: str | None = None
    paid: bool | None = None
    captured: bool | None = None
    refunded: bool | None = None
    status: str | None = None
    payment_intent: str | None = None
    balance_transaction: str | None = None
    failure_code: str | None = None


class PaymentIntent(_Object):
    amount: int | None = None
    amount_received: int | None = None
    currency: str | None = None
    customer: str | None = None
    description: str | None = None
    status: str | None = None
    capture_method: str | None = None
    payment_method: str | None = None
    latest_charge: str | None = None


class Invoice(_Object):
    customer: str | None = None
    subscription: str | None = None
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
    customer: str | None = None
    status: str | None = None
    current_period_start: int | None = None
    current_period_end: int | None = None
    cancel_at_period_end: bool | None = None
    canceled_at: int | None = None
    items: dict[str, Any] | None = None


class Product(_Object):
    name: str | None = None
    description: str | None = None
    active: bool | None = None
    type: str | None = None
    updated: int | None = None


class Price(_Object):
    product: str | None = None
    active: bool | None = None
    currency: str | None = None
    unit_amount: int | None = None
    nickname: str | None = None
    type: str | None = None
    recurring: dict[str, Any] | None = None


class BalanceTransaction(_Object):
    amount: int | None = None
    currency: str | None = None
    fee: int | None = None
    net: int | None = None
    status: str | None = None
    type: str | None = None
    source: str | None = None
    available_on: int | None = None


class Event(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    type: str
    created: int
    api_version: str | None = None
    livemode: bool | None = None
    data: dict[str, Any]
