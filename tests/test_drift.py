"""tapyard.testing.schema_drift: what a schema would drop, reject or change of
what a source yields, reported per stream and field."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

import tapyard
from tapyard.testing import Drift, schema_drift


class Invoice(BaseModel):
    model_config = ConfigDict(extra="ignore")
    UNSYNCED: ClassVar[frozenset[str]] = frozenset({"client_secret"})

    id: str
    total: float | None = None
    count: int | None = None
    lines: list[Any] | None = None


PAGES = [
    [{"id": "a", "total": 1.5, "count": 1, "client_secret": "x"}],
    [
        {"id": "b", "total": Decimal("98765432109876.54"), "count": 2, "discount": {"pct": 5}},
        {"id": "c", "total": None, "count": "many"},
        {"id": "d", "lines": {"not": "a list"}},
        "not an object",
    ],
]


class _Source(tapyard.Source):
    def streams(self) -> list[tapyard.Stream]:
        return [tapyard.Stream(name="invoices", schema_model=Invoice, primary_key=("id",))]

    def read(self, stream: tapyard.Stream, state: tapyard.StreamState, partition: Mapping[str, Any]) -> Iterator[tapyard.Page]:
        for page in PAGES:
            yield tapyard.Page(records=list(page), resume=None)


class _Connector(tapyard.Connector):
    name = "drifty"

    def streams(self, config: BaseModel) -> list[tapyard.Stream]:
        return _Source().streams()

    @contextlib.contextmanager
    def open(self, config: BaseModel, context: tapyard.RunContext) -> Iterator[tapyard.Source]:
        yield _Source()


def test_dropped_rejected_and_changed_fields_are_reported_once_each() -> None:
    found = schema_drift(_Connector(), {})
    assert [str(d) for d in found] == [
        "invoices.(record): rejected (a str, not an object)",
        "invoices.count: rejected (Input should be a valid integer, unable to parse string as an integer)",
        "invoices.discount: dropped",
        "invoices.lines: rejected (Input should be a valid list)",
        "invoices.total: changed (sent Decimal('98765432109876.54'), kept 98765432109876.55)",
    ]
    assert all(isinstance(d, Drift) for d in found)  # client_secret: left out on purpose (UNSYNCED)


def test_ignore_leaves_out_named_fields_and_limit_bounds_the_read() -> None:
    found = schema_drift(_Connector(), {}, ignore={"invoices": ["discount"]}, limit=1)
    assert [str(d) for d in found] == []  # the first page only, and it fits


def test_a_timestamp_cut_to_microseconds_is_a_change() -> None:
    import datetime as dt

    from tapyard.engine._drift import record_drift

    class Row(BaseModel):
        at: dt.datetime

    assert record_drift("s", Row, {"at": "2024-01-01T00:00:00.123456789+02:00"})[0].problem == "changed"
    assert record_drift("s", Row, {"at": "2024-01-01T00:00:00.123456000Z"}) == []
    assert record_drift("s", Row, {"at": "2024-01-01T00:00:00+02:00"}) == []


def test_keys_a_nested_model_would_drop_are_reported() -> None:
    from tapyard.engine._drift import record_drift

    class Line(BaseModel):
        sku: str

    class Order(BaseModel):
        id: str
        lines: list[Line] = []
        ship_to: Line | None = None

    found = record_drift("orders", Order, {"id": "1", "lines": [{"sku": "a", "qty": 2}], "ship_to": {"sku": "b", "gift": True}})
    assert sorted(str(d) for d in found) == ["orders.lines.qty: dropped", "orders.ship_to.gift: dropped"]
