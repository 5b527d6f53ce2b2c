"""A real HTTP server, on 127.0.0.1, serving a :class:`~tapyard_sample._data.Dataset`.

Each stream is paginated the way a different real API does it, so one local
server exercises every paginator of the core:

==========================  ================================================
``GET /v1/customers``       Stripe-style cursor: ``limit``, ``starting_after``
                            (id of the previous page's last record),
                            ``updated_after``; body ``{"object": "list",
                            "data": [...], "has_more": bool}``
``GET /v1/orders``          offset: ``limit``, ``offset``, ``updated_after``;
                            body ``{"data": [...], "total": int}``
``GET /v1/events``          RFC 8288: ``limit``, ``created_after``,
                            ``page_token``; body ``{"data": [...]}`` and a
                            ``Link: <absolute url>; rel="next"`` header
                            unless this is the last page
``GET /v1/health``          ``{"ok": true}``
``POST /oauth/token``       the OAuth 2.0 token endpoint (``auth="oauth2"``)
``GET /oauth/authorize``    the authorization endpoint (``auth="oauth2"``)
==========================  ================================================

Auth (``auth``): ``"none"`` serves everyone; ``"api_key"`` requires the key in
an ``X-API-Key`` header or an ``api_key`` query parameter (never echoed in
``Link`` headers); ``"oauth2"`` requires ``Authorization: Bearer`` with a live
token issued by the server's own :class:`LocalAuthorizationServer`. A request
without valid credentials gets 401 with ``WWW-Authenticate``.

Every response is JSON with a ``Content-Length``, over HTTP/1.1 keep-alive.
Errors are ``{"error": {"type": ..., "message": ...}}``: 400 for a malformed,
unknown or conflicting parameter, 404 for an unknown path, 405 for a method
other than GET, 429 when rate limited. The server is meant for tests and
benchmarks: one process, one thread per connection. Records are computed a
page at a time (:class:`~tapyard_sample._data.Listing`), so the server's memory
stays flat as ``records_per_stream`` grows: a listing holds 4 bytes per
entity of a mutable stream, never the records.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import http.server
import math
import secrets
import socket
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal, cast
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import orjson

from tapyard_sample._data import Dataset, Listing, format_timestamp, parse_timestamp
from tapyard_sample._serving import BackgroundServer

if TYPE_CHECKING:
    from tapyard_sample._oauth import LocalAuthorizationServer

__all__ = ["SampleServer"]

DEFAULT_LIMIT: Final = 100
_LISTING_CACHE_SIZE = 6
_TOKEN_PREFIX = b"evt1:"
_IDLE_TIMEOUT_S = 60.0


@dataclass(slots=True)
class _Response:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


class _BadRequest(Exception):
    """A client error: its message is shown to the client."""


class _TokenBucket:
    """A token bucket shared by every connection: ``rate`` tokens per second."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self._tokens = self.capacity
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> tuple[bool, list[tuple[str, str]]]:
        """Take a token if there is one; return whether it did and the headers to send."""
        with self._lock:
            now = time.monotonic()
            tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            allowed = tokens >= 1
            if allowed:
                tokens -= 1
            self._tokens, self._stamp = tokens, now
        headers = [
            ("X-RateLimit-Limit", f"{self.rate:g}"),
            ("X-RateLimit-Remaining", str(int(tokens))),
            ("X-RateLimit-Reset", f"{(self.capacity - tokens) / self.rate:.3f}"),
        ]
        if not allowed:
            # Rounded up to the millisecond so that waiting exactly this long works.
            wait = math.ceil((1 - tokens) / self.rate * 1000) / 1000
            headers.append(("Retry-After", f"{max(wait, 0.001):.3f}"))
        return allowed, headers


