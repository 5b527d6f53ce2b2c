"""The HTTP engine every connector run uses: one pooled ``httpx.Client`` per run.

:class:`HttpEngine` hands back responses whose body has been read in full, or
raises one of the :class:`~tapyard.HTTPError` family with a one-line message
that is safe to show. Along the way it:

- retries 429, 5xx (per :class:`HttpPolicy`) and connection failures with
  exponential backoff and full jitter, honouring ``Retry-After``; idempotent
  methods on every such failure, POST and PATCH only on 429 and on connection
  failures where the request never left;
- reads each body in chunks against a monotonic deadline and a size cap, since
  httpx timeouts alone let a server that drips bytes hang a run;
- follows redirects itself, so that credentials never reach another origin;
- asks the circuit breaker before each attempt and the rate limiter before each
  request, and feeds every response back to the limiter. With httpx's own
  transport the limiter is asked at the last moment, from httpcore's trace
  hook just before the request line is written (the connection checked out,
  the request built), so that a paced request reaches the wire a fraction of
  a millisecond after its grant instead of after the client's own work.
"""

from __future__ import annotations

import dataclasses
import html
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field

from tapyard.base import (
    AuthenticationError,
    AuthStrategy,
    DeadlineExceededError,
    HTTPError,
    HTTPStatusError,
    ResponseError,
    RetryAfterTooLongError,
    TransportError,
    decode_json,
    trace_span,
)
from tapyard.http._circuit import CircuitBreaker
from tapyard.http._limiters import Limiter
from tapyard.http._ratelimit import RateLimitWaitTooLong, parse_retry_after

if TYPE_CHECKING:
    from tapyard.base.manifest import HostGuard

__all__ = ["HttpEngine", "HttpPolicy", "HttpStats", "redact_url"]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NOT_IDEMPOTENT = frozenset({"POST", "PATCH"})
#: failures after which the request certainly never reached the server
_NEVER_LEFT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_RETRYABLE = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)
#: header (and query parameter) names that may carry a credential
_CREDENTIAL = re.compile(r"auth|token|key|secret|session|cookie|passw|credential|signature", re.I)
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title\s*>", re.I | re.S)
_EXCERPT = 200


