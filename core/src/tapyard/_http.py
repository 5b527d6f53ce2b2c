"""The HTTP engine every connector run uses: one pooled ``httpx.Client`` per run.

:class:`HttpEngine` sends a request and hands back a response whose body has
been read in full, or raises one of the :class:`~tapyard.HTTPError` family with
a one-line message that is safe to show. Along the way it:

- retries 429, 5xx (per :class:`HttpPolicy`) and connection failures with
  exponential backoff and full jitter, honouring ``Retry-After``;
- reads each body in chunks against a monotonic deadline and a size cap, since
  httpx timeouts alone let a server that drips bytes hang a run;
- follows redirects itself, so that credentials never reach another origin;
- asks the circuit breaker before each attempt and the rate limiter before each
  request, and feeds every response back to the limiter.

Idempotent methods are retried on every retryable failure; POST and PATCH only
on 429 and on connection failures where the request never left.
"""

from __future__ import annotations

import email.utils
import html
import math
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field

from tapyard._circuit import CircuitBreaker
from tapyard._exceptions import (
    AuthenticationError,
    DeadlineExceededError,
    HTTPError,
    HTTPStatusError,
    ResponseError,
    RetryAfterTooLongError,
    TransportError,
)
from tapyard._model import AuthStrategy
from tapyard._ratelimit import RateLimiter

__all__ = ["HttpEngine", "HttpPolicy", "HttpStats", "redact_url"]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NOT_IDEMPOTENT = frozenset({"POST", "PATCH"})
#: failures after which the request certainly never reached the server
_NEVER_LEFT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_RETRYABLE_TRANSPORT = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)
#: header names that may carry a credential: never sent to another origin
_CREDENTIAL_NAME = re.compile(
    r"auth|token|key|secret|session|cookie|passw|credential|signature|csrf|xsrf", re.I
)
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title\s*>", re.I | re.S)
_EXCERPT_CHARS = 200


