"""The stock paginators, driven against a real local HTTP server.

Each test walks a paginated endpoint the way the sync engine does (first
request, fetch, extract the records, ask the paginator for the next request)
and checks that exactly the served records come back, in order, with no
request more than the style makes necessary.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from tapyard.base._exceptions import ResponseError
from tapyard.base._model import PageRequest, Paginator
from tapyard.sources._paginators import (
    STOCK_PAGINATORS,
    CursorPaginator,
    LinkHeaderPaginator,
    NextUrlPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    PageTokenPaginator,
    _link_values,
    dig,
)
from tests.paginated_server import RECORDS, N, PaginatedServer

PAGE_SIZES = [1, 50, 79, 500]  # one record a page, a remainder, N = 3 * 79, more than N
assert N % 79 == 0 and N % 50 != 0


@pytest.fixture
def server() -> Iterator[PaginatedServer]:
    with PaginatedServer() as running:
        yield running


@pytest.fixture
def client(server: PaginatedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, trust_env=False, timeout=10) as http:
        yield http


def walk(
    client: httpx.Client,
    paginator: Paginator,
    request: PageRequest | None,
    records_path: str,
    *,
    max_pages: int = 2 * N,
) -> tuple[list[dict[str, Any]], PageRequest | None]:
    """Read pages from ``request`` on; return the records and the request that would come next.

    Every request the paginator hands out must survive a trip through JSON, as
    the resume point saved in the stream state does.
    """
    records: list[dict[str, Any]] = []
    for _ in range(max_pages):
        if request is None:
            break
        # Only non-empty params: httpx replaces a URL's query with the params it is given.
        response = client.get(request.url, params=dict(request.params) or None)
        response.raise_for_status()
        body = response.json()
        page = dig(body, records_path)
        assert isinstance(page, list)
        records.extend(page)
        request = paginator.next(request, response, body, page)
        if request is not None:
            assert PageRequest.from_state(json.loads(json.dumps(request.to_state()))) == request
    return records, request


def read_all(
    client: httpx.Client, paginator: Paginator, url: str, params: dict[str, Any], records_path: str
) -> list[dict[str, Any]]:
    records, pending = walk(client, paginator, paginator.first(url, params), records_path)
    assert pending is None, "the paginator does not stop"
    return records


def pages(size: int) -> int:
    return math.ceil(N / size)


def pages_then_empty(size: int) -> int:
    """Styles that can only see the end in a short page need one more request when N divides evenly."""
    return pages(size) + (N % size == 0)


@dataclass(frozen=True)
class Style:
    """One endpoint of the server and the paginator configuration that reads it."""

    id: str
    url: str
    records_path: str
    make: Callable[[int], tuple[Paginator, dict[str, Any]]]
    requests: Callable[[int], int]


def _link_style(style: str) -> Callable[[int], tuple[Paginator, dict[str, Any]]]:
    return lambda s: (LinkHeaderPaginator(), {"per_page": s, "_style": style})


STYLES = [
    Style("cursor", "/cursor", "data", lambda s: (CursorPaginator(page_size=s), {}), pages),
    Style(
        "cursor_id_only",
        "/cursor",
        "data",
        lambda s: (CursorPaginator(page_size=s, has_more_field=None), {}),
        lambda s: pages(s) + 1,  # no flag: the end is an empty page
    ),
    Style(
        "cursor_token",
        "/cursor_token",
        "data",
        lambda s: (
            CursorPaginator(
                cursor_param="cursor",
                cursor_path="response_metadata.next_cursor",
                has_more_field=None,
                page_size=s,
            ),
            {},
        ),
        pages,
    ),
    Style(
        "salesforce",
        "/next_url_relative",
        "records",
        lambda s: (NextUrlPaginator(next_path="nextRecordsUrl"), {"_size": s}),
        pages,
    ),
    Style(
        "odata_cap",
        "/odata/Books",
        "value",
        lambda s: (NextUrlPaginator(next_path="@odata.nextLink"), {"_size": s}),
        pages_then_empty,
    ),
    Style(
        "odata_v2",
        "/odata_v2/Books",
        "d.results",
        lambda s: (NextUrlPaginator(next_path="d.__next"), {"_size": s}),
        pages,
    ),
    Style(
        "azure",
        "/azure",
        "value",
        lambda s: (
            NextUrlPaginator(next_path="nextLink"),
            {"api-version": "2023-01-01", "_size": s},
        ),
        pages,
    ),
    Style(
        "page_token",
        "/page_token",
        "items",
        lambda s: (PageTokenPaginator(limit_param="pageSize", page_size=s), {}),
        pages,
    ),
    Style(
        "aws",
        "/aws",
        "Items",
        lambda s: (
            PageTokenPaginator(
                token_path="NextToken",
                token_param="NextToken",
                limit_param="MaxResults",
                page_size=s,
            ),
            {},
        ),
        pages,
    ),
    Style(
        "offset",
        "/offset",
        "results",
        lambda s: (OffsetPaginator(page_size=s), {}),
        pages_then_empty,
    ),
    Style(
        "offset_total",
        "/offset_total",
        "results",
        lambda s: (OffsetPaginator(page_size=s, total_path="meta.total"), {}),
        pages,
    ),
    Style(
        "page_number",
        "/page_number",
        "items",
        lambda s: (PageNumberPaginator(page_size=s), {}),
        pages_then_empty,
    ),
    Style(
        "page_number_total",
        "/page_number",
        "items",
        lambda s: (PageNumberPaginator(page_size=s, total_pages_path="total_pages"), {}),
        pages,
    ),
    *(
        Style(
            f"link_{style}",
            "/link",
            "",
            _link_style(style),
            pages,
        )
        for style in ("absolute", "relative", "split", "combined")
    ),
]


@pytest.mark.parametrize("size", PAGE_SIZES)
@pytest.mark.parametrize("style", STYLES, ids=lambda style: style.id)
def test_reads_every_record_once_in_order(
    server: PaginatedServer, client: httpx.Client, style: Style, size: int
) -> None:
    paginator, params = style.make(size)

    records = read_all(client, paginator, style.url, params, style.records_path)

    assert records == RECORDS
    assert len(server.requests) == style.requests(size)


@pytest.mark.parametrize("style", STYLES, ids=lambda style: style.id)
def test_resumes_from_a_saved_request(
    server: PaginatedServer, client: httpx.Client, style: Style
) -> None:
    paginator, params = style.make(50)
    head, pending = walk(
        client, paginator, paginator.first(style.url, params), style.records_path, max_pages=2
    )
    assert pending is not None
    saved = json.dumps({"paginator": paginator.model_dump(), "resume": pending.to_state()})

    # A new run: the paginator rebuilt from its options, the position from the state alone.
    state = json.loads(saved)
    again = type(paginator).model_validate(state["paginator"])
    with httpx.Client(base_url=server.url, trust_env=False) as other:
        tail, end = walk(other, again, PageRequest.from_state(state["resume"]), style.records_path)

    assert end is None
    assert head + tail == RECORDS
    assert len(server.requests) == style.requests(50)


@pytest.mark.parametrize(
    "style",
    [s for s in STYLES if s.url in {"/next_url_relative", "/odata/Books", "/link"}],
    ids=lambda s: s.id,
)
def test_next_urls_are_absolute_and_carry_their_own_query(
    server: PaginatedServer, client: httpx.Client, style: Style
) -> None:
    paginator, params = style.make(100)
    request = paginator.first(style.url, params)
    response = client.get(request.url, params=request.params)
    body = response.json()

    following = paginator.next(request, response, body, dig(body, style.records_path))

    assert following is not None
    assert following.url.startswith(f"{server.url}/")
    assert following.params == {}


# Vendor quirks


def test_cap_odata_stops_at_an_empty_page_even_if_it_links_on(
    server: PaginatedServer, client: httpx.Client
) -> None:
    records = read_all(
        client,
        NextUrlPaginator(next_path="@odata.nextLink"),
        "/odata/Books",
        {"_size": 79, "_sticky": 1},
        "value",
    )

    assert records == RECORDS
    assert len(server.requests) == 4
    assert (
        "@odata.nextLink"
        in client.get(server.url + "/odata/Books?_size=79&$skiptoken=237&_sticky=1").json()
    )


@pytest.mark.parametrize(
    ("url", "paginator", "params", "records_path"),
    [
        ("/page_token", PageTokenPaginator(limit_param="pageSize", page_size=50), {}, "items"),
        (
            "/azure",
            NextUrlPaginator(next_path="nextLink", stop_on_empty=False),
            {"api-version": "1", "_size": 50},
            "value",
        ),
        (
            "/cursor_token",
            CursorPaginator(
                cursor_param="cursor",
                cursor_path="response_metadata.next_cursor",
                has_more_field=None,
                page_size=50,
                stop_on_empty=False,
            ),
            {},
            "data",
        ),
    ],
    ids=["page_token", "azure", "cursor_token"],
)
def test_reads_past_empty_pages_that_carry_a_token(
    server: PaginatedServer,
    client: httpx.Client,
    url: str,
    paginator: Paginator,
    params: dict[str, Any],
    records_path: str,
) -> None:
    records = read_all(client, paginator, url, {**params, "_gaps": 1}, records_path)

    assert records == RECORDS
    assert len(server.requests) == 2 * pages(50) - 1
    assert sum(1 for r in server.requests if r.path == url) == 2 * pages(50) - 1


def test_stop_on_empty_ends_at_an_empty_page_with_a_token(
    server: PaginatedServer, client: httpx.Client
) -> None:
    paginator = PageTokenPaginator(limit_param="pageSize", page_size=50, stop_on_empty=True)

    records = read_all(client, paginator, "/page_token", {"_gaps": 1}, "items")

    assert records == RECORDS[:50]
    assert len(server.requests) == 2


def test_page_token_stops_when_the_token_comes_back_unchanged(
    server: PaginatedServer, client: httpx.Client
) -> None:
    paginator = PageTokenPaginator(
        token_path="NextToken", token_param="NextToken", limit_param="MaxResults", page_size=100
    )

    records = read_all(client, paginator, "/aws", {"_end_token": 1}, "Items")

    assert records == RECORDS
    assert len(server.requests) == pages(100) + 1


def test_a_server_that_ignores_the_cursor_is_an_error_not_a_silent_stop(
    server: PaginatedServer, client: httpx.Client
) -> None:
    with pytest.raises(ResponseError, match="handed back the position it was just asked for"):
        read_all(client, CursorPaginator(page_size=10), "/cursor", {"_ignore_cursor": 1}, "data")

    assert len(server.requests) == 2


def test_a_next_url_that_is_the_current_url_is_an_error_not_a_silent_stop(
    server: PaginatedServer, client: httpx.Client
) -> None:
    paginator = NextUrlPaginator(next_path="nextLink")

    with pytest.raises(ResponseError, match="handed back the URL it was just asked for"):
        read_all(client, paginator, "/azure", {"api-version": "1", "_size": 50, "_stuck": 1}, "value")

    assert len(server.requests) == 1


def test_offset_with_a_total_advances_by_what_a_capped_server_sent(
    server: PaginatedServer, client: httpx.Client
) -> None:
    paginator = OffsetPaginator(page_size=100, total_path="meta.total")

    records = read_all(client, paginator, "/offset_total", {"_cap": 40}, "results")

    assert records == RECORDS
    assert [int(r.query["offset"]) for r in server.requests] == list(range(0, N, 40))


def test_offset_sends_its_parameters(server: PaginatedServer, client: httpx.Client) -> None:
    read_all(
        client,
        OffsetPaginator(offset_param="skip", limit_param="top", page_size=100),
        "/offset",
        {},
        "results",
    )
    # The server reads offset/limit: with other names it serves its default page from 0.
    assert server.requests[0].query == {"skip": "0", "top": "100"}


def test_page_numbers_from_zero(server: PaginatedServer, client: httpx.Client) -> None:
    paginator = PageNumberPaginator(start=0, page_size=50, total_pages_path="total_pages")

    records = read_all(client, paginator, "/page_number", {"_base": 0}, "items")

    assert records == RECORDS
    assert [r.query["page"] for r in server.requests] == ["0", "1", "2", "3", "4"]


def test_page_numbers_with_a_fixed_server_page_size(
    server: PaginatedServer, client: httpx.Client
) -> None:
    paginator = PageNumberPaginator(size_param=None, page_size=30)

    records = read_all(client, paginator, "/page_number", {}, "items")

    assert records == RECORDS
    assert len(server.requests) == pages(30)
    assert all("per_page" not in r.query for r in server.requests)


def test_stream_params_ride_along(server: PaginatedServer, client: httpx.Client) -> None:
    paginator = PageTokenPaginator(limit_param="pageSize", page_size=100)

    read_all(client, paginator, "/page_token", {"filter": "a b", "orderBy": "id"}, "items")

    assert all(r.query["filter"] == "a b" and r.query["orderBy"] == "id" for r in server.requests)
    assert len(server.requests) == pages(100)


@pytest.mark.parametrize(
    ("url", "paginator", "records_path"),
    [
        (
            "/cursor_token",
            CursorPaginator(cursor_path="response_metadata", has_more_field=None),
            "data",
        ),
        ("/odata_v2/Books", NextUrlPaginator(next_path="d"), "d.results"),
        ("/offset_total", OffsetPaginator(total_path="meta"), "results"),
    ],
    ids=["cursor", "next_url", "total"],
)
def test_a_position_of_the_wrong_type_is_a_response_error(
    client: httpx.Client, url: str, paginator: Paginator, records_path: str
) -> None:
    with pytest.raises(ResponseError, match="paginator expected"):
        read_all(client, paginator, url, {}, records_path)


# first()


def test_first_adds_the_position_parameters_and_keeps_the_streams() -> None:
    params = {"q": "x"}
    assert CursorPaginator().first("/a", params) == PageRequest("/a", {"q": "x"})
    assert CursorPaginator(page_size=5).first("/a", params) == PageRequest(
        "/a", {"q": "x", "limit": 5}
    )
    assert PageTokenPaginator().first("/a", params) == PageRequest("/a", {"q": "x"})
    assert OffsetPaginator(page_size=7).first("/a", params) == PageRequest(
        "/a", {"q": "x", "offset": 0, "limit": 7}
    )
    assert PageNumberPaginator(start=0).first("/a", params) == PageRequest(
        "/a", {"q": "x", "page": 0, "per_page": 100}
    )
    assert NextUrlPaginator(next_path="n").first("/a", params) == PageRequest("/a", {"q": "x"})
    assert LinkHeaderPaginator().first("/a", params) == PageRequest("/a", {"q": "x"})
    assert params == {"q": "x"}


# Options


def test_stock_paginators_by_kind() -> None:
    assert {
        "cursor": CursorPaginator,
        "next_url": NextUrlPaginator,
        "page_token": PageTokenPaginator,
        "offset": OffsetPaginator,
        "page_number": PageNumberPaginator,
        "link_header": LinkHeaderPaginator,
    } == STOCK_PAGINATORS
    assert {kind for kind, cls in STOCK_PAGINATORS.items() if not cls.stable} == {
        "offset",
        "page_number",
    }


REQUIRED: dict[str, dict[str, Any]] = {"next_url": {"next_path": "nextLink"}}


@pytest.mark.parametrize("kind", sorted(STOCK_PAGINATORS))
def test_unknown_options_are_refused(kind: str) -> None:
    cls = STOCK_PAGINATORS[kind]
    cls.model_validate(REQUIRED.get(kind, {}))

    with pytest.raises(ValidationError, match="page_sise"):
        cls.model_validate({**REQUIRED.get(kind, {}), "page_sise": 10})


@pytest.mark.parametrize("kind", sorted(STOCK_PAGINATORS))
def test_options_are_frozen(kind: str) -> None:
    cls = STOCK_PAGINATORS[kind]
    paginator = cls.model_validate(REQUIRED.get(kind, {}))
    for name in cls.model_fields:
        with pytest.raises(ValidationError, match="frozen"):
            setattr(paginator, name, None)


@pytest.mark.parametrize(
    ("cls", "options"),
    [
        (NextUrlPaginator, {}),
        (NextUrlPaginator, {"next_path": ""}),
        (CursorPaginator, {"page_size": 0}),
        (CursorPaginator, {"cursor_param": ""}),
        (OffsetPaginator, {"page_size": -1}),
        (PageNumberPaginator, {"start": -1}),
        (PageNumberPaginator, {"page_size": "many"}),
        (PageTokenPaginator, {"page_size": 10}),
    ],
)
def test_bad_options_are_refused(cls: type[Paginator], options: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        cls.model_validate(options)


def test_options_round_trip_through_json() -> None:
    for cls in STOCK_PAGINATORS.values():
        paginator = cls.model_validate(REQUIRED.get(cls.kind, {}))  # type: ignore[attr-defined]
        assert cls.model_validate(json.loads(paginator.model_dump_json())) == paginator


# dig


BODY = {
    "@odata.nextLink": "literal",
    "@odata": {"nextLink": "nested"},
    "d": {"results": [{"id": 1}, {"id": 2}], "__next": None, "a.b": {"c": 3}},
    "meta": {"next": "m"},
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("@odata.nextLink", "literal"),
        ("meta.next", "m"),
        ("d.results.0.id", 1),
        ("d.results.-1.id", 2),
        ("d.a.b.c", 3),
        ("d.__next", None),
        ("d.missing", "default"),
        ("d.results.2", "default"),
        ("d.results.x", "default"),
        ("meta.next.deeper", "default"),
        ("", BODY),
    ],
)
def test_dig(path: str, expected: Any) -> None:
    assert dig(BODY, path, "default") == expected


def test_dig_falls_back_to_traversal_when_a_literal_prefix_leads_nowhere() -> None:
    assert dig({"a.b": {}, "a": {"b": {"c": 1}}}, "a.b.c") == 1
    assert dig([{"x": 1}], "0.x") == 1
    assert dig("text", "0") is None


# The Link header parser


def test_link_values_handle_several_links_quotes_and_rel_lists() -> None:
    header = (
        '<https://x/a?page=1>; rel="first"; title="a, <b>; c=\\"d\\"", '
        "</relative?page=3>;rel=next;REL=prev, "
        '<https://x/a;v=1,2>; rel="next last"; anchor="#x",'
        "garbage, <https://x/unclosed"
    )

    assert list(_link_values(header)) == [
        ("https://x/a?page=1", {"rel": "first", "title": 'a, <b>; c="d"'}),
        ("/relative?page=3", {"rel": "next"}),
        ("https://x/a;v=1,2", {"rel": "next last", "anchor": "#x"}),
    ]


def test_link_header_without_next_is_the_last_page() -> None:
    request = httpx.Request("GET", "https://x/items?page=5")
    response = httpx.Response(
        200, headers={"Link": '<https://x/items?page=4>; rel="prev"'}, request=request
    )

    assert LinkHeaderPaginator().next(PageRequest("/items", {}), response, [], []) is None


def test_link_header_picks_next_among_several_headers() -> None:
    request = httpx.Request("GET", "https://x/api/items?page=1")
    response = httpx.Response(
        200,
        headers=[
            ("Link", '<https://x/api/items?page=9>; rel="last"'),
            ("link", '<items?page=2>; rel="Next"'),
        ],
        request=request,
    )

    following = LinkHeaderPaginator().next(PageRequest("/items", {}), response, [{}], [{}])

    assert following == PageRequest("https://x/api/items?page=2", {})


# Without a server: flags as strings, and a response built without its request


@pytest.mark.parametrize(
    ("flag", "more"), [("false", False), ("0", False), ("", False), ("true", True)]
)
def test_has_more_as_a_string(flag: str, more: bool) -> None:
    following = CursorPaginator().next(
        PageRequest("/c", {}), httpx.Response(200), {"has_more": flag}, [{"id": 7}]
    )

    assert following == (PageRequest("/c", {"starting_after": 7}) if more else None)


def test_next_url_falls_back_to_the_request_url_without_a_response_url() -> None:
    paginator = NextUrlPaginator(next_path="next")

    following = paginator.next(
        PageRequest("https://x/v1/items", {"q": 1}),
        httpx.Response(200),
        {"next": "items?p=2"},
        [{}],
    )

    assert following == PageRequest("https://x/v1/items?p=2", {})
