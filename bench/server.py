"""A fast fake vendor API for the benchmarks: Stripe-like records over HTTP/1.1 keep-alive.

Run it in its own process (the runner does, pinned to the core the clients do
not use)::

    python bench/server.py --token secret --streams charges:100000 [--rate 100 --burst 1]
        [--latency-ms 50] [--error-rate 0.05] [--malformed-rate 0.01] [--seed 1] [--cpu 1]

It binds 127.0.0.1 (``--port 0``: a free port) and prints ``listening <port>``
on stdout once it answers. Records are deterministic (~480 bytes of JSON each,
Stripe-like: ``id``, ``object``, amounts, ``currency``, ``created`` as a unix
time, ``metadata``, nested objects, booleans) and are generated once at start,
so a page costs the server a slice and a join.

==============================  =================================================
``GET /v1/<stream>``            Stripe cursor: ``limit``, ``starting_after``;
                                ``{"object": "list", "url", "has_more", "data"}``
``GET /offset/<stream>``        ``offset``, ``limit``; ``{"data", "offset",
                                "limit", "total"}``
``GET /token/<stream>``         ``page_token``, ``limit``; ``{"data",
                                "nextPageToken"}`` (absent on the last page)
``GET /next/<stream>``          ``limit``; ``{"data", "next"}``, an absolute URL
                                (``null`` on the last page)
``GET /health``                 ``{"ok": true}`` (no auth, no rate limit)
``GET /stats``                  counters since start or the last ``/reset``
``GET|POST /reset``             zero the counters, refill the bucket
==============================  =================================================

Every data path takes ``partition=i&partitions=n``: the stream is cut into n
contiguous, disjoint ranges and only range i is served. Data paths need
``Authorization: Bearer <token>`` (401 otherwise).

With ``--rate``, a token bucket (``--burst`` tokens at most) admits requests;
a request that finds no token gets a 429. ``--headers`` says how the server
tells: R is the whole tokens left, W the seconds until the next token.

==============  ===============================================================
``fractional``  (default) ``X-RateLimit-Limit`` (requests per second),
                ``X-RateLimit-Remaining: R``, ``X-RateLimit-Reset: W`` to the
                millisecond; a 429 has ``Retry-After: W`` to the millisecond
``epoch``       the same with ``X-RateLimit-Reset`` as whole epoch seconds,
                rounded up (GitHub, Okta, X); ``Retry-After`` in whole seconds
``epoch-frac``  ``X-RateLimit-Reset`` as epoch seconds to the millisecond
``delta``       ``X-RateLimit-Reset`` as whole seconds until then, rounded up;
                ``Retry-After`` in whole seconds
``ietf``        ``RateLimit-Policy: "default";q=<rate>;w=1`` and
                ``RateLimit: "default";r=R;t=<whole seconds>`` (the IETF
                draft's structured fields); ``Retry-After`` in whole seconds
``retry-after`` nothing on a 200; a 429 has ``Retry-After`` in whole seconds
``none``        nothing at all: a bare 429 (as Stripe, AWS, Google mostly do)
==============  ===============================================================

``--window-limit N --window S`` replaces the bucket with a fixed window of N
requests per S seconds (Zendesk and HubSpot count per minute or per ten
seconds): ``X-RateLimit-Limit: N``, ``X-RateLimit-Remaining``,
``X-RateLimit-Reset`` in whole seconds until the window ends, and a 429 with
``Retry-After`` in whole seconds. ``--daily-limit N --day S`` adds a rolling
quota of N requests per S seconds (a day, scaled down), reported as
Salesforce does, ``Sforce-Limit-Info: api-usage=USED/N`` on every response; a
request over it gets a 403 ``REQUEST_LIMIT_EXCEEDED``. Without these options
there is no limit and no such headers.

Faults are decided per page and attempt, not per arrival: the n-th request
for a given page (same stream, partition, position and limit) is a 500 or a
truncated 200 body when a hash of (seed, page, n) says so. Every client thus
meets the same faults on the same pages whatever its timing, and a retry of
a failed page has the same independent chance to fail again.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hashlib
import math
import os
import sys
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode

try:
    import orjson

    def _dumps(value: Any) -> bytes:
        return orjson.dumps(value)
except ImportError:  # pragma: no cover - the bench venv has orjson
    import json

    def _dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()


_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B62_INDEX = {c: i for i, c in enumerate(_B62)}
_ID_DIGITS = 6
_PREFIXES = {
    "charges": ("ch", "charge"),
    "customers": ("cus", "customer"),
    "invoices": ("in", "invoice"),
    "refunds": ("re", "refund"),
    "events": ("evt", "event"),
    "payouts": ("po", "payout"),
}
_CITIES = ("Springfield", "Shelbyville", "Ogdenville", "North Haverbrook", "Capital City")
_BRANDS = ("visa", "mastercard", "amex", "discover")
_CURRENCIES = ("usd", "eur", "gbp", "jpy")
_STATUSES = ("succeeded", "succeeded", "succeeded", "pending", "failed")
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
EPOCH = 1_700_000_000


def b62(number: int, width: int) -> str:
    out = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        out.append(_B62[digit])
    return "".join(reversed(out))


def unb62(text: str) -> int:
    value = 0
    for char in text:
        value = value * 62 + _B62_INDEX[char]
    return value


def stream_names(stream: str) -> tuple[str, str]:
    """The id prefix and ``object`` name of a stream."""
    if stream in _PREFIXES:
        return _PREFIXES[stream]
    return stream[:3], stream.rstrip("s")


def record_id(stream: str, index: int) -> str:
    prefix, _ = stream_names(stream)
    tail = hashlib.blake2b(f"{stream}{index}".encode(), digest_size=12).hexdigest()[:18]
    return f"{prefix}_{b62(index, _ID_DIGITS)}{tail}"


def make_record(stream: str, index: int) -> dict[str, Any]:
    """Record ``index`` of ``stream``: the same on every run."""
    _, obj = stream_names(stream)
    h = int.from_bytes(hashlib.blake2b(f"{stream}/{index}".encode(), digest_size=8).digest(), "big")
    amount = 100 + h % 99_900
    refunded = h % 17 == 0
    return {
        "id": record_id(stream, index),
        "object": obj,
        "amount": amount,
        "created": EPOCH + index * 7,
        "currency": _CURRENCIES[h % 4],
        "customer": f"cus_{(h >> 8) % 100_000:08d}",
        "description": f"Order #{index:07d}",
        "livemode": False,
        "paid": h % 5 != 4,
        "refunded": refunded,
        "status": _STATUSES[h % 5],
        "metadata": {"order_id": str(index), "channel": "web" if h % 3 else "pos"},
        "billing_details": {
            "address": {"city": _CITIES[h % 5], "postal_code": f"{h % 100000:05d}"},
            "email": f"c{(h >> 8) % 100_000}@example.com",
        },
        "payment_method_details": {
            "type": "card",
            "card": {"brand": _BRANDS[h % 4], "last4": f"{h % 10000:04d}", "exp_year": 2030},
        },
    }


class Dataset:
    """Every stream's records, serialised once, in id order."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.sizes = dict(sizes)
        self.records: dict[str, list[bytes]] = {
            name: [_dumps(make_record(name, i)) for i in range(count)] for name, count in sizes.items()
        }


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; starts full."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.reset()

    def reset(self) -> None:
        self.tokens = self.burst
        self.stamp = time.monotonic()
        #: for each request admitted while the bucket was empty before it: how long
        #: after its token became available it arrived (the quota a client left unused)
        self.lateness: list[float] = []

    def take(self) -> tuple[bool, float, float]:
        """``(admitted, tokens left, seconds until the next whole token)``."""
        now = time.monotonic()
        if self.tokens < 1.0:
            available = self.stamp + (1.0 - self.tokens) / self.rate
            if now >= available:
                self.lateness.append(now - available)
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        admitted = self.tokens >= 1.0
        if admitted:
            self.tokens -= 1.0
        wait = 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate
        return admitted, self.tokens, wait