class HttpPolicy(BaseModel):
    """Timeouts, limits and retry settings for one engine. Times are in seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connect_timeout: float = Field(10.0, gt=0)
    read_timeout: float = Field(30.0, gt=0)
    #: total time for one attempt, the whole body included
    request_deadline: float = Field(300.0, gt=0)
    max_page_bytes: int = Field(64 * 1024 * 1024, gt=0)
    max_attempts: int = Field(6, ge=1)
    backoff_base: float = Field(0.5, ge=0)
    backoff_max: float = Field(30.0, ge=0)
    #: a longer Retry-After fails the request instead of waiting
    max_retry_after: float = Field(120.0, ge=0)
    retry_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})
    circuit_threshold: int = Field(10, ge=1)
    circuit_cooldown: float = Field(30.0, ge=0)
    max_redirects: int = Field(10, ge=0)
    max_connections: int = Field(10, ge=1)
    user_agent: str = "tapyard"


Counter = Literal["requests", "retries", "throttled", "server_errors", "transport_errors", "bytes"]
_COUNTERS: tuple[Counter, ...] = (
    "requests",
    "retries",
    "throttled",
    "server_errors",
    "transport_errors",
    "bytes",
)


@dataclass
class HttpStats:
    """Counters of HTTP work, safe to update from several threads.

    ``requests`` counts requests sent (attempts and redirect hops), ``retries``
    the attempts made again after a failure, ``throttled`` the 429s,
    ``server_errors`` the 5xx, ``transport_errors`` the connection failures and
    ``bytes`` the bytes received.
    """

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    server_errors: int = 0
    transport_errors: int = 0
    bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, counter: Counter, amount: int = 1) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + amount)

    def as_dict(self) -> dict[str, int]:
        """A consistent snapshot of every counter."""
        with self._lock:
            return {name: getattr(self, name) for name in _COUNTERS}


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
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    if not parts.scheme and not netloc:
        return parts.path
    return f"{parts.scheme}://{netloc}{parts.path or '/'}"


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default


def _scrub(text: str, secrets: frozenset[str] = frozenset()) -> str:
    """``text`` with URLs redacted and known secret values masked."""
    text = _URL_IN_TEXT.sub(lambda match: redact_url(match.group()), text)
    for secret in secrets:
        text = text.replace(secret, "[redacted]")
    return text


def _secrets(request: httpx.Request) -> frozenset[str]:
    """The credential values a request carried, to keep them out of error messages."""
    values = set()
    for name, value in request.headers.items():
        if _CREDENTIAL_NAME.search(name):
            values.add(value)
            values.update(value.split())
    for name, value in request.url.params.multi_items():
        if _CREDENTIAL_NAME.search(name):
            values.add(value)
    return frozenset(value for value in values if len(value) >= 4)


def _html_title(body: bytes) -> str:
    match = _TITLE.search(body[:65536])
    if match is None:
        return ""
    title = html.unescape(match.group(1).decode("utf-8", "replace"))
    return " ".join(title.split())[:100]


def _is_html(response: httpx.Response) -> bool:
    content_type = response.headers.get("content-type", "").lower()
    return "text/html" in content_type or response.content.lstrip()[:1] == b"<"


def _excerpt(response: httpx.Response) -> str:
    """A short, redacted excerpt of an error body: its message field when it is JSON."""
    body = response.content
    if not body:
        return ""
    if _is_html(response):
        title = _html_title(body)
        return f"an HTML page ({title!r})" if title else "an HTML page"
    text = body[:4096].decode("utf-8", "replace")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        for key in ("message", "error_description", "error", "detail"):
            value = data.get(key)
            if isinstance(value, dict):
                value = value.get("message")
            if isinstance(value, str) and value.strip():
                text = value
                break
    text = _scrub(" ".join(text.split()), _secrets(response.request))
    return text if len(text) <= _EXCERPT_CHARS else text[: _EXCERPT_CHARS - 3] + "..."


def _status(code: int) -> str:
    return f"{code} {httpx.codes.get_reason_phrase(code)}".rstrip()


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: seconds, fractional seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        return max(0.0, when.timestamp() - time.time())
    return max(0.0, seconds) if math.isfinite(seconds) else None


@dataclass(frozen=True, slots=True)
class _Call:
    """One call to :meth:`HttpEngine.request`: what to send on every attempt."""

    method: str
    url: httpx.URL
    headers: httpx.Headers
    body: bytes
    shown: str  # the redacted URL for messages
    auth_origin: tuple[str, str, int | None]


@dataclass(slots=True)
class _Failure:
    """A failed attempt, and the error to raise if it is the last one."""

    kind: type[HTTPError]
    head: str  # "GET http://h/p failed: 503 Service Unavailable"
    hint: str = ""  # "; the vendor API is failing, try again later"
    status: int | None = None
    cause: BaseException | None = None
    retryable: bool = True
    wait: float | None = None  # from Retry-After

    def error(self, call: _Call, attempts: int, same: bool) -> HTTPError:
        if not self.retryable:
            where = f" on attempt {attempts}" if attempts > 1 else ""
            message = f"{self.head}{where}; not retried, since {call.method} is not idempotent"
        elif self.kind is ResponseError:
            message = f"{self.head} after {attempts} attempt{'s' if attempts > 1 else ''}"
        else:
            if attempts == 1:
                where = " on its only attempt"
            else:
                where = (
                    f" on all {attempts} attempts"
                    if same
                    else f" on the last of {attempts} attempts"
                )
            message = f"{self.head}{where}{self.hint}"
        if self.status is not None:
            return HTTPStatusError(
                message,
                status_code=self.status,
                method=call.method,
                url=call.shown,
                attempts=attempts,
            )
        return self.kind(message, method=call.method, url=call.shown, attempts=attempts)


class HttpEngine:
    """Sends requests for one connector run through a single pooled ``httpx.Client``.

    Safe to share between the run's worker threads. Use it as a context manager
    or call :meth:`close`. ``sleep``, ``clock`` and ``rng`` are injectable for
    tests; ``transport`` replaces the network (e.g. ``httpx.MockTransport``).
    """

    def __init__(
        self,
        base_url: str = "",
        *,
        auth: AuthStrategy | None = None,
        policy: HttpPolicy | None = None,
        limiter: RateLimiter | None = None,
        on_response: Callable[[httpx.Response], None] | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy or HttpPolicy()
        self.stats = HttpStats()
        self._auth = auth
        self._limiter = limiter
        self._on_response = on_response
        self._headers = httpx.Headers(headers or {})
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._breaker = CircuitBreaker(
            self.policy.circuit_threshold, self.policy.circuit_cooldown, clock=clock
        )
        self._client = httpx.Client(
            base_url=base_url,
            headers={"User-Agent": self.policy.user_agent},
            timeout=httpx.Timeout(self.policy.read_timeout, connect=self.policy.connect_timeout),
            limits=httpx.Limits(
                max_connections=self.policy.max_connections,
                max_keepalive_connections=self.policy.max_connections,
            ),
            follow_redirects=False,
            transport=transport,
        )
        self._base_origin = _origin(self._client.base_url) if base_url else None

    @property
    def breaker(self) -> CircuitBreaker:
        """The engine's circuit breaker (one per engine)."""
        return self._breaker

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
        into any query string it already has. Returns 2xx responses
        (and 1xx/3xx ones that are not redirects); raises an :class:`HTTPError`
        for everything else.
        """
        call = self._prepare(method, url, params, headers, json, content)
        return self._run(call, want_json=False)[1]

    def get_json(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[Any, httpx.Response]:
        """GET ``url`` and parse its JSON body; return ``(body, response)``.

        A 2xx that is malformed JSON or an HTML page counts as a failed attempt
        and is retried; after the last one it raises :class:`ResponseError`.
        The body is ``None`` for 204, 205 and 304.
        """
        call = self._prepare("GET", url, params, headers, None, None)
        return self._run(call, want_json=True)

    def _prepare(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        json: Any,
        content: bytes | str | None,
    ) -> _Call:
        merged = httpx.Headers(self._headers)
        merged.update(headers or {})
        try:
            first = self._client.build_request(
                method.upper(), url, headers=merged, json=json, content=content
            )
            # httpx would replace the URL's query string with ``params``; a next
            # link's cursor must survive, so merge them instead.
            target = first.url.copy_merge_params(params) if params else first.url
        except httpx.InvalidURL as exc:
            raise HTTPError(
                f"{method.upper()} {redact_url(url)}: not a valid URL ({_scrub(str(exc))})"
            ) from exc
        return _Call(
            method=first.method,
            url=target,
            headers=first.headers,
            body=first.read(),
            shown=redact_url(target),
            auth_origin=self._base_origin or _origin(target),
        )

    def _run(self, call: _Call, *, want_json: bool) -> tuple[Any, httpx.Response]:
        attempts, budget, refreshed = 0, self.policy.max_attempts, False
        heads: set[str] = set()
        while True:
            attempts += 1
            self._breaker.before_call(method=call.method, url=call.shown)
            try:
                response = self._exchange(call)
                outcome = self._judge(call, response, want_json=want_json, refreshed=refreshed)
            except HTTPError as exc:
                exc.attempts = attempts
                self._record(exc)
                raise
            except httpx.TransportError as exc:
                self.stats.add("transport_errors")
                outcome = self._transport_failure(call, exc, attempts)
            except httpx.DecodingError as exc:
                detail = _scrub(str(exc))
                head = f"{call.method} {call.shown} returned a body that could not be decoded ({detail})"
                outcome = _Failure(ResponseError, head, cause=exc)
            if outcome == "refresh":
                # Fresh credentials get one more attempt, outside the retry budget.
                refreshed, budget = True, budget + 1
                self.stats.add("retries")
                continue
            if not isinstance(outcome, _Failure):
                self._breaker.record_success()
                return outcome
            self._breaker.record_failure()
            heads.add(outcome.head)
            if not outcome.retryable or attempts >= budget:
                raise outcome.error(call, attempts, same=len(heads) == 1) from outcome.cause
            self.stats.add("retries")
            self._sleep(outcome.wait if outcome.wait is not None else self._backoff(attempts))

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform between 0 and ``backoff_base * 2**(attempt - 1)``, capped."""
        cap = min(self.policy.backoff_max, self.policy.backoff_base * 2.0 ** min(attempt - 1, 60))
        return self._rng.uniform(0.0, cap)

    def _record(self, error: HTTPError) -> None:
        """Tell the breaker how an attempt that raised went: the server failing, or not."""
        status = getattr(error, "status_code", 0)
        if (
            isinstance(error, (DeadlineExceededError, ResponseError, RetryAfterTooLongError))
            or status >= 500
        ):
            self._breaker.record_failure()
        else:
            self._breaker.record_success()

    def _transport_failure(self, call: _Call, exc: httpx.TransportError, attempts: int) -> _Failure:
        head = f"{call.method} {call.shown} failed: {type(exc).__name__} ({_scrub(str(exc)) or 'no detail'})"
        if not isinstance(exc, _RETRYABLE_TRANSPORT):
            # An unsupported scheme or a malformed request: trying again cannot help.
            raise TransportError(
                f"{head}; not retried", method=call.method, url=call.shown, attempts=attempts
            ) from exc
        return _Failure(
            TransportError,
            head,
            "; check the network and the base URL, or try again later",
            cause=exc,
            retryable=call.method not in _NOT_IDEMPOTENT or isinstance(exc, _NEVER_LEFT),
        )

    def _exchange(self, call: _Call) -> httpx.Response:
        """One attempt: send, follow redirects, read the final body. Within the deadline."""
        deadline = self._clock() + self.policy.request_deadline
        method, url, body = call.method, call.url, call.body
        for hops in range(self.policy.max_redirects + 1):
            request = self._build(call, method, url, body, deadline)
            response = self._send(call, request, deadline)
            location = response.headers.get("location")
            if response.status_code not in _REDIRECTS or not location:
                return response
            if hops == self.policy.max_redirects:
                break
            url = response.url.join(location)
            if response.status_code == 303 or (
                response.status_code in (301, 302) and method == "POST"
            ):
                method, body = ("HEAD" if method == "HEAD" else "GET"), b""
        raise HTTPStatusError(
            f"{call.method} {call.shown} failed: more than {self.policy.max_redirects} redirects",
            status_code=response.status_code,
            method=call.method,
            url=call.shown,
        )

    def _build(
        self, call: _Call, method: str, url: httpx.URL, body: bytes, deadline: float
    ) -> httpx.Request:
        headers = httpx.Headers(call.headers)
        # httpx recomputes these for the URL and body actually sent.
        for name in ("host", "content-length", "transfer-encoding"):
            headers.pop(name, None)
        if method != call.method:
            headers.pop("content-type", None)
        same_origin = _origin(url) == call.auth_origin
        if not same_origin:
            for name in list(headers.keys()):
                if _CREDENTIAL_NAME.search(name):
                    del headers[name]
        request = httpx.Request(method, url, headers=headers, content=body or None)
        if same_origin and self._auth is not None:
            self._auth.apply(request)
        left = max(0.001, deadline - self._clock())
        connect = min(self.policy.connect_timeout, left)
        read = min(self.policy.read_timeout, left)
        request.extensions["timeout"] = {
            "connect": connect,
            "read": read,
            "write": read,
            "pool": connect,
        }
        return request

    def _send(self, call: _Call, request: httpx.Request, deadline: float) -> httpx.Response:
        if self._limiter is not None:
            self._limiter.acquire()
        self.stats.add("requests")
        try:
            response = self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            self._check_deadline(call, deadline, exc)
            raise
        if response.status_code == 429:
            self.stats.add("throttled")
        elif response.status_code >= 500:
            self.stats.add("server_errors")
        if self._limiter is not None:
            # As soon as the headers are in: the limiter times the round trip.
            self._limiter.learn(response.headers)
        try:
            self._read(call, response, deadline)
        finally:
            response.close()
            self.stats.add("bytes", response.num_bytes_downloaded)
        if self._on_response is not None:
            self._on_response(response)
        return response

    def _read(self, call: _Call, response: httpx.Response, deadline: float) -> None:
        """Read the whole body in chunks, checking the size cap and the deadline between them."""
        cap = self.policy.max_page_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise self._too_large(call, f"declares {int(declared)} bytes")
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > cap:
                    raise self._too_large(call, f"sent more than {cap} bytes")
                chunks.append(chunk)
                self._check_deadline(call, deadline, None)
        except httpx.TimeoutException as exc:
            self._check_deadline(call, deadline, exc)
            raise
        # The body was read by hand so the deadline could be checked between
        # chunks; store it where httpx's own read() would have.
        response._content = b"".join(chunks)

    def _too_large(self, call: _Call, what: str) -> ResponseError:
        return ResponseError(
            f"{call.method} {call.shown} returned a response that {what}, over the "
            f"{self.policy.max_page_bytes}-byte cap (raise HttpPolicy.max_page_bytes to allow it)",
            method=call.method,
            url=call.shown,
            attempts=1,
        )

    def _check_deadline(self, call: _Call, deadline: float, cause: BaseException | None) -> None:
        if self._clock() < deadline:
            return
        raise DeadlineExceededError(
            f"{call.method} {call.shown} did not complete within the "
            f"{self.policy.request_deadline:g}s request deadline (HttpPolicy.request_deadline); "
            "the server is too slow or stalled",
            method=call.method,
            url=call.shown,
            attempts=1,
        ) from cause

    def _judge(
        self, call: _Call, response: httpx.Response, *, want_json: bool, refreshed: bool
    ) -> tuple[Any, httpx.Response] | _Failure | Literal["refresh"]:
        """Decide what a final response means: a result, a failure to retry, or an error."""
        status = response.status_code
        head = f"{call.method} {call.shown} failed: {_status(status)}"
        if status in self.policy.retry_statuses:
            return self._retryable_status(call, response, head)
        if status in (401, 403):
            if status == 401 and not refreshed and self._auth is not None and self._auth.refresh():
                return "refresh"
            advice = (
                "check the credentials"
                if status == 401
                else "the credentials lack permission for it"
            )
            excerpt = _excerpt(response)
            raise AuthenticationError(
                f"{call.method} {call.shown} was refused: {_status(status)}; {advice}"
                + (f" (server said: {excerpt})" if excerpt else ""),
                status_code=status,
                method=call.method,
                url=call.shown,
            )
        if status >= 400:
            excerpt = _excerpt(response)
            raise HTTPStatusError(
                head + (f": {excerpt}" if excerpt else ""),
                status_code=status,
                method=call.method,
                url=call.shown,
            )
        if not want_json or status in (204, 205, 304) or not 200 <= status < 300:
            return None, response
        return self._parse_json(call, response)

    def _retryable_status(self, call: _Call, response: httpx.Response, head: str) -> _Failure:
        status = response.status_code
        wait = None
        if status in (429, 503):
            wait = _retry_after(response.headers.get("retry-after"))
            if wait is not None and wait > self.policy.max_retry_after:
                raise RetryAfterTooLongError(
                    f"{call.method} {call.shown} answered {_status(status)} and asked to wait "
                    f"{wait:.0f}s before retrying, more than the {self.policy.max_retry_after:g}s cap; "
                    "raise HttpPolicy.max_retry_after to wait that long",
                    method=call.method,
                    url=call.shown,
                )
            if status == 429 and wait is not None and self._limiter is not None:
                self._limiter.penalize(wait)
        if status == 429:
            hint = "; the vendor API kept rate limiting, lower the request rate or try again later"
        else:
            hint = "; the vendor API is failing, try again later"
        excerpt = _excerpt(response) if _is_html(response) else ""
        return _Failure(
            HTTPStatusError,
            head + (f" ({excerpt})" if excerpt else ""),
            hint,
            status=status,
            retryable=status == 429 or call.method not in _NOT_IDEMPOTENT,
            wait=wait,
        )

    def _parse_json(
        self, call: _Call, response: httpx.Response
    ) -> tuple[Any, httpx.Response] | _Failure:
        if _is_html(response):
            title = _html_title(response.content)
            page = f"an HTML page ({title!r})" if title else "an HTML page"
            return _Failure(
                ResponseError, f"{call.method} {call.shown} returned {page} instead of JSON"
            )
        try:
            return orjson.loads(response.content), response
        except orjson.JSONDecodeError as exc:
            detail = _scrub(str(exc))
            return _Failure(
                ResponseError,
                f"{call.method} {call.shown} returned malformed JSON ({detail})",
                cause=exc,
            )
