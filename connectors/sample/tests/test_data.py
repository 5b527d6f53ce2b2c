"""The sample data set: deterministic, well-formed, and consistent across ``as_of``."""

from __future__ import annotations

import itertools
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tapyard_sample._data import T0, T_END, Dataset, format_timestamp, parse_timestamp

N = 600
STREAMS = Dataset.STREAMS
MUTABLE = ("customers", "orders")
PREFIXES = {"customers": "cus", "orders": "ord", "events": "evt"}
CHECKPOINTS = [T0 + timedelta(days=days) for days in (0.5, 7, 20, 31, 45, 59.9)]


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return Dataset(N, seed=7)


def ids(records: list[dict[str, Any]]) -> list[str]:
    return [record["id"] for record in records]


def by_id(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {record["id"]: record for record in records}


def test_same_seed_gives_the_same_data_and_another_seed_does_not() -> None:
    for stream in STREAMS:
        first = Dataset(200, seed=3).visible(stream)
        assert first == Dataset(200, seed=3).visible(stream)
        assert first != Dataset(200, seed=4).visible(stream)


def test_an_entity_does_not_depend_on_the_size_of_the_data_set() -> None:
    # Per-entity random streams: growing the data set only shifts timestamps.
    small, large = Dataset(100, seed=1), Dataset(100_000, seed=1)
    for stream, record_id in (("customers", "cus_000042"), ("orders", "ord_000042")):
        versions_small = small.history(stream, record_id)
        versions_large = large.history(stream, record_id)
        strip = {"created_at", "updated_at"}
        assert [{k: v for k, v in r.items() if k not in strip} for r in versions_small] == [
            {k: v for k, v in r.items() if k not in strip} for r in versions_large
        ]


@pytest.mark.parametrize("stream", STREAMS)
def test_each_stream_has_exactly_the_requested_entities_with_unique_ids(
    dataset: Dataset, stream: str
) -> None:
    records = dataset.visible(stream)
    assert len(records) == N
    assert sorted(ids(records)) == [f"{PREFIXES[stream]}_{i:06d}" for i in range(1, N + 1)]


def test_ids_widen_past_six_digits() -> None:
    assert Dataset(0).visible("customers") == []
    assert Dataset(1_234_567).history("orders", "ord_0000001")[0]["id"] == "ord_0000001"
    with pytest.raises(KeyError):
        Dataset(1_234_567).history("orders", "ord_000001")


@pytest.mark.parametrize("stream", STREAMS)
def test_listings_are_sorted_by_cursor_then_id(dataset: Dataset, stream: str) -> None:
    field = dataset.cursor_field(stream)
    for as_of in [*CHECKPOINTS, None]:
        records = dataset.visible(stream, as_of)
        keys = [(record[field], record["id"]) for record in records]
        assert keys == sorted(keys)


@pytest.mark.parametrize("stream", MUTABLE)
def test_every_timestamp_of_a_stream_is_unique(dataset: Dataset, stream: str) -> None:
    # Not just the final versions: any version may be the one visible at some
    # as_of, and a strict `cursor > last` must never drop a tie.
    # The first version's updated_at is its created_at, so this is every stamp.
    stamps = [
        version["updated_at"]
        for record_id in ids(dataset.visible(stream))
        for version in dataset.history(stream, record_id)
    ]
    assert len(stamps) == len(set(stamps))


def test_event_timestamps_are_unique(dataset: Dataset) -> None:
    stamps = [record["created_at"] for record in dataset.visible("events")]
    assert len(stamps) == len(set(stamps))


@pytest.mark.parametrize("stream", STREAMS)
def test_timestamps_follow_the_timeline(dataset: Dataset, stream: str) -> None:
    pattern = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
    created = []
    for index in range(1, N + 1):
        versions = dataset.history(stream, f"{PREFIXES[stream]}_{index:06d}")
        created.append(versions[0]["created_at"])
        for version in versions:
            assert pattern.match(version["created_at"])
            assert T0 <= parse_timestamp(version["created_at"]) < T0 + timedelta(days=30)
            if stream != "events":
                assert pattern.match(version["updated_at"])
                assert parse_timestamp(version["updated_at"]) <= T_END
        if stream != "events":
            stamps = [version["updated_at"] for version in versions]
            assert stamps[0] == versions[0]["created_at"]
            assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    # Creation times grow strictly with the index.
    assert created == sorted(created) and len(set(created)) == N


def test_customers_are_well_formed(dataset: Dataset) -> None:
    for customer in dataset.visible("customers"):
        assert set(customer) == {
            "id", "email", "name", "tier", "balance", "address", "tags",
            "created_at", "updated_at", "deleted",
        }  # fmt: skip
        assert customer["tier"] in {"free", "pro", "enterprise"}
        assert isinstance(customer["balance"], int)
        assert "@" in customer["email"]
        assert set(customer["address"]) == {"line1", "city", "country", "postal_code"}
        assert re.fullmatch(r"[A-Z]{2}", customer["address"]["country"])
        assert all(isinstance(tag, str) for tag in customer["tags"])
        assert isinstance(customer["deleted"], bool)


def test_orders_are_well_formed_and_point_at_existing_customers(dataset: Dataset) -> None:
    customers = set(ids(dataset.visible("customers")))
    for order in dataset.visible("orders"):
        assert order["customer_id"] in customers
        assert order["status"] in {"pending", "paid", "shipped", "refunded"}
        assert order["items"] and order["amount"] == sum(
            item["quantity"] * item["unit_amount"] for item in order["items"]
        )
        assert set(order["items"][0]) == {"sku", "quantity", "unit_amount"}


def test_events_are_well_formed(dataset: Dataset) -> None:
    for event in dataset.visible("events"):
        assert set(event) == {"id", "type", "object_id", "created_at", "data"}
        kind, _, _ = event["type"].partition(".")
        assert kind in {"customer", "order"}
        assert event["object_id"].startswith("cus_" if kind == "customer" else "ord_")
        assert event["data"]["object"]["id"] == event["object_id"]


@pytest.mark.parametrize("stream", MUTABLE)
def test_changes_and_deletions_happen_at_plausible_rates(stream: str) -> None:
    dataset = Dataset(2000, seed=11)
    histories = [dataset.history(stream, record["id"]) for record in dataset.visible(stream)]
    deleted = sum(versions[-1]["deleted"] for versions in histories)
    assert 0.02 * 2000 < deleted < 0.09 * 2000
    updates = {len(versions) - 1 - versions[-1]["deleted"] for versions in histories}
    # Orders run out of statuses: pending -> paid -> shipped -> refunded at most.
    assert (
        updates == {0, 1, 2, 3} if stream == "customers" else {0, 1, 2} <= updates <= {0, 1, 2, 3}
    )
    for versions in histories:
        assert all(not version["deleted"] for version in versions[:-1])
        for before, after in itertools.pairwise(versions):
            changed = {key for key in after if after[key] != before[key]}
            assert "updated_at" in changed and len(changed) >= 2
            assert after["created_at"] == before["created_at"] and after["id"] == before["id"]
    if stream == "orders":
        paths = {tuple(version["status"] for version in versions) for versions in histories}
        assert ("pending", "paid", "shipped") in {path[:3] for path in paths}
        assert any("refunded" in path for path in paths)
        allowed = {
            ("pending", "paid"),
            ("paid", "shipped"),
            ("paid", "refunded"),
            ("shipped", "refunded"),
        }
        for path in paths:
            steps = {(a, b) for a, b in itertools.pairwise(path) if a != b}
            assert steps <= allowed


@pytest.mark.parametrize("stream", STREAMS)
def test_visibility_grows_with_as_of(dataset: Dataset, stream: str) -> None:
    field = dataset.cursor_field(stream)
    previous: set[str] = set()
    for as_of in CHECKPOINTS:
        records = dataset.visible(stream, as_of)
        limit = format_timestamp(as_of)
        assert all(record["created_at"] <= limit and record[field] <= limit for record in records)
        current = set(ids(records))
        assert previous <= current
        previous = current
    assert previous <= set(ids(dataset.visible(stream)))


@pytest.mark.parametrize("stream", MUTABLE)
def test_later_as_of_shows_updates_and_deletions(dataset: Dataset, stream: str) -> None:
    early = by_id(dataset.visible(stream, T0 + timedelta(days=15)))
    final = by_id(dataset.visible(stream))
    updated = [
        rid for rid, record in early.items() if final[rid]["updated_at"] > record["updated_at"]
    ]
    newly_deleted = [
        rid for rid, record in early.items() if final[rid]["deleted"] and not record["deleted"]
    ]
    assert len(updated) > len(early) / 4
    assert newly_deleted


@pytest.mark.parametrize("stream", MUTABLE)
def test_visible_picks_the_latest_version_at_as_of(dataset: Dataset, stream: str) -> None:
    as_of = T0 + timedelta(days=25)
    limit = format_timestamp(as_of)
    for record in dataset.visible(stream, as_of)[::17]:
        versions = [v for v in dataset.history(stream, record["id"]) if v["updated_at"] <= limit]
        assert record == versions[-1]


def test_events_never_change(dataset: Dataset) -> None:
    final = by_id(dataset.visible("events"))
    for as_of in CHECKPOINTS:
        for record in dataset.visible("events", as_of):
            assert record == final[record["id"]]
    assert dataset.history("events", "evt_000001") == [final["evt_000001"]]


def test_as_of_bounds(dataset: Dataset) -> None:
    for stream in STREAMS:
        assert dataset.visible(stream, T0 - timedelta(microseconds=1)) == []
        assert dataset.visible(stream, T_END) == dataset.visible(stream, None)
        assert dataset.visible(stream, T_END + timedelta(days=400)) == dataset.visible(stream)
    assert dataset.end_of_time() == T_END
    # The very first entity of each stream is created at T0 exactly.
    assert ids(dataset.visible("events", T0)) == ["evt_000001"]


def test_as_of_accepts_any_timezone_and_naive_as_utc(dataset: Dataset) -> None:
    moment = T0 + timedelta(days=12, hours=5)
    paris = moment.astimezone(ZoneInfo("Europe/Paris"))
    naive = moment.replace(tzinfo=None)
    reference = dataset.visible("customers", moment)
    assert dataset.visible("customers", paris) == reference
    assert dataset.visible("customers", naive) == reference


def test_visible_returns_a_fresh_list(dataset: Dataset) -> None:
    records = dataset.visible("orders")
    records.clear()
    assert len(dataset.visible("orders")) == N


def test_unknown_stream_and_id() -> None:
    dataset = Dataset(10)
    with pytest.raises(ValueError, match="unknown stream"):
        dataset.visible("invoices")
    with pytest.raises(ValueError, match="unknown stream"):
        dataset.cursor_field("invoices")
    for stream, record_id in (
        ("customers", "cus_000011"),
        ("customers", "ord_000001"),
        ("orders", "x"),
    ):
        with pytest.raises(KeyError):
            dataset.history(stream, record_id)
    with pytest.raises(ValueError):
        Dataset(-1)


def test_cursor_fields() -> None:
    assert [Dataset.cursor_field(s) for s in STREAMS] == ["updated_at", "updated_at", "created_at"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-03T04:05:06.123456Z", "2024-01-03T04:05:06.123456Z"),
        ("2024-01-03T04:05:06Z", "2024-01-03T04:05:06.000000Z"),
        ("2024-01-03T04:05:06.5+00:00", "2024-01-03T04:05:06.500000Z"),
        ("2024-01-03T06:05:06+02:00", "2024-01-03T04:05:06.000000Z"),
        ("2024-01-03T04:05:06", "2024-01-03T04:05:06.000000Z"),
    ],
)
def test_timestamp_parsing_and_formatting(text: str, expected: str) -> None:
    assert format_timestamp(parse_timestamp(text)) == expected


def test_bad_timestamps_are_refused() -> None:
    for text in ("yesterday", "", "2024-13-01T00:00:00Z"):
        with pytest.raises(ValueError):
            parse_timestamp(text)
    assert parse_timestamp("2024-01-01T00:00:00Z") == datetime(2024, 1, 1, tzinfo=UTC)


def test_building_100k_records_per_stream_takes_seconds() -> None:
    # A sanity check, not a benchmark: the timings are printed (pytest -s), not asserted.
    dataset = Dataset(100_000)
    timings = []
    for stream in STREAMS:
        started = time.perf_counter()
        records = dataset.visible(stream)
        timings.append(f"{stream} {time.perf_counter() - started:.2f}s")
        assert len(records) == 100_000
    started = time.perf_counter()
    dataset.visible("customers", T0 + timedelta(days=20))
    timings.append(f"customers as of day 20 {time.perf_counter() - started:.2f}s")
    print("visible() for 100,000 records:", ", ".join(timings))