class FixedWindow:
    """``limit`` requests per ``window`` seconds, counted from the first request."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self.rate, self.burst = limit / window, float(limit)
        self.reset()

    def reset(self) -> None:
        self.start: float | None = None
        self.used = 0
        self.lateness: list[float] = []

    def take(self) -> tuple[bool, float, float]:
        now = time.monotonic()
        if self.start is None:
            self.start = now
        while now >= self.start + self.window:
            self.start += self.window
            self.used = 0
        admitted = self.used < self.limit
        if admitted:
            self.used += 1
        # A window's reset is its end, whatever is left in it.
        return admitted, float(self.limit - self.used), self.start + self.window - now


class RollingQuota:
    """Salesforce's daily API requests: at most ``limit`` in any ``day`` seconds."""

    def __init__(self, limit: int, day: float) -> None:
        self.limit, self.day = limit, day
        self.reset()

    def reset(self) -> None:
        self.times: collections.deque[float] = collections.deque()

    def take(self) -> tuple[bool, int]:
        now = time.monotonic()
        while self.times and self.times[0] <= now - self.day:
            self.times.popleft()
        admitted = len(self.times) < self.limit
        if admitted:
            self.times.append(now)
        return admitted, len(self.times)


def rate_headers(convention: str, bucket: TokenBucket | FixedWindow, admitted: bool,
                 tokens: float, wait: float) -> list[bytes]:
    """The rate-limit header lines of one response, in ``convention`` (see the module docstring)."""
    remaining = math.floor(tokens)
    whole = max(1, math.ceil(wait))
    if isinstance(bucket, FixedWindow):
        lines = [b"X-RateLimit-Limit: %d\r\n" % bucket.limit,
                 b"X-RateLimit-Remaining: %d\r\n" % remaining,
                 b"X-RateLimit-Reset: %d\r\n" % math.ceil(wait)]
        return lines if admitted else [*lines, b"Retry-After: %d\r\n" % whole]
    limit = b"X-RateLimit-Limit: %d\r\n" % round(bucket.rate)
    if convention == "fractional":
        lines = [limit, b"X-RateLimit-Remaining: %d\r\n" % remaining, b"X-RateLimit-Reset: %.3f\r\n" % wait]
        return lines if admitted else [*lines, b"Retry-After: %.3f\r\n" % max(wait, 0.001)]
    if convention in ("epoch", "epoch-frac"):
        at = time.time() + wait
        reset = b"%d" % math.ceil(at) if convention == "epoch" else b"%.3f" % at
        lines = [limit, b"X-RateLimit-Remaining: %d\r\n" % remaining, b"X-RateLimit-Reset: %s\r\n" % reset]
    elif convention == "delta":
        lines = [limit, b"X-RateLimit-Remaining: %d\r\n" % remaining,
                 b"X-RateLimit-Reset: %d\r\n" % math.ceil(wait)]
    elif convention == "ietf":
        lines = [b'RateLimit-Policy: "default";q=%d;w=1\r\n' % round(bucket.rate),
                 b'RateLimit: "default";r=%d;t=%d\r\n' % (remaining, math.ceil(wait))]
    elif convention == "retry-after":
        lines = []
    else:  # none
        return []
    return lines if admitted else [*lines, b"Retry-After: %d\r\n" % whole]


