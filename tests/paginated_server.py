"""A real local HTTP server that serves one fixed list of records in every
pagination style tapyard ships a paginator for.

Use it as a context manager: ``with PaginatedServer() as server:`` listens on
127.0.0.1 on a free port, ``server.url`` is its origin and
``server.requests`` lists every request it received, in order. Each path
mimics a vendor (response shape, parameter names, quirks):

=========================  ========================================================
``/cursor``                Stripe: ``limit``, ``starting_after``; ``data``, ``has_more``
``/cursor_token``          Slack: ``limit``, ``cursor``; ``data``,
                           ``response_metadata.next_cursor`` (``""`` at the end)
``/next_url_relative``     Salesforce: ``records``, ``done``, ``nextRecordsUrl``
                           (a path relative to the host)
``/odata/Books``           SAP CAP, OData v4: ``value``, ``@odata.nextLink`` relative
                           to the current URL, sent whenever a page is full, so a
                           record count that divides evenly ends with an empty page
``/odata_v2/Books``        OData v2: ``d.results``, ``d.__next`` (absolute)
``/azure``                 Azure: needs ``api-version``; ``value``, ``nextLink``
                           (absolute, ``null`` at the end)
``/page_token``            Google Cloud: ``pageSize``, ``pageToken``; ``items``,
                           ``nextPageToken`` (absent at the end)
``/aws``                   AWS: ``MaxResults``, ``NextToken``; ``Items``, ``NextToken``
``/offset``                ``offset``, ``limit``; ``results``
``/offset_total``          the same, plus ``meta.total``
``/page_number``           ``page``, ``per_page``; ``items``, ``total_pages``
``/link``                  GitHub: ``page``, ``per_page``; a bare list and a ``Link`` header
=========================  ========================================================

Query parameters starting with ``_`` switch on quirks (see each handler):
``_size`` (the page size where the vendor sets it server-side), ``_cap`` (the
largest page the server will send), ``_gaps`` (empty pages with a token before
each page after the first), ``_sticky``, ``_stuck``, ``_ignore_cursor``,
``_end_token``, ``_base`` and ``_style``. Next links carry them along.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit

N = 237
RECORDS: list[dict[str, Any]] = [
    {"id": f"rec_{i:04d}", "seq": i, "name": f"record {i}"} for i in range(1, N + 1)
]


class Received(NamedTuple):
    """One request the server received."""

    path: str
    query: dict[str, str]


class BadRequest(Exception):
    """Answered as 400 with the message."""


class Reply(NamedTuple):
    body: Any
    headers: list[tuple[str, str]] = []


class _Request(NamedTuple):
    origin: str
    path: str
    query: dict[str, str]

    def integer(self, name: str, default: int) -> int:
        try:
            return int(self.query.get(name, default))
        except ValueError:
            raise BadRequest(f"{name} is not an integer") from None

    def size(self, name: str, default: int) -> int:
        """The page size asked for, within the server's cap."""
        size = self.integer(name, default)
        if size < 1:
            raise BadRequest(f"{name} must be positive")
        return min(size, self.integer("_cap", 1000))

    def quirks(self) -> dict[str, str]:
        return {k: v for k, v in self.query.items() if k.startswith("_")}