class HttpPolicy(BaseModel):
    """Timeouts, limits and retry settings for one engine. Times are in seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connect_timeout: float = Field(10.0, gt=0)
    read_timeout: float = Field(30.0, gt=0)
    #: total time for one attempt, reading the whole body included
    request_deadline: float = Field(300.0, gt=0)
    max_page_bytes: int = Field(64 * 1024 * 1024, gt=0)
    max_attempts: int = Field(6, ge=1)
    backoff_base: float = Field(0.5, ge=0)
    backoff_max: float = Field(30.0, ge=0)
    #: a longer Retry-After, or wait for a rate-limit reset, fails the request at once
    #: instead of waiting
    max_retry_after: float = Field(120.0, ge=0)
    retry_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})
    circuit_threshold: int = Field(10, ge=1)
    circuit_cooldown: float = Field(30.0, ge=0)
    max_redirects: int = Field(10, ge=0)
    max_connections: int = Field(10, ge=1)
    user_agent: str = "tapyard"
    #: parse JSON numbers with a fraction or exponent as ``decimal.Decimal``, digit
    #: for digit, instead of floats (slower): for APIs that send money or other
    #: exact decimals as JSON numbers past a float's 15-17 digits
    exact_numbers: bool = False


Counter = Literal[
    "requests", "retries", "throttled", "server_errors", "transport_errors", "bytes", "wait_ms"
]


@dataclass
class HttpStats:
    """Counters of HTTP work, safe to update from several threads.

    ``requests`` counts requests sent (attempts and redirect hops), ``retries``
    attempts made again, ``throttled`` 429s, ``server_errors`` 5xx,
    ``transport_errors`` connection failures, ``bytes`` bytes received,
    ``wait_ms`` milliseconds spent waiting for the rate limiter and before retries.
    """

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    server_errors: int = 0
    transport_errors: int = 0
    bytes: int = 0
    wait_ms: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, counter: Counter, amount: int = 1) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + amount)

    def as_dict(self) -> dict[str, int]:
        """A consistent snapshot of every counter."""
        with self._lock:
            return {name: value for name, value in vars(self).items() if name != "_lock"}


def redact_url(url: str | httpx.URL) -> str:
    """``scheme://host[:port]/path``: no user info, no query string, no fragment.

    Every error message names URLs this way, since query strings can hold API keys.
    """
    parts = urllib.parse.urlsplit(str(url))
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        port = None
    host = f"[{host}]" if ":" in host else host
    netloc = host if port is None else f"{host}:{port}"
    if not parts.scheme and not netloc:
        return parts.path
    return f"{parts.scheme}://{netloc}{parts.path or '/'}"


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or {"http": 80, "https": 443}.get(url.scheme)


def _scrub(text: str, request: httpx.Request | None = None) -> str:
    """``text`` with URLs redacted and the credential values ``request`` carried masked."""
    text = _URL_IN_TEXT.sub(lambda match: redact_url(match.group()), text)
    if request is not None:
        pairs = [*request.headers.multi_items(), *request.url.params.multi_items()]
        secrets = {
            part
            for name, value in pairs
            if _CREDENTIAL.search(name)
            for part in (value, *value.split())
        }
        for secret in sorted(secrets, key=len, reverse=True):
            if len(secret) >= 4:
                text = text.replace(secret, "[redacted]")
    return text


def _html_page(response: httpx.Response) -> str | None:
    """``"an HTML page ('<title>')"`` when the body is HTML (by type or by its first byte), else None."""
    content_type = response.headers.get("content-type", "").lower()
    if "text/html" not in content_type and response.content.lstrip()[:1] != b"<":
        return None
    match = _TITLE.search(response.content[:65536])
    title = (
        " ".join(html.unescape(match.group(1).decode("utf-8", "replace")).split()) if match else ""
    )
    return f"an HTML page ({title[:100]!r})" if title else "an HTML page"


def _excerpt(response: httpx.Response) -> str:
    """A short, redacted excerpt of an error body: its message field when it is JSON."""
    if not response.content:
        return ""
    if page := _html_page(response):
        return page
    text = response.content[:4096].decode("utf-8", "replace")
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        for key in ("message", "error_description", "error", "detail"):
            value = data.get(key)
            value = value.get("message") if isinstance(value, dict) else value
            if isinstance(value, str) and value.strip():
                text = value
                break
    text = _scrub(" ".join(text.split()), response.request)
    return text if len(text) <= _EXCERPT else text[: _EXCERPT - 3] + "..."


def _status(code: int) -> str:
    return f"{code} {httpx.codes.get_reason_phrase(code)}".rstrip()


#: what a response's stream becomes once its body is read (see HttpEngine._send_paced)
_DRAINED = httpx.ByteStream(b"")

#: how many merged URLs an engine keeps (next links differ page by page: the cache is then emptied)
_URL_CACHE = 256


@dataclass(frozen=True, slots=True)
class _Call:
    """One call of :meth:`HttpEngine.request`: what every attempt sends."""

    method: str
    url: httpx.URL
    headers: httpx.Headers
    body: bytes
    shown: str  # the redacted URL, for messages
    auth_origin: tuple[str, str, int | None]
    exact: bool = False  # parse numbers with a fraction as Decimal (the stream declares decimals)

    def error(
        self, kind: type[HTTPError], message: str, status: int = 0, attempts: int = 0
    ) -> HTTPError:
        text, method, url = f"{self.method} {self.shown} {message}", self.method, self.shown
        if issubclass(kind, HTTPStatusError):
            return kind(text, status_code=status, method=method, url=url, attempts=attempts)
        return kind(text, method=method, url=url, attempts=attempts)


@dataclass(slots=True)
class _Failure:
    """A failed attempt, and what to raise if it is the last one."""

    kind: type[HTTPError]
    what: str  # "failed: 503 Service Unavailable", "returned malformed JSON (...)"
    hint: str = ""
    status: int = 0
    cause: BaseException | None = None
    retryable: bool = True
    wait: float | None = None  # from Retry-After

    def error(self, call: _Call, attempts: int, same: bool) -> HTTPError:
        if not self.retryable:
            where = f" on attempt {attempts}" if attempts > 1 else ""
            message = f"{self.what}{where}; not retried, since {call.method} is not idempotent"
        elif self.kind is ResponseError:
            message = f"{self.what} after {attempts} attempt{'s' * (attempts > 1)}"
        else:
            where = f"on all {attempts} attempts" if same else f"on the last of {attempts} attempts"
            where = where if attempts > 1 else "on its only attempt"
            message = f"{self.what} {where}{self.hint}"
        return call.error(self.kind, message, self.status, attempts)


Outcome = tuple[Any, httpx.Response] | _Failure | Literal["refresh"]


class _Pacer:
    """httpcore's trace hook for one request: wait for the limiter just before the
    request line is written, and tell it the moment the request is on the wire.

    A request httpcore sends again on a fresh connection (a stale keep-alive
    one failed) is granted once.
    """

    __slots__ = ("granted", "limiter", "stats")

    def __init__(self, limiter: Limiter, stats: HttpStats) -> None:
        self.limiter = limiter
        self.stats = stats
        self.granted = False

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        if event.endswith(".send_request_headers.started"):
            if not self.granted:
                self.granted = True
                self.stats.add("wait_ms", round(1000 * self.limiter.acquire()))
        elif event.endswith(".send_request_body.complete"):
            self.limiter.sent()


class HttpEngine:
    """Sends requests for one connector run through a single pooled ``httpx.Client``.

    Safe to share between the run's worker threads. Use it as a context manager
    or call :meth:`close`. ``sleep``, ``clock`` and ``rng`` are injectable for
    tests; ``transport`` replaces the network (e.g. ``httpx.MockTransport``).
    Credentials (``auth``) go only to the base URL's origin (without a base
    URL, the origin of each call's first request). ``hosts`` (the run's
    :class:`~tapyard.base.manifest.HostGuard`) refuses any host the connector's
    manifest does not declare, before the request is sent.
    """

    def __init__(
        self,
        base_url: str = "",
        *,
        auth: AuthStrategy | None = None,
        policy: HttpPolicy | None = None,
        limiter: Limiter | None = None,
        on_response: Callable[[httpx.Response], None] | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        hosts: HostGuard | None = None,
    ) -> None:
        self.policy = policy = policy or HttpPolicy()
        #: the hosts the connector's manifest allows: checked on every hop, redirects too
        self._hosts = hosts
        self.stats = HttpStats()
        self.breaker = CircuitBreaker(
            policy.circuit_threshold, policy.circuit_cooldown, clock=clock
        )
        self._auth, self._limiter, self._on_response = auth, limiter, on_response
        if limiter is not None and limiter.max_wait is None:
            # No wait the server can cause may outlast the Retry-After cap.
            limiter.max_wait = policy.max_retry_after
        self._headers = httpx.Headers(headers or {})
        self._sleep, self._clock, self._rng = sleep, clock, rng or random.Random()
        self._client = httpx.Client(
            base_url=base_url,
            headers={"User-Agent": policy.user_agent},
            timeout=httpx.Timeout(policy.read_timeout, connect=policy.connect_timeout),
            limits=httpx.Limits(
                max_connections=policy.max_connections,
                max_keepalive_connections=policy.max_connections,
            ),
            follow_redirects=False,
            transport=transport,
        )
        self._base_origin = _origin(self._client.base_url) if base_url else None
        #: each URL text a call named, merged with the base URL (a stream's path, asked for page after page)
        self._urls: dict[str, httpx.URL] = {}
        # httpx's default transport is httpcore, which calls the trace hook;
        # another transport may not, so it is paced before the send.
        self._traced = transport is None

    def close(self) -> None:
        """Close the pooled connections. The engine cannot be used afterwards."""
        self._client.close()

    def __enter__(self) -> HttpEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | str | None = None,
    ) -> httpx.Response:
        """Send a request, retrying as the policy says; return the final response, body read.

        ``url`` is relative to the base URL, or absolute; ``params`` are merged
        into any query string it already has. Returns 2xx responses (and 1xx or
        3xx ones that are not redirects); raises an :class:`HTTPError` otherwise.
        """
        call = self._prepare(method, url, params, headers, json, content)
        with trace_span("tapyard.call", {"http.request.method": call.method, "url.full": call.shown}):
            return self._run(call, False)[1]

    def get_json(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        exact_numbers: bool = False,
    ) -> tuple[Any, httpx.Response]:
        """GET ``url`` and parse its JSON body; return ``(body, response)``.

        A 2xx that is malformed JSON or an HTML page counts as a failed attempt
        and is retried; after the last one it raises :class:`ResponseError`.
        The body is ``None`` for 204, 205 and 304. Integers keep every digit;
        with ``exact_numbers`` numbers with a fraction or an exponent are
        :class:`decimal.Decimal` rather than float (see ``tapyard.base._values.decode_json``).
        """
        call = self._prepare("GET", url, params, headers, None, None)
        if exact_numbers:
            call = dataclasses.replace(call, exact=True)
        with trace_span("tapyard.page", {"http.request.method": call.method, "url.full": call.shown}):
            return self._run(call, True)

    def _prepare(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        json: Any,
        content: bytes | str | None,
    ) -> _Call:
        try:
            if json is None and content is None and not self._client.cookies:
                # No body and no cookie to merge: the URL against the base URL (made
                # once per URL text) and the client's headers are all httpx's own
                # request building would add, and _build makes the request sent.
                base = self._urls.get(url)
                if base is None:
                    if len(self._urls) >= _URL_CACHE:
                        self._urls.clear()
                    base = self._urls[url] = self._client.build_request("GET", url).url
                target = base.copy_merge_params(params) if params else base
                sent = httpx.Headers(self._client.headers)
                sent.update(self._headers)
                sent.update(headers or {})
                return _Call(method.upper(), target, sent, b"", redact_url(target), self._base_origin or _origin(target))
            merged = httpx.Headers(self._headers)
            merged.update(headers or {})
            first = self._client.build_request(
                method.upper(), url, headers=merged, json=json, content=content
            )
            # httpx would replace the URL's query string with ``params``: merge
            # them instead, so that a next link's cursor survives.
            target = first.url.copy_merge_params(params) if params else first.url
        except httpx.InvalidURL as exc:
            what = f"{method.upper()} {redact_url(url)}: not a valid URL ({_scrub(str(exc))})"
            raise HTTPError(what) from exc
        origin = self._base_origin or _origin(target)
        return _Call(first.method, target, first.headers, first.read(), redact_url(target), origin)

    def _run(self, call: _Call, want_json: bool) -> tuple[Any, httpx.Response]:
        attempts, budget, refreshed, failures = 0, self.policy.max_attempts, False, set[str]()
        while True:
            attempts += 1
            self.breaker.before_call(method=call.method, url=call.shown)
            try:
                outcome = self._judge(call, self._exchange(call), want_json, refreshed)
            except HTTPError as exc:
                exc.attempts = attempts
                server_fault = isinstance(
                    exc, (DeadlineExceededError, ResponseError, RetryAfterTooLongError)
                )
                fault = server_fault or getattr(exc, "status_code", 0) >= 500
                self.breaker.record_failure(str(exc)) if fault else self.breaker.record_success()
                raise
            except httpx.TransportError as exc:
                self.stats.add("transport_errors")
                outcome = self._transport_failure(call, exc, attempts)
            except httpx.DecodingError as exc:
                outcome = _Failure(
                    ResponseError, f"returned a body that cannot be decoded ({exc})", cause=exc
                )
            if not isinstance(outcome, _Failure):
                self.breaker.record_success()
                if outcome != "refresh":
                    return outcome
                # Fresh credentials get one more attempt, outside the retry budget.
                refreshed, budget = True, budget + 1
                self.stats.add("retries")
                continue
            self.breaker.record_failure(f"{call.method} {call.shown} {outcome.what}")
            failures.add(outcome.what)
            if not outcome.retryable or attempts >= budget:
                raise outcome.error(call, attempts, same=len(failures) == 1) from outcome.cause
            self.stats.add("retries")
            pause = outcome.wait if outcome.wait is not None else self._backoff(attempts)
            self.stats.add("wait_ms", round(1000 * pause))
            self._sleep(pause)

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform between 0 and ``backoff_base * 2**(attempt - 1)``, capped."""
        cap = min(self.policy.backoff_max, self.policy.backoff_base * 2.0 ** min(attempt - 1, 60))
        return self._rng.uniform(0.0, cap)

    def _transport_failure(self, call: _Call, exc: httpx.TransportError, attempts: int) -> _Failure:
        detail = _scrub(str(exc)) or "no detail"
        if isinstance(exc, httpx.ConnectError) and "refused" in detail.lower():
            # the cause a user needs when a server is down: who refused
            host = f"[{call.url.host}]" if ":" in call.url.host else call.url.host
            where = f"{host}:{call.url.port or _origin(call.url)[2]}"
            detail = f"connection refused to {where}"
        what = f"failed: {type(exc).__name__} ({detail})"
        if not isinstance(exc, _RETRYABLE):
            # An unsupported scheme or a malformed request: trying again cannot help.
            raise call.error(TransportError, f"{what}; not retried", attempts=attempts) from exc
        hint = "; check the network and the base URL, or try again later"
        never_left = isinstance(exc, _NEVER_LEFT)
        retryable = call.method not in _NOT_IDEMPOTENT or never_left
        return _Failure(TransportError, what, hint, cause=exc, retryable=retryable)

    def _exchange(self, call: _Call) -> httpx.Response:
        """One attempt: send, follow redirects, read the final body, all within the deadline
        (an ``HTTP <method>`` span when tracing is on)."""
        with trace_span(f"HTTP {call.method}", {"http.request.method": call.method, "url.full": call.shown},
                        client=True) as span:
            response = self._exchange_untraced(call)
            span.set_attribute("http.response.status_code", response.status_code)
            return response

    def _exchange_untraced(self, call: _Call) -> httpx.Response:
        deadline = self._clock() + self.policy.request_deadline
        method, url, body = call.method, call.url, call.body
        for _ in range(self.policy.max_redirects + 1):
            if self._hosts is not None:
                self._hosts.check(url)  # before anything leaves the machine
            response = self._send(call, self._build(call, method, url, body, deadline), deadline)
            location = response.headers.get("location")
            if response.status_code not in _REDIRECTS or not location:
                return response
            url = response.url.join(location)
            if response.status_code == 303 or (
                response.status_code in (301, 302) and method == "POST"
            ):
                method, body = ("HEAD" if method == "HEAD" else "GET"), b""
        what = f"failed: more than {self.policy.max_redirects} redirects"
        raise call.error(HTTPStatusError, what, response.status_code)

    def _build(
        self, call: _Call, method: str, url: httpx.URL, body: bytes, deadline: float
    ) -> httpx.Request:
        headers = httpx.Headers(call.headers)
        # httpx sets these again for the URL and body actually sent.
        for name in ("host", "content-length", "transfer-encoding"):
            headers.pop(name, None)
        if method != call.method:
            headers.pop("content-type", None)
        same_origin = _origin(url) == call.auth_origin
        if not same_origin:
            for name in [name for name in headers if _CREDENTIAL.search(name)]:
                del headers[name]
        request = httpx.Request(method, url, headers=headers, content=body or None)
        if same_origin and self._auth is not None:
            self._auth.apply(request)
        left = max(0.001, deadline - self._clock())
        connect, read = min(self.policy.connect_timeout, left), min(self.policy.read_timeout, left)
        request.extensions["timeout"] = {
            "connect": connect,
            "read": read,
            "write": read,
            "pool": connect,
        }
        return request

    def _send(self, call: _Call, request: httpx.Request, deadline: float) -> httpx.Response:
        if self._limiter is None:
            return self._send_paced(call, request, deadline)
        with self._limiter.in_flight():
            try:
                # A wait over the cap fails now, before a connection is taken.
                wait = self._limiter.wait_time()
                cap = self._limiter.max_wait
                if cap is not None and wait > cap:
                    raise RateLimitWaitTooLong(wait, cap, "the server's rate-limit headers")
                return self._send_paced(call, request, deadline)
            except RateLimitWaitTooLong as exc:
                raise call.error(
                    RetryAfterTooLongError,
                    f"not sent: {exc.reason} asked for a wait of {exc.seconds:.0f}s before the "
                    f"next request, more than the {exc.cap:g}s cap; run again later, or raise "
                    "HttpPolicy.max_retry_after (or rate_limit max_wait) to wait that long",
                ) from None

    def _send_paced(self, call: _Call, request: httpx.Request, deadline: float) -> httpx.Response:
        if self._limiter is not None:
            if self._traced:
                request.extensions["trace"] = _Pacer(self._limiter, self.stats).trace
            else:
                self.stats.add("wait_ms", round(1000 * self._limiter.acquire()))
        self.stats.add("requests")
        try:
            response = self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            self._check_deadline(call, deadline, exc)
            raise
        finally:
            if self._limiter is not None and self._traced:
                # In case the request was granted but never reached the wire.
                # Without the trace hook nothing can tell when a request went
                # out, and reporting the end of the round trip instead would
                # teach the limiter a grant-to-wire delay that is not one.
                self._limiter.sent()
        if response.status_code == 429 or response.status_code >= 500:
            self.stats.add("throttled" if response.status_code == 429 else "server_errors")
        if self._limiter is not None:
            # As soon as the headers are in: the limiter times the round trip.
            self._limiter.learn(response.headers, status=response.status_code)
        try:
            self._read(call, response, deadline)
        finally:
            response.close()
            # httpx's response and the stream it reads refer to each other: a cycle
            # that only the garbage collector frees, and the body with it, page after
            # page. The body is read (or the response failed): the stream is done with.
            response.stream = _DRAINED
            self.stats.add("bytes", response.num_bytes_downloaded)
        if self._on_response is not None:
            self._on_response(response)
        return response

    def _read(self, call: _Call, response: httpx.Response, deadline: float) -> None:
        """Read the whole body in chunks, checking the size cap and the deadline between them."""
        cap, declared = self.policy.max_page_bytes, response.headers.get("content-length", "")
        too_large = (
            "returned a response that {}, over the {}-byte cap (raise HttpPolicy.max_page_bytes)"
        )
        if declared.isdigit() and int(declared) > cap:
            raise call.error(
                ResponseError, too_large.format(f"declares {int(declared)} bytes", cap)
            )
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > cap:
                    raise call.error(
                        ResponseError, too_large.format(f"sent more than {cap} bytes", cap)
                    )
                chunks.append(chunk)
                self._check_deadline(call, deadline, None)
        except httpx.TimeoutException as exc:
            self._check_deadline(call, deadline, exc)
            raise
        # Read by hand to check the deadline between chunks: store the body
        # where httpx's own read() would have.
        response._content = b"".join(chunks)

    def _check_deadline(self, call: _Call, deadline: float, cause: BaseException | None) -> None:
        if self._clock() >= deadline:
            what = (
                f"did not complete within the {self.policy.request_deadline:g}s request deadline"
                " (HttpPolicy.request_deadline); the server is too slow or stalled"
            )
            raise call.error(DeadlineExceededError, what) from cause

    def _judge(
        self, call: _Call, response: httpx.Response, want_json: bool, refreshed: bool
    ) -> Outcome:
        """What a final response means: a result, a failure worth retrying, or an error (raised)."""
        status = response.status_code
        if status in self.policy.retry_statuses:
            return self._retryable_status(call, response)
        if status in (401, 403):
            if status == 401 and not refreshed and self._auth is not None and self._auth.refresh():
                return "refresh"
            advice = (
                "check the credentials"
                if status == 401
                else "the credentials lack permission for it"
            )
            said = f" (server said: {excerpt})" if (excerpt := _excerpt(response)) else ""
            raise call.error(
                AuthenticationError, f"was refused: {_status(status)}; {advice}{said}", status
            )
        if status >= 400:
            said = f": {excerpt}" if (excerpt := _excerpt(response)) else ""
            raise call.error(HTTPStatusError, f"failed: {_status(status)}{said}", status)
        if not want_json or not 200 <= status < 300 or status in (204, 205):
            return None, response
        # A 2xx JSON body holds records: nothing of it goes in the message. An HTML
        # page is not records (a portal, a maintenance page): its title is the clue.
        size = f"{_status(status)}, {len(response.content):,} bytes"
        if page := _html_page(response):
            return _Failure(ResponseError, f"returned {_scrub(page, response.request)} instead of JSON")
        try:
            exact = self.policy.exact_numbers or call.exact
            return decode_json(response.content, exact=exact), response
        except ValueError as exc:
            # the parser's message says where (line, column), never what
            return _Failure(ResponseError, f"returned malformed JSON ({size}; {str(exc)[:200]})", cause=exc)

    def _retryable_status(self, call: _Call, response: httpx.Response) -> _Failure:
        status, wait = response.status_code, None
        if status in (429, 503):
            header = response.headers.get("retry-after")
            wait = parse_retry_after(header)[0]
            if wait is not None and wait > self.policy.max_retry_after:
                raise call.error(
                    RetryAfterTooLongError,
                    f"answered {_status(status)} and asked to wait {wait:.0f}s before retrying, more "
                    f"than the {self.policy.max_retry_after:g}s cap; raise HttpPolicy.max_retry_after "
                    "to wait that long",
                )
            if status == 429 and self._limiter is not None:
                # The limiter holds every worker back (or, for a coarse
                # Retry-After, paces the retry at what it learned); it says
                # what is left for this caller to sleep.
                wait = self._limiter.throttled(header)
        if status == 429:
            hint = "; the vendor API kept rate limiting, lower the request rate or try again later"
        else:
            hint = "; the vendor API is failing, try again later"
        page = _html_page(response)
        what = f"failed: {_status(status)}" + (f" ({page})" if page else "")
        retryable = status == 429 or call.method not in _NOT_IDEMPOTENT
        return _Failure(HTTPStatusError, what, hint, status, None, retryable, wait)