def seconds_over(arrivals: list[float], rate: float, burst: float,
                 refusals: list[float] | None = None) -> dict[str, Any]:
    """How many requests reached the limit in each second: every request counts,
    the refused ones too (a client that sends more than the limit is over it, whatever
    the server answers).

    ``limit`` is the most a token bucket of ``rate`` and ``burst`` admits in any one
    second (``rate + burst``). Fixed windows are the whole seconds from the first
    arrival to the last (a partial last second is left out): ``over`` counts those
    that saw more than ``limit``, ``over_2pct`` those that saw more than 2% past the
    rate (``1.02 * rate``). ``sliding_max`` is the most requests in any one-second
    window, wherever it starts (one starting at each arrival).
    """
    times = sorted(arrivals)
    limit = rate + burst
    counts: list[int] = []
    if times:
        whole = int(times[-1] - times[0])
        counts = [0] * whole
        for t in times:
            k = int(t - times[0])
            if k < whole:
                counts[k] += 1
    refused = [0] * len(counts)
    for t in refusals or ():
        k = int(t - times[0])
        if 0 <= k < len(refused):
            refused[k] += 1
    most, j = 0, 0
    for i, t in enumerate(times):
        while j < len(times) and times[j] < t + 1.0:
            j += 1
        most = max(most, j - i)
    return {
        "limit": limit,
        "windows": len(counts),
        "counts": counts,
        "refused": refused,
        "over": sum(1 for c in counts if c > limit),
        "over_2pct": sum(1 for c in counts if c > 1.02 * rate),
        "sliding_max": most,
    }


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.ok = 0
        self.throttled = 0
        self.server_errors = 0
        self.malformed = 0
        self.unauthorized = 0
        self.not_found = 0
        self.records = 0
        self.bytes = 0
        self.connections = 0
        self.first: float | None = None
        self.last: float | None = None
        #: when each request that met the limit arrived, admitted or refused, and the refused ones
        self.arrivals: list[float] = []
        self.refusals: list[float] = []
        self.attempts: dict[tuple[Any, ...], int] = {}
        self.started = time.monotonic()


