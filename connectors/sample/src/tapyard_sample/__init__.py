"""The tapyard ``sample`` connector: a deterministic data set served over a real
local HTTP server, so the whole stack (HTTP engine, pagination, rate limits,
incremental sync, updates and deletes) runs with no credentials and no network.

It is a declarative :class:`tapyard.RestConnector`: three streams, each with a
different paginator (Stripe-style cursor, offset, RFC 8288 ``Link`` header).
The server starts on 127.0.0.1 when a run opens and stops when it closes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tapyard import RestConnector, RestStream, hookimpl

__all__ = ["SampleConfig", "connector", "source_records"]


class SampleConfig(BaseModel):
    """Configuration of the sample connector."""

    model_config = ConfigDict(extra="forbid")

    records_per_stream: int = Field(1000, ge=0, le=10_000_000, description="Entities in each stream.")
    page_size: int = Field(100, ge=1, le=1000, description="Records per page requested.")
    seed: int = Field(0, description="Seed of the deterministic data set.")
    latency_ms: float = Field(0, ge=0, le=60_000, description="Simulated API latency per response.")
    rate_limit_per_s: float = Field(
        0, ge=0, description="Server-side rate limit in requests per second (0: none)."
    )
    as_of: dt.datetime | None = Field(
        None,
        description="Only what was created or changed up to this time is visible (default: everything).",
    )


class Address(BaseModel):
    line1: str
    city: str
    country: str
    postal_code: str


class Customer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    email: str
    name: str
    tier: Literal["free", "pro", "enterprise"]
    balance: int
    address: Address
    tags: list[str]
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted: bool = False


class OrderItem(BaseModel):
    sku: str
    quantity: int
    unit_amount: int


class Order(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    customer_id: str
    amount: int
    currency: str
    status: str
    items: list[OrderItem]
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted: bool = False


class Event(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    type: str
    object_id: str
    created_at: dt.datetime
    data: dict[str, Any]


@contextlib.contextmanager
def _serve(config: BaseModel) -> Iterator[Mapping[str, Any]]:
    from tapyard_sample._data import Dataset
    from tapyard_sample._server import SampleServer

    assert isinstance(config, SampleConfig)
    dataset = Dataset(records_per_stream=config.records_per_stream, seed=config.seed)
    server = SampleServer(
        dataset,
        as_of=config.as_of,
        latency_ms=config.latency_ms,
        rate_limit_per_s=config.rate_limit_per_s,
    )
    with server:
        yield {"base_url": server.url}


def source_records(config: SampleConfig, stream: str) -> list[dict[str, Any]]:
    """What the server holds for ``stream`` under ``config``: for tests that compare."""
    from tapyard_sample._data import Dataset

    return Dataset(records_per_stream=config.records_per_stream, seed=config.seed).visible(
        stream, config.as_of
    )


connector = RestConnector(
    name="sample",
    description="Offline sample data (customers, orders, events) from a local HTTP server.",
    config_model=SampleConfig,
    auth_kinds=["none"],
    lifespan=_serve,
    check_path="/v1/health",
    streams=[
        RestStream(
            name="customers",
            description="Customers; updated and soft-deleted over time.",
            path="/v1/customers",
            schema_model=Customer,
            primary_key=("id",),
            cursor_field="updated_at",
            cursor_param="updated_after",
            paginator={"kind": "cursor", "cursor_param": "starting_after", "page_size": "{config.page_size}"},
        ),
        RestStream(
            name="orders",
            description="Orders; their status changes over time.",
            path="/v1/orders",
            schema_model=Order,
            primary_key=("id",),
            cursor_field="updated_at",
            cursor_param="updated_after",
            is_sorted=True,
            paginator={"kind": "offset", "page_size": "{config.page_size}", "total_path": "total"},
        ),
        RestStream(
            name="events",
            description="Append-only events.",
            path="/v1/events",
            schema_model=Event,
            primary_key=("id",),
            cursor_field="created_at",
            cursor_param="created_after",
            params={"limit": "{config.page_size}"},
            paginator={"kind": "link_header"},
        ),
    ],
)


@hookimpl
def tapyard_register_connectors(register: Any) -> None:
    register(connector)