def _token(offset: int, *, gap: bool = False) -> str:
    """An opaque token for ``offset``; a ``gap`` token answers an empty page first."""
    raw = json.dumps({"o": offset, "g": gap}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _untoken(token: str | None) -> tuple[int, bool]:
    if not token:
        return 0, False
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(data["o"]), bool(data["g"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise BadRequest("invalid token") from None


def _tokened_page(req: _Request, token: str | None, size: int) -> tuple[list[Any], str | None]:
    """The page at ``token`` and the token of the next one (``None`` at the end).

    With ``_gaps=1`` every page after the first is preceded by an empty page
    that carries a token, as Google Cloud Logging and some AWS and Azure APIs do.
    """
    offset, gap = _untoken(token)
    if gap:
        return [], _token(offset)
    end = min(offset + size, N)
    if end >= N:
        return RECORDS[offset:end], None
    return RECORDS[offset:end], _token(end, gap=req.query.get("_gaps") == "1")


def _cursor(req: _Request) -> Reply:
    """Stripe. ``_ignore_cursor=1``: a broken server that always answers the first page."""
    size = req.size("limit", 10)
    start = 0
    after = req.query.get("starting_after")
    if after is not None and req.query.get("_ignore_cursor") != "1":
        ids = [r["id"] for r in RECORDS]
        if after not in ids:
            raise BadRequest("no such object")
        start = ids.index(after) + 1
    end = min(start + size, N)
    has_more = end < N or req.query.get("_ignore_cursor") == "1"
    return Reply(
        {"object": "list", "url": "/cursor", "data": RECORDS[start:end], "has_more": has_more}
    )


def _cursor_token(req: _Request) -> Reply:
    """Slack: the next cursor in the body, ``""`` at the end."""
    page, token = _tokened_page(req, req.query.get("cursor"), req.size("limit", 10))
    return Reply({"ok": True, "data": page, "response_metadata": {"next_cursor": token or ""}})


def _salesforce(req: _Request) -> Reply:
    """Salesforce: a query, then its locator ``/next_url_relative/query/01g<size>-<offset>``."""
    if req.path == "/next_url_relative":
        size, offset = req.size("_size", 50), 0
    else:
        locator = req.path.removeprefix("/next_url_relative/query/01g")
        try:
            size, offset = (int(part) for part in locator.split("-"))
        except ValueError:
            raise BadRequest("invalid query locator") from None
    end = min(offset + size, N)
    body: dict[str, Any] = {"totalSize": N, "done": end >= N, "records": RECORDS[offset:end]}
    if end < N:
        body["nextRecordsUrl"] = f"/next_url_relative/query/01g{size}-{end}"
    return Reply(body)


def _odata(req: _Request) -> Reply:
    """SAP CAP: a next link, relative to the current URL, after every full page.

    ``_sticky=1``: the empty page after the last one links on, forever.
    """
    size = req.size("_size", 1000)
    offset = req.integer("$skiptoken", 0)
    page = RECORDS[offset : offset + size]
    body: dict[str, Any] = {"@odata.context": "$metadata#Books", "value": page}
    if len(page) == size or (not page and req.query.get("_sticky") == "1"):
        query = {**req.query, "$skiptoken": str(offset + size)}
        body["@odata.nextLink"] = "Books?" + urlencode(query, safe="$")
    return Reply(body)


def _odata_v2(req: _Request) -> Reply:
    """OData v2: ``d.results`` and an absolute ``d.__next``."""
    size = req.size("_size", 100)
    offset = req.integer("$skiptoken", 0)
    end = min(offset + size, N)
    d: dict[str, Any] = {"results": RECORDS[offset:end]}
    if end < N:
        query = {**req.query, "$skiptoken": str(end)}
        d["__next"] = f"{req.origin}/odata_v2/Books?" + urlencode(query, safe="$")
    return Reply({"d": d})


def _azure(req: _Request) -> Reply:
    """Azure: an absolute ``nextLink`` carrying ``api-version``; ``null`` at the end.

    ``_stuck=1``: a broken server whose next link is the current URL.
    """
    if "api-version" not in req.query:
        raise BadRequest("MissingApiVersionParameter")
    page, token = _tokened_page(req, req.query.get("$skipToken"), req.size("_size", 100))
    link = None
    if req.query.get("_stuck") == "1":
        link = f"{req.origin}{req.path}?" + urlencode(req.query, safe="$")
    elif token is not None:
        link = f"{req.origin}/azure?" + urlencode({**req.query, "$skipToken": token}, safe="$")
    return Reply({"value": page, "nextLink": link})


def _page_token(req: _Request) -> Reply:
    """Google Cloud: ``nextPageToken``, absent on the last page."""
    page, token = _tokened_page(req, req.query.get("pageToken"), req.size("pageSize", 50))
    body: dict[str, Any] = {"items": page}
    if token is not None:
        body["nextPageToken"] = token
    return Reply(body)


def _aws(req: _Request) -> Reply:
    """AWS: ``NextToken`` as parameter and body field, ``null`` at the end.

    ``_end_token=1``: CloudWatch Logs style, the end is a page that hands back
    the token it was asked with.
    """
    page, token = _tokened_page(req, req.query.get("NextToken"), req.size("MaxResults", 50))
    if token is None and req.query.get("_end_token") == "1":
        token = _token(N)
    return Reply({"Items": page, "NextToken": token})


def _offset(req: _Request) -> Reply:
    offset, size = req.integer("offset", 0), req.size("limit", 20)
    body: dict[str, Any] = {"results": RECORDS[offset : offset + size]}
    if req.path == "/offset_total":
        body["meta"] = {"total": N}
    return Reply(body)


def _page_number(req: _Request) -> Reply:
    """``page`` counts from ``_base`` (default 1)."""
    size, base = req.size("per_page", 30), req.integer("_base", 1)
    page = req.integer("page", base)
    offset = (page - base) * size
    return Reply(
        {
            "items": RECORDS[offset : offset + size] if offset >= 0 else [],
            "page": page,
            "total_pages": math.ceil(N / size),
        }
    )


def _link(req: _Request) -> Reply:
    """GitHub: a bare list and ``Link: <...>; rel="next", <...>; rel="last"``.

    ``_style``: ``absolute`` (default), ``relative`` (query-only references),
    ``split`` (one ``Link`` header per link), ``combined`` (``rel="next last"``
    when they coincide, and titles holding commas, semicolons and brackets).
    """
    size, page = req.size("per_page", 30), req.integer("page", 1)
    last = max(1, math.ceil(N / size))
    style = req.query.get("_style", "absolute")

    def target(number: int) -> str:
        query = "?" + urlencode({**req.query, "page": number})
        return query if style == "relative" else f"{req.origin}/link{query}"

    rels: dict[int, list[str]] = {}
    for number, rel in ((1, "first"), (page - 1, "prev"), (page + 1, "next"), (last, "last")):
        if rel in {"first", "last"} or 1 <= number <= last:
            rels.setdefault(number, []).append(rel)
    links = []
    for number, names in rels.items():
        if style == "combined":
            title = f'; title="page <{number}>, \\"quoted\\"; see rel=next"'
            links.append(f'<{target(number)}>; rel="{" ".join(names)}"{title}')
        else:
            links.extend(f'<{target(number)}>; rel="{name}"' for name in names)
    headers = (
        [("Link", link) for link in links] if style == "split" else [("Link", ", ".join(links))]
    )
    offset = (page - 1) * size
    return Reply(RECORDS[offset : offset + size], headers)


_ROUTES: dict[str, Callable[[_Request], Reply]] = {
    "/cursor": _cursor,
    "/cursor_token": _cursor_token,
    "/next_url_relative": _salesforce,
    "/odata/Books": _odata,
    "/odata_v2/Books": _odata_v2,
    "/azure": _azure,
    "/page_token": _page_token,
    "/aws": _aws,
    "/offset": _offset,
    "/offset_total": _offset,
    "/page_number": _page_number,
    "/link": _link,
}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, Nagle's algorithm
    # and delayed ACKs add 40 ms to every keep-alive response.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        self.server.received.append(Received(parts.path, query))
        route = _ROUTES.get(parts.path)
        if route is None and parts.path.startswith("/next_url_relative/query/"):
            route = _salesforce
        req = _Request(f"http://{self.headers['Host']}", parts.path, query)
        try:
            if route is None:
                self._send(404, {"error": "not found"}, [])
                return
            reply = route(req)
        except BadRequest as exc:
            self._send(400, {"error": str(exc)}, [])
            return
        self._send(200, reply.body, reply.headers)

    def _send(self, status: int, body: Any, headers: list[tuple[str, str]]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    received: list[Received]


class PaginatedServer:
    """The server, running in a daemon thread while the context is open."""

    def __init__(self) -> None:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.received = []
        # A short poll interval: shutdown() waits for the loop to notice it.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        """The origin, ``http://127.0.0.1:<port>``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[Received]:
        """Every request received so far, in order."""
        return self._httpd.received

    def __enter__(self) -> PaginatedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
