"""The sample server, over real HTTP: every paginator returns exactly ``Dataset.visible()``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tapyard_sample._data import T0, Dataset, format_timestamp
from tapyard_sample._server import SampleServer

# 237 = 3 * 79: page size 79 divides it exactly, the others leave a short last page.
N = 237
PAGE_SIZES = [1, 7, 79, 100, 1000]
MIDWAY = T0 + timedelta(days=18)


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return Dataset(N, seed=5)


@pytest.fixture(scope="module")
def server(dataset: Dataset) -> Iterator[SampleServer]:
    with SampleServer(dataset) as running:
        yield running


@pytest.fixture
def client(server: SampleServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        yield http


def page_customers(client: httpx.Client, limit: int, **params: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    query: dict[str, Any] = {"limit": limit, **params}
    while True:
        response = client.get("/v1/customers", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["object"] == "list" and len(body["data"]) <= limit
        records += body["data"]
        if not body["has_more"]:
            return records
        assert body["data"], "has_more with an empty page"
        query["starting_after"] = body["data"][-1]["id"]


def page_orders(client: httpx.Client, limit: int, **params: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    while True:
        query: dict[str, Any] = {"limit": limit, "offset": len(records), **params}
        response = client.get("/v1/orders", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["data"]) <= limit
        records += body["data"]
        if not body["data"] or len(records) >= body["total"]:
            assert len(records) == body["total"]
            return records


def page_events(client: httpx.Client, limit: int, **params: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    response = client.get("/v1/events", params={"limit": limit, **params})
    while True:
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert len(data) <= limit
        records += data
        following = response.links.get("next")
        if following is None:
            return records
        assert data, "a next link after an empty page"
        response = client.get(following["url"])


PAGERS = {"customers": page_customers, "orders": page_orders, "events": page_events}
FILTERS = {"customers": "updated_after", "orders": "updated_after", "events": "created_after"}


def ids(records: list[dict[str, Any]]) -> list[str]:
    return [record["id"] for record in records]


@pytest.mark.parametrize("limit", PAGE_SIZES)
@pytest.mark.parametrize("stream", Dataset.STREAMS)
def test_paging_returns_exactly_the_visible_records_in_order(
    client: httpx.Client, dataset: Dataset, stream: str, limit: int
) -> None:
    records = PAGERS[stream](client, limit)
    assert len(set(ids(records))) == len(records) == N
    assert records == dataset.visible(stream)


@pytest.mark.parametrize("stream", Dataset.STREAMS)
def test_the_cursor_filter_is_strict(client: httpx.Client, dataset: Dataset, stream: str) -> None:
    field = dataset.cursor_field(stream)
    expected = dataset.visible(stream)
    for position in (0, 100, N - 2, N - 1):
        cursor = expected[position][field]
        records = PAGERS[stream](client, 50, **{FILTERS[stream]: cursor})
        assert records == expected[position + 1 :]


@pytest.mark.parametrize(
    "variant",
    [
        lambda stamp: stamp,
        lambda stamp: stamp.replace("Z", "+00:00"),
        lambda stamp: stamp[:19] + "Z",
        lambda stamp: stamp[:19],
    ],
    ids=["own-format", "offset", "no-fraction", "naive"],
)
def test_filters_accept_every_iso_variant(
    client: httpx.Client, dataset: Dataset, variant: Any
) -> None:
    stamp = format_timestamp(MIDWAY)
    expected = [r for r in dataset.visible("orders") if r["updated_at"] > stamp]
    records = page_orders(client, 100, updated_after=variant(stamp))
    assert records == expected


def test_an_unencoded_plus_in_an_offset_still_works(server: SampleServer, dataset: Dataset) -> None:
    stamp = format_timestamp(MIDWAY)
    url = f"{server.url}/v1/events?limit=1000&created_after={stamp[:19]}+00:00"
    response = httpx.get(url)
    assert response.status_code == 200, response.text
    assert response.json()["data"] == [
        r for r in dataset.visible("events") if r["created_at"] > stamp
    ]


def test_filters_and_cursors_combine(client: httpx.Client, dataset: Dataset) -> None:
    stamp = format_timestamp(MIDWAY)
    expected = [r for r in dataset.visible("customers") if r["updated_at"] > stamp]
    assert page_customers(client, 9, updated_after=stamp) == expected
    expected_events = [r for r in dataset.visible("events") if r["created_at"] > stamp]
    assert page_events(client, 9, created_after=stamp) == expected_events


def test_the_link_header(client: httpx.Client, server: SampleServer) -> None:
    first = client.get("/v1/events", params={"limit": 100})
    link = first.headers["Link"]
    assert link.startswith(f"<{server.url}/v1/events?") and link.endswith('>; rel="next"')
    last = client.get("/v1/events", params={"limit": 1000})
    assert "Link" not in last.headers
    assert client.get("/v1/events", params={"limit": N}).headers.get("Link") is None


def test_orders_report_the_filtered_total(client: httpx.Client, dataset: Dataset) -> None:
    stamp = format_timestamp(MIDWAY)
    body = client.get("/v1/orders", params={"limit": 5, "updated_after": stamp}).json()
    assert body["total"] == sum(r["updated_at"] > stamp for r in dataset.visible("orders"))
    past_the_end = client.get("/v1/orders", params={"offset": 10_000}).json()
    assert past_the_end == {"data": [], "total": N}


def test_limit_defaults_to_100_and_is_capped(dataset: Dataset) -> None:
    with (
        SampleServer(dataset, max_page_size=30) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        assert len(client.get("/v1/orders", params={"limit": 5000}).json()["data"]) == 30
        assert len(client.get("/v1/orders").json()["data"]) == 30
    with SampleServer(dataset) as server, httpx.Client(base_url=server.url) as client:
        assert len(client.get("/v1/orders").json()["data"]) == 100


def test_as_of_serves_the_past_and_can_move(dataset: Dataset) -> None:
    with SampleServer(dataset, as_of=MIDWAY) as server, httpx.Client(base_url=server.url) as client:
        for stream, pager in PAGERS.items():
            assert pager(client, 40) == dataset.visible(stream, MIDWAY)
        early = page_customers(client, 100)
        server.as_of = None
        assert server.as_of is None
        # An incremental sync from the last cursor sees exactly what changed since.
        cursor = early[-1]["updated_at"]
        changed = page_customers(client, 100, updated_after=cursor)
        assert changed == [r for r in dataset.visible("customers") if r["updated_at"] > cursor]
        assert {r["id"] for r in changed} & {r["id"] for r in early}


@pytest.mark.parametrize(
    ("path", "params", "fragment"),
    [
        ("/v1/customers", {"limit": "ten"}, "limit: not an integer"),
        ("/v1/customers", {"limit": "0"}, "limit: must be >= 1"),
        ("/v1/customers", {"starting_after": "cus_999999"}, "no customer with id"),
        ("/v1/customers", {"updated_after": "last tuesday"}, "not an ISO-8601 timestamp"),
        ("/v1/customers", {"offset": "3"}, "unknown parameter 'offset'"),
        ("/v1/orders", {"offset": "-1"}, "offset: must be >= 0"),
        ("/v1/orders", {"updated_after": "2024-02-30T00:00:00Z"}, "not an ISO-8601"),
        ("/v1/events", {"page_token": "garbage!"}, "page_token"),
        ("/v1/events", {"page_token": "Zm9vOmJhcg"}, "page_token"),
        ("/v1/events", {"updated_after": "2024-01-02T00:00:00Z"}, "unknown parameter"),
        ("/v1/health", {"limit": "3"}, "unknown parameter"),
    ],
)
def test_malformed_requests_get_400(
    client: httpx.Client, path: str, params: dict[str, str], fragment: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    assert fragment in response.json()["error"]["message"]


def test_a_repeated_parameter(client: httpx.Client) -> None:
    assert client.get("/v1/orders?limit=3&limit=3").status_code == 200
    conflicting = client.get("/v1/orders?limit=3&limit=4")
    assert (
        conflicting.status_code == 400
        and "more than once" in conflicting.json()["error"]["message"]
    )


def test_unknown_paths_and_methods(client: httpx.Client) -> None:
    for path in ("/", "/v1/invoices", "/v1/customers/cus_000001", "/v2/customers"):
        response = client.get(path)
        assert response.status_code == 404
        assert "message" in response.json()["error"]
    refused = client.post("/v1/customers", json={"name": "x"})
    assert refused.status_code == 405 and refused.headers["Allow"] == "GET"
    # The refused request's body was drained: the connection still works.
    assert client.get("/v1/health").json() == {"ok": True}


def test_keep_alive_reuses_one_connection(dataset: Dataset) -> None:
    with SampleServer(dataset) as server:
        with httpx.Client(base_url=server.url) as client:
            for _ in range(10):
                response = client.get("/v1/customers", params={"limit": 3})
                assert response.status_code == 200
                assert int(response.headers["Content-Length"]) == len(response.content)
        assert server.connections_opened == 1
        assert server.requests_served == 10


def test_latency_is_applied(dataset: Dataset) -> None:
    with (
        SampleServer(dataset, latency_ms=60) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        client.get("/v1/health")  # connect outside the timed requests
        started = time.perf_counter()
        for _ in range(3):
            assert client.get("/v1/health").status_code == 200
        assert time.perf_counter() - started >= 3 * 0.060


def test_rate_limit(dataset: Dataset) -> None:
    rate = 20.0
    with SampleServer(dataset, rate_limit_per_s=rate) as server:
        statuses: list[int] = []
        retry_afters: list[float] = []
        lock = threading.Lock()

        def hammer(deadline: float) -> None:
            with httpx.Client(base_url=server.url) as client:
                while time.perf_counter() < deadline:
                    response = client.get("/v1/health")
                    for header in (
                        "X-RateLimit-Limit",
                        "X-RateLimit-Remaining",
                        "X-RateLimit-Reset",
                    ):
                        assert header in response.headers
                    with lock:
                        statuses.append(response.status_code)
                        if response.status_code == 429:
                            retry_afters.append(float(response.headers["Retry-After"]))

        started = time.perf_counter()
        threads = [threading.Thread(target=hammer, args=(started + 1.0,)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        accepted, throttled = statuses.count(200), statuses.count(429)
        print(
            f"rate limit {rate}/s over {elapsed:.2f}s: {accepted} accepted, {throttled} throttled"
        )
        assert accepted + throttled == len(statuses)
        assert throttled > 0 and server.throttled == throttled
        assert server.requests_served == len(statuses)
        # The bucket starts full (capacity = rate) and refills at `rate`.
        assert accepted <= rate * elapsed + rate
        assert accepted >= rate * 0.5
        assert all(0 < wait <= 1 / rate + 0.001 for wait in retry_afters)


def test_rate_limit_headers_and_waiting_out_retry_after(dataset: Dataset) -> None:
    with (
        SampleServer(dataset, rate_limit_per_s=5) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        remaining = [
            int(client.get("/v1/health").headers["X-RateLimit-Remaining"]) for _ in range(5)
        ]
        assert remaining == [4, 3, 2, 1, 0]
        refused = client.get("/v1/health")
        assert refused.status_code == 429
        assert refused.json()["error"]["type"] == "rate_limited"
        assert refused.headers["X-RateLimit-Limit"] == "5"
        assert 0 < float(refused.headers["X-RateLimit-Reset"]) <= 1.0
        time.sleep(float(refused.headers["Retry-After"]))
        assert client.get("/v1/health").status_code == 200


def test_no_rate_limit_headers_without_a_limit(client: httpx.Client) -> None:
    assert "X-RateLimit-Limit" not in client.get("/v1/health").headers


def test_concurrent_clients_page_consistently(server: SampleServer, dataset: Dataset) -> None:
    results: dict[int, list[dict[str, Any]]] = {}

    def sync(worker: int) -> None:
        with httpx.Client(base_url=server.url) as client:
            results[worker] = page_events(client, 13 + worker)

    threads = [threading.Thread(target=sync, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(records == dataset.visible("events") for records in results.values())


def test_lifecycle(dataset: Dataset) -> None:
    server = SampleServer(dataset)
    with pytest.raises(RuntimeError):
        _ = server.url
    server.stop()  # stopping a server that never started is harmless
    server.start()
    url = server.url
    assert url.startswith("http://127.0.0.1:")
    with pytest.raises(RuntimeError):
        server.start()
    with httpx.Client(base_url=url) as client:
        assert client.get("/v1/health").json() == {"ok": True}
        # stop() also closes this idle keep-alive connection.
        server.stop()
        server.stop()
        with pytest.raises(httpx.TransportError):
            client.get("/v1/health")
    with pytest.raises(ValueError):
        SampleServer(dataset, max_page_size=0)


def test_warm_builds_every_listing_up_front(dataset: Dataset) -> None:
    with SampleServer(dataset) as server:
        server.warm()
        assert len(server._listings) == len(Dataset.STREAMS)
        assert httpx.get(f"{server.url}/v1/orders?limit=1").status_code == 200
        assert len(server._listings) == len(Dataset.STREAMS)