class SampleServer(BackgroundServer):
    """Serve a :class:`Dataset` over HTTP on ``127.0.0.1``, on a free port, in a daemon thread.

    ``as_of`` fixes the moment the data is seen at (``None``: everything, in
    its final version); assigning :attr:`as_of` while running makes later
    requests see another moment, as if time had passed. ``latency_ms`` is
    slept before every response. ``rate_limit_per_s`` (``0``: none) is a
    token bucket of capacity ``max(1, rate)`` shared by all connections: a
    request without a token gets 429 with ``Retry-After`` (fractional seconds
    until the next token), and every response carries ``X-RateLimit-Limit``
    (the rate), ``X-RateLimit-Remaining`` (whole tokens left) and
    ``X-RateLimit-Reset`` (fractional seconds until the bucket is full again).
    Every GET counts against the limit, whatever its path or outcome.
    ``limit`` defaults to 100 and is capped at ``max_page_size``.

    Usable as a context manager, which starts and stops it. Counters are
    thread-safe. Each stream's order at the current ``as_of`` is indexed on
    its first request (or by :meth:`warm`); every page is computed when asked.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        as_of: datetime | None = None,
        latency_ms: float = 0,
        rate_limit_per_s: float = 0,
        max_page_size: int = 1000,
        auth: Literal["none", "api_key", "oauth2"] = "none",
        api_key: str | None = None,
        oauth: LocalAuthorizationServer | None = None,
    ) -> None:
        if latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        if rate_limit_per_s < 0:
            raise ValueError("rate_limit_per_s must be >= 0 (0: no limit)")
        if max_page_size < 1:
            raise ValueError("max_page_size must be >= 1")
        if auth == "api_key" and not api_key:
            raise ValueError("auth='api_key' needs the api_key the server accepts")
        if auth == "oauth2" and oauth is None:
            raise ValueError("auth='oauth2' needs an authorization server (oauth=...)")
        self.auth = auth
        self._api_key = api_key
        self.oauth = oauth
        self._unauthorized = 0
        self.dataset = dataset
        self.latency_ms = latency_ms
        self.rate_limit_per_s = rate_limit_per_s
        self.max_page_size = max_page_size
        self._as_of = as_of
        self._bucket = _TokenBucket(rate_limit_per_s) if rate_limit_per_s > 0 else None
        self._listings: OrderedDict[tuple[str, datetime | None], Listing] = OrderedDict()
        self._listings_lock = threading.Lock()
        self._counter_lock = threading.Lock()
        self._served = self._throttled = self._connections = 0
        self._routes: Mapping[str, Callable[[dict[str, str]], _Response]] = {
            "/v1/customers": self._customers,
            "/v1/orders": self._orders,
            "/v1/events": self._events,
            "/v1/health": self._health,
        }

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> SampleServer:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread; return ``self``."""
        if self._httpd is not None:
            raise RuntimeError("the server is already running")
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        httpd.app = self
        self._httpd = httpd
        if self.oauth is not None:
            self.oauth.mount(self.url)
        self._serve(httpd, name=f"tapyard-sample-server-{httpd.server_address[1]}")
        return self

    def _closed(self, httpd: http.server.ThreadingHTTPServer) -> None:
        """Close every connection when stopping, idle keep-alive ones included."""
        assert isinstance(httpd, _HTTPServer)
        httpd.close_connections()

    def warm(self) -> None:
        """Build every stream's listing now rather than on its first request."""
        for stream in Dataset.STREAMS:
            self._listing(stream)

    # -- observation -------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL, such as ``http://127.0.0.1:54321``; the server must be running."""
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def as_of(self) -> datetime | None:
        """The moment the data is seen at; ``None`` is after the end of time."""
        return self._as_of

    @as_of.setter
    def as_of(self, value: datetime | None) -> None:
        self._as_of = value

    @property
    def requests_served(self) -> int:
        """Requests answered so far, whatever the status (429s and errors included)."""
        return self._served

    @property
    def throttled(self) -> int:
        """Requests answered with 429 so far."""
        return self._throttled

    @property
    def unauthorized(self) -> int:
        """Requests refused with 401 so far."""
        return self._unauthorized

    @property
    def connections_opened(self) -> int:
        """TCP connections accepted so far: with keep-alive, far fewer than requests."""
        return self._connections

    # -- request handling --------------------------------------------------

    def _authorized(self, target: str, headers: Mapping[str, str]) -> tuple[str, _Response | None]:
        """``target`` without its credential, or a 401 when the request lacks a valid one."""
        if self.auth == "none":
            return target, None
        if self.auth == "oauth2":
            assert self.oauth is not None
            if self.oauth.validate(headers.get("Authorization")):
                return target, None
            challenge = 'Bearer realm="sample", error="invalid_token"'
        else:
            parts = urlsplit(target)
            pairs = parse_qsl(parts.query, keep_blank_values=True)
            given = headers.get("X-API-Key") or next((v for k, v in pairs if k == "api_key"), None)
            # The key never reaches the routes, so no Link header can echo it.
            rest = urlencode([(k, v) for k, v in pairs if k != "api_key"])
            target = parts.path + (f"?{rest}" if rest else "")
            assert self._api_key is not None
            if given is not None and secrets.compare_digest(given.encode(), self._api_key.encode()):
                return target, None
            challenge = 'ApiKey realm="sample", header="X-API-Key"'
        with self._counter_lock:
            self._unauthorized += 1
        response = _error(401, "unauthorized", "Missing or invalid credentials.")
        response.headers.append(("WWW-Authenticate", challenge))
        return target, response

    def _respond(self, target: str, headers: Mapping[str, str] | None = None) -> _Response:
        """Answer one GET request for ``target`` (path and query)."""
        limit_headers: list[tuple[str, str]] = []
        if self._bucket is not None:
            allowed, limit_headers = self._bucket.take()
            if not allowed:
                with self._counter_lock:
                    self._throttled += 1
                response = _error(
                    429, "rate_limited", "Too many requests; retry after Retry-After seconds."
                )
                response.headers.extend(limit_headers)
                return response
        target, refused = self._authorized(target, headers or {})
        if refused is not None:
            refused.headers.extend(limit_headers)
            return refused
        parts = urlsplit(target)
        route = self._routes.get(parts.path)
        if route is None:
            response = _error(404, "not_found", f"No such endpoint: {parts.path}")
        else:
            try:
                response = route(_single_values(parts.query))
            except _BadRequest as exc:
                response = _error(400, "invalid_request", str(exc))
        response.headers.extend(limit_headers)
        return response

    def _count(self) -> None:
        with self._counter_lock:
            self._served += 1

    def _connected(self) -> None:
        with self._counter_lock:
            self._connections += 1

    def _listing(self, stream: str) -> Listing:
        as_of = self._as_of
        key = (stream, as_of)
        # Held while building: concurrent first requests wait for one build.
        with self._listings_lock:
            listing = self._listings.get(key)
            if listing is None:
                listing = self._listings[key] = self.dataset.listing(stream, as_of)
                if len(self._listings) > _LISTING_CACHE_SIZE:
                    self._listings.popitem(last=False)
            else:
                self._listings.move_to_end(key)
            return listing

    def _limit(self, params: dict[str, str]) -> int:
        limit = _integer(params, "limit", DEFAULT_LIMIT, minimum=1)
        return min(limit, self.max_page_size)

    def _customers(self, params: dict[str, str]) -> _Response:
        _allow(params, "limit", "starting_after", "updated_after")
        limit = self._limit(params)
        listing = self._listing("customers")
        start = listing.after(_moment(params, "updated_after"))
        after_id = params.get("starting_after")
        if after_id is not None:
            position = listing.position(after_id)
            if position is None:
                raise _BadRequest(f"starting_after: no customer with id {after_id!r}")
            start = max(start, position + 1)
        end = start + limit
        page = listing.records(start, end)
        return _json({"object": "list", "data": page, "has_more": end < len(listing)})

    def _orders(self, params: dict[str, str]) -> _Response:
        _allow(params, "limit", "offset", "updated_after")
        limit = self._limit(params)
        offset = _integer(params, "offset", 0, minimum=0)
        listing = self._listing("orders")
        first = listing.after(_moment(params, "updated_after"))
        page = listing.records(first + offset, first + offset + limit)
        return _json({"data": page, "total": len(listing) - first})

    def _events(self, params: dict[str, str]) -> _Response:
        _allow(params, "limit", "created_after", "page_token")
        limit = self._limit(params)
        listing = self._listing("events")
        start = listing.after(_moment(params, "created_after"))
        token = params.get("page_token")
        if token is not None:
            start = max(start, listing.after(_decode_token(token)))
        end = start + limit
        response = _json({"data": listing.records(start, end)})
        if end < len(listing):
            # The token is the last served cursor, not a position: events are
            # append-only, so it stays valid when as_of moves forward.
            following = {
                **params,
                "limit": str(limit),
                "page_token": _encode_token(listing.cursor(end - 1)),
            }
            response.headers.append(
                ("Link", f'<{self.url}/v1/events?{urlencode(following)}>; rel="next"')
            )
        return response

    def _health(self, params: dict[str, str]) -> _Response:
        _allow(params)
        return _json({"ok": True})