_CONTROL = (b"/stats", b"/reset", b"/health")
_REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden", 404: b"Not Found",
            405: b"Method Not Allowed", 429: b"Too Many Requests", 500: b"Internal Server Error"}


class App:
    """Routing, pages, auth, rate limit and faults; transport-free."""

    def __init__(self, args: argparse.Namespace, data: Dataset) -> None:
        self.data = data
        self.auth = f"Bearer {args.token}".encode()
        self.bucket: TokenBucket | FixedWindow | None = None
        if args.window_limit:
            self.bucket = FixedWindow(args.window_limit, args.window)
        elif args.rate:
            self.bucket = TokenBucket(args.rate, args.burst)
        self.convention = args.headers
        self.daily = RollingQuota(args.daily_limit, args.day) if args.daily_limit else None
        self.latency = args.latency_ms / 1000.0
        self.error_rate = args.error_rate
        self.malformed_rate = args.malformed_rate
        self.seed = args.seed
        self.stats = Stats()

    # --- helpers -------------------------------------------------------
    def _fault(self, key: tuple[Any, ...]) -> str | None:
        if not (self.error_rate or self.malformed_rate):
            return None
        n = self.stats.attempts.get(key, 0)
        self.stats.attempts[key] = n + 1
        digest = hashlib.blake2b(f"{self.seed}|{key}|{n}".encode(), digest_size=8).digest()
        u = int.from_bytes(digest, "big") / 2.0**64
        if u < self.error_rate:
            return "error"
        if u < self.error_rate + self.malformed_rate:
            return "malformed"
        return None

    def _range(self, stream: str, query: dict[str, str]) -> tuple[int, int]:
        total = self.data.sizes[stream]
        parts = int(query.get("partitions", "1") or 1)
        part = int(query.get("partition", "0") or 0)
        if parts < 1 or not 0 <= part < parts:
            raise ValueError("partition must be in [0, partitions)")
        return part * total // parts, (part + 1) * total // parts

    # --- the request handler --------------------------------------------
    def handle(self, method: bytes, target: bytes, auth: bytes | None, host: bytes) -> tuple[int, list[bytes], bytes]:
        """``(status, extra header lines, body)``."""
        stats = self.stats
        path, _, raw_query = target.decode("latin-1").partition("?")
        if path == "/health":
            return 200, [], b'{"ok":true}'
        if path == "/stats":
            return 200, [], _dumps(self.stats_json())
        if path == "/reset":
            stats.reset()
            if self.bucket:
                self.bucket.reset()
            if self.daily:
                self.daily.reset()
            return 200, [], b'{"reset":true}'
        now = time.monotonic()
        stats.requests += 1
        if stats.first is None:
            stats.first = now
        stats.last = now
        headers: list[bytes] = []
        if auth != self.auth:
            stats.unauthorized += 1
            return 401, headers, b'{"error":{"type":"invalid_request_error","message":"Invalid API Key provided"}}'
        if self.daily is not None:
            admitted, used = self.daily.take()
            headers = [b"Sforce-Limit-Info: api-usage=%d/%d\r\n" % (used, self.daily.limit),
                       b"X-Bench-Day: %g\r\n" % self.daily.day]
            if not admitted:
                stats.throttled += 1
                return 403, headers, (b'[{"message":"TotalRequests Limit exceeded.",'
                                      b'"errorCode":"REQUEST_LIMIT_EXCEEDED"}]')
        if self.bucket is not None:
            stats.arrivals.append(now)
            admitted, tokens, wait = self.bucket.take()
            headers += rate_headers(self.convention, self.bucket, admitted, tokens, wait)
            if not admitted:
                stats.refusals.append(now)
                stats.throttled += 1
                return 429, headers, b'{"error":{"type":"rate_limit_error","message":"Too many requests"}}'
        if method != b"GET":
            return 405, headers, b'{"error":{"message":"only GET"}}'
        kind, _, stream = path.lstrip("/").partition("/")
        if stream not in self.data.sizes or kind not in ("v1", "offset", "token", "next"):
            stats.not_found += 1
            return 404, headers, b'{"error":{"type":"invalid_request_error","message":"Unrecognized request URL"}}'
        query = dict(parse_qsl(raw_query))
        try:
            limit = min(MAX_LIMIT, max(1, int(query.get("limit", DEFAULT_LIMIT))))
            low, high = self._range(stream, query)
            start = self._start(kind, stream, query, low)
        except (ValueError, KeyError) as exc:
            return 400, headers, _dumps({"error": {"type": "invalid_request_error", "message": str(exc)}})
        start = max(low, min(start, high))
        end = min(high, start + limit)
        fault = self._fault((kind, stream, query.get("partition"), query.get("partitions"), start, limit))
        if fault == "error":
            stats.server_errors += 1
            return 500, headers, b'{"error":{"type":"api_error","message":"Something went wrong"}}'
        records = self.data.records[stream][start:end]
        body = self._body(kind, stream, query, records, start, end, low, high, limit, host)
        if fault == "malformed":
            stats.malformed += 1
            return 200, headers, body[: max(1, len(body) // 2)]
        stats.ok += 1
        stats.records += len(records)
        return 200, headers, body

    def _start(self, kind: str, stream: str, query: dict[str, str], low: int) -> int:
        if kind == "offset":
            return low + int(query.get("offset", "0") or 0)
        if kind == "token":
            token = query.get("page_token")
            return unb62(token[4:]) if token else low
        after = query.get("starting_after")
        if not after:
            return low
        prefix, _ = stream_names(stream)
        index = unb62(after[len(prefix) + 1 : len(prefix) + 1 + _ID_DIGITS])
        if after != record_id(stream, index):
            raise ValueError(f"No such object: {after!r}")
        return index + 1

    def _body(self, kind: str, stream: str, query: dict[str, str], records: list[bytes],
              start: int, end: int, low: int, high: int, limit: int, host: bytes) -> bytes:
        data = b"[" + b",".join(records) + b"]"
        more = end < high
        if kind == "v1":
            return (b'{"object":"list","url":"/v1/%s","has_more":%s,"data":%s}'
                    % (stream.encode(), b"true" if more else b"false", data))
        if kind == "offset":
            return b'{"data":%s,"offset":%d,"limit":%d,"total":%d}' % (data, start - low, limit, high - low)
        if kind == "token":
            if not more:
                return b'{"data":%s}' % data
            return b'{"data":%s,"nextPageToken":"tok_%s"}' % (data, b62(end, _ID_DIGITS).encode())
        # next
        if not more:
            return b'{"data":%s,"next":null}' % data
        params = {"limit": str(limit), "starting_after": record_id(stream, end - 1)}
        for name in ("partition", "partitions"):
            if name in query:
                params[name] = query[name]
        url = b"http://%s/next/%s?%s" % (host, stream.encode(), urlencode(params).encode())
        return b'{"data":%s,"next":"%s"}' % (data, url)

    def stats_json(self) -> dict[str, Any]:
        s = self.stats
        now = time.monotonic()
        out: dict[str, Any] = {
            "requests": s.requests,
            "ok": s.ok,
            "throttled": s.throttled,
            "server_errors": s.server_errors,
            "malformed": s.malformed,
            "unauthorized": s.unauthorized,
            "not_found": s.not_found,
            "records": s.records,
            "connections": s.connections,
            "since_first": None if s.first is None else now - s.first,
            "since_last": None if s.last is None else now - s.last,
            "rate": self.bucket.rate if self.bucket else None,
            "burst": self.bucket.burst if self.bucket else None,
            "headers": self.convention,
        }
        if isinstance(self.bucket, FixedWindow):
            out["window_limit"], out["window_length"] = self.bucket.limit, self.bucket.window
        if self.daily is not None:
            out["daily_limit"], out["daily_used"] = self.daily.limit, len(self.daily.times)
        if self.bucket and s.first is not None and s.last is not None:
            # The quota: what the limit would have admitted between the first
            # and the last request, against what it did admit.
            window = s.last - s.first
            if isinstance(self.bucket, FixedWindow):
                allowed = self.bucket.limit * max(1.0, math.ceil(window / self.bucket.window - 1e-9))
            else:
                allowed = self.bucket.burst + self.bucket.rate * window
            admitted = s.requests - s.throttled - s.unauthorized
            out["window"] = window
            out["allowed"] = allowed
            late = sorted(self.bucket.lateness)
            if late:
                out["late_ms"] = {"mean": round(1000 * sum(late) / len(late), 3),
                                  "p10": round(1000 * late[len(late) // 10], 3),
                                  "p50": round(1000 * late[len(late) // 2], 3),
                                  "p90": round(1000 * late[len(late) * 9 // 10], 3)}
            out["admitted"] = admitted
            out["quota_used"] = admitted / allowed if allowed else None
            if isinstance(self.bucket, TokenBucket):
                out["seconds"] = seconds_over(s.arrivals, self.bucket.rate, self.bucket.burst, s.refusals)
        return out


class HttpProtocol(asyncio.Protocol):
    """A minimal HTTP/1.1 server connection: GET only, keep-alive, no pipelining surprises."""

    def __init__(self, app: App, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.loop = loop
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.app.stats.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > 65536:
                    self.transport.close()  # type: ignore[union-attr]
                return
            head = self.buffer[:end]
            lines = head.split(b"\r\n")
            try:
                method, target, version = lines[0].split(b" ", 2)
            except ValueError:
                self.transport.close()  # type: ignore[union-attr]
                return
            auth = None
            host = b"127.0.0.1"
            length = 0
            close = version == b"HTTP/1.0"
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                lname = name.strip().lower()
                if lname == b"authorization":
                    auth = value.strip()
                elif lname == b"host":
                    host = value.strip()
                elif lname == b"content-length":
                    length = int(value.strip() or 0)
                elif lname == b"connection":
                    token = value.strip().lower()
                    if token == b"close":
                        close = True
                    elif token == b"keep-alive":
                        close = False
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            status, extra, body = self.app.handle(method, target, auth, host)
            response = b"".join(
                [
                    b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown")),
                    b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body),
                    b"Connection: close\r\n" if close else b"",
                    *extra,
                    b"\r\n",
                    body,
                ]
            )
            if self.app.latency and not target.startswith(_CONTROL):
                self.loop.call_later(self.app.latency, self._send, response, close)
            else:
                self._send(response, close)

    def _send(self, response: bytes, close: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(response)
        if close:
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def parse_streams(spec: str) -> dict[str, int]:
    sizes = {}
    for part in spec.split(","):
        name, _, count = part.strip().partition(":")
        sizes[name] = int(count or 1000)
    return sizes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", required=True)
    parser.add_argument("--streams", default="charges:10000", help="name:count,name:count")
    parser.add_argument("--rate", type=float, default=0.0, help="requests per second (0: no limit)")
    parser.add_argument("--burst", type=float, default=1.0)
    parser.add_argument("--headers", default="fractional",
                        choices=["fractional", "epoch", "epoch-frac", "delta", "ietf", "retry-after", "none"])
    parser.add_argument("--window-limit", type=int, default=0, help="requests per fixed window (0: none)")
    parser.add_argument("--window", type=float, default=60.0, help="the fixed window in seconds")
    parser.add_argument("--daily-limit", type=int, default=0, help="requests per rolling 'day' (0: none)")
    parser.add_argument("--day", type=float, default=86400.0, help="the rolling 'day' in seconds")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--malformed-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cpu", type=int, default=None, help="pin the server to this core")
    args = parser.parse_args(argv)
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {args.cpu})
    data = Dataset(parse_streams(args.streams))
    app = App(args, data)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: HttpProtocol(app, loop), args.host, args.port, backlog=256)
        port = server.sockets[0].getsockname()[1]
        print(f"listening {port}", flush=True)

        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    sys.exit(0)


if __name__ == "__main__":
    main()