def _json(body: dict[str, Any]) -> _Response:
    return _Response(200, orjson.dumps(body))


def _error(status: int, kind: str, message: str) -> _Response:
    return _Response(status, orjson.dumps({"error": {"type": kind, "message": message}}))


def _single_values(query: str) -> dict[str, str]:
    """Each parameter once; a repeat is tolerated only when it says the same thing."""
    params: dict[str, str] = {}
    for name, values in parse_qs(query, keep_blank_values=True).items():
        if len(set(values)) > 1:
            raise _BadRequest(f"{name}: given more than once with different values")
        params[name] = values[0]
    return params


def _allow(params: dict[str, str], *names: str) -> None:
    # Unknown parameters are refused rather than ignored, so a connector that
    # sends the wrong filter fails loudly instead of silently syncing everything.
    unknown = sorted(set(params) - set(names))
    if unknown:
        accepted = ", ".join(names) or "none"
        raise _BadRequest(f"unknown parameter {unknown[0]!r} (accepted: {accepted})")


def _integer(params: dict[str, str], name: str, default: int, *, minimum: int) -> int:
    text = params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise _BadRequest(f"{name}: not an integer: {text!r}") from None
    if value < minimum:
        raise _BadRequest(f"{name}: must be >= {minimum}, got {value}")
    return value


def _moment(params: dict[str, str], name: str) -> str | None:
    """The timestamp parameter ``name`` in the records' own format, or ``None``."""
    text = params.get(name)
    if text is None:
        return None
    # An unencoded "+00:00" arrives as " 00:00": "+" means space in a query.
    if len(text) > 6 and text[-6] == " " and text[-3] == ":":
        text = f"{text[:-6]}+{text[-5:]}"
    try:
        return format_timestamp(parse_timestamp(text))
    except ValueError as exc:
        raise _BadRequest(f"{name}: {exc}") from None


def _encode_token(cursor: str) -> str:
    return base64.urlsafe_b64encode(_TOKEN_PREFIX + cursor.encode()).decode().rstrip("=")


def _decode_token(token: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        if not raw.startswith(_TOKEN_PREFIX):
            raise ValueError("unknown token version")
        return format_timestamp(parse_timestamp(raw.removeprefix(_TOKEN_PREFIX).decode()))
    except (ValueError, binascii.Error):
        raise _BadRequest(f"page_token: not a token this server issued: {token!r}") from None


class _HeaderView(Mapping[str, str]):
    """Request headers as a case-insensitive mapping."""

    def __init__(self, message: Any) -> None:
        self._message = message

    def __getitem__(self, key: str) -> str:
        value = self._message.get(key)
        if value is None:
            raise KeyError(key)
        return str(value)

    def __iter__(self) -> Any:
        return iter(self._message.keys())

    def __len__(self) -> int:
        return len(self._message.keys())


class _HTTPServer(http.server.ThreadingHTTPServer):
    """The stdlib threading server, with its connections tracked so stop() can close them."""

    daemon_threads = True
    # Benchmarks open many connections at once; the default backlog of 5 drops some.
    request_queue_size = 128
    app: SampleServer

    def __init__(
        self, address: tuple[str, int], handler: type[http.server.BaseHTTPRequestHandler]
    ) -> None:
        super().__init__(address, handler)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def track(self, connection: socket.socket, *, is_open: bool) -> None:
        with self._open_lock:
            if is_open:
                self._open.add(connection)
            else:
                self._open.discard(connection)

    def close_connections(self) -> None:
        """Wake every handler blocked on an idle keep-alive connection so it exits."""
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            # OSError: already closed by the client or by its handler.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-response is routine for a test server, not a bug.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tapyard-sample/1"
    # Idle keep-alive connections are dropped after this, freeing their thread.
    timeout = _IDLE_TIMEOUT_S
    # Headers and body are written separately; without this, Nagle's algorithm
    # and the client's delayed ACK add 40 ms to every response.
    disable_nagle_algorithm = True

    @property
    def _server(self) -> _HTTPServer:
        return cast(_HTTPServer, self.server)

    def setup(self) -> None:
        super().setup()
        self._server.track(self.connection, is_open=True)
        self._server.app._connected()

    def finish(self) -> None:
        self._server.track(self.connection, is_open=False)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a test server that logs every request drowns the test output."""

    def do_GET(self) -> None:
        body = self._drain_body()
        app = self._server.app
        if self._oauth(body):
            return
        try:
            response = app._respond(self.path, _HeaderView(self.headers))
        except Exception as exc:  # a bug here must reach the client, not kill the connection
            response = _error(500, "internal_error", f"{type(exc).__name__}: {exc}")
        self._send(response)

    def do_POST(self) -> None:
        body = self._drain_body()
        if not self._oauth(body):
            self._send(self._not_allowed())

    def _oauth(self, body: bytes) -> bool:
        """Answer the authorization server's endpoints; False for any other path."""
        oauth = self._server.app.oauth
        if oauth is None:
            return False
        app = self._server.app
        answer = oauth.handle(self.command, app.url + self.path, self.headers.items(), body)
        if answer is None:
            return False
        status, data, headers = answer
        self._send(_Response(status, data, headers))
        return True

    def _not_allowed(self) -> _Response:
        response = _error(405, "method_not_allowed", f"{self.command} is not supported; use GET")
        response.headers.append(("Allow", "GET"))
        return response

    def _refuse(self) -> None:
        self._drain_body()
        self._send(self._not_allowed())

    do_PUT = do_PATCH = do_DELETE = _refuse

    def _drain_body(self) -> bytes:
        # With keep-alive, an unread body would be parsed as the next request.
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            return b""
        length = self.headers.get("Content-Length") or "0"
        if not length.isdigit():
            self.close_connection = True
        elif int(length) > 0:
            return self.rfile.read(int(length))
        return b""

    def _send(self, response: _Response) -> None:
        app = self._server.app
        app._count()
        if app.latency_ms:
            time.sleep(app.latency_ms / 1000)
        self.send_response(response.status)
        if not any(name.lower() == "content-type" for name, _ in response.headers):
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)
