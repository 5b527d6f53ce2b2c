"""The SDK-call path: connectors built on a vendor SDK (boto3, azure, google-cloud,
stripe, simple-salesforce) send each HTTP exchange through the same rate
limiter, circuit breaker, retry policy, deadlines and counters as the REST path.

A connector hands every exchange its SDK makes to :meth:`SdkEngine.exchange`
(or, for an SDK that runs its own attempt loop, such as botocore, to
:meth:`SdkEngine.begin` before each attempt and :meth:`SdkEngine.finish` after
it) with a *reader*: a function that turns what the SDK got back (its response
object, or the exception it raised) into an :class:`SdkReply`: the status,
the headers, and the vendor's own throttling signal (an error code such as
``SlowDown``, ``ServerBusy`` or ``REQUEST_LIMIT_EXCEEDED``). That is the hook
where a connector reads rate-limit signals from its SDK: the reply goes to the
limiter (headers learned, a throttle treated as a 429), to the
``tapyard_rate_limit_learn`` hook (as its ``response``: an :class:`SdkReply`
has ``status_code`` and case-insensitive ``headers`` like an ``httpx.Response``),
and to the run's ``on_response``.

What the engine does per exchange, as :class:`~tapyard.HttpEngine` does per request:

- asks the circuit breaker before each attempt (a run whose vendor keeps
  failing stops with :class:`~tapyard.CircuitOpenError`);
- holds a ``concurrency`` slot and waits for the limiter before each attempt
  (a wait over ``max_wait`` fails with :class:`~tapyard.RetryAfterTooLongError`);
- retries throttles, the policy's ``retry_statuses`` and connection failures
  with exponential backoff and full jitter, up to ``max_attempts``; a 429's
  ``Retry-After`` is honoured through the limiter (which holds back every
  worker of the credential) and one over ``max_retry_after`` fails at once;
- counts requests, retries, 429s, 5xx, connection failures, bytes and time
  waited in :class:`~tapyard.http.HttpStats`, which the run summary shows;
- stops retrying once ``request_deadline`` has passed since the first attempt
  (each attempt itself is bounded by the SDK's connect and read timeouts,
  which a connector sets from the same policy).

When retries run out the last reply is handed back to the SDK (or its
exception raised again), so that the SDK raises its own typed error and the
connector maps it to a one-line tapyard error. The connector switches the
SDK's own retries off: the engine's are the ones that count.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import BaseModel

from tapyard.base import (
    Connector,
    DeadlineExceededError,
    RetryAfterTooLongError,
    RunContext,
    Source,
)
from tapyard.http._circuit import CircuitBreaker

if TYPE_CHECKING:
    from tapyard.base.manifest import HostGuard
from tapyard.http._engine import HttpPolicy, HttpStats, redact_url
from tapyard.http._limiters import Limiter
from tapyard.http._ratelimit import RateLimitWaitTooLong, parse_retry_after

__all__ = ["SdkAttempt", "SdkEngine", "SdkReply", "SdkSource", "sdk_engine"]

R = TypeVar("R")


@dataclass(frozen=True)
class SdkReply:
    """What one HTTP exchange of a vendor SDK came back with, as a connector's reader saw it.

    ``status`` is 0 when no response came (``error`` then says why: a
    connection refused, a timeout). ``throttled`` is the vendor's own "slow
    down" beside a 429 (an error code in the body, a 503 ``ServerBusy``);
    ``code`` that error code, if any. ``headers`` are case-insensitive.
    ``size`` is the bytes received, when known. ``retry`` is the vendor's own
    word on retrying (Stripe's ``Stripe-Should-Retry``): ``None`` leaves it to
    the policy.
    """

    status: int = 0
    headers: httpx.Headers = field(default_factory=httpx.Headers)
    throttled: bool = False
    code: str | None = None
    error: BaseException | None = None
    size: int = 0
    retry: bool | None = None

    @classmethod
    def of(
        cls,
        status: int,
        headers: Mapping[str, Any] | None = None,
        *,
        throttled: bool = False,
        code: str | None = None,
        error: BaseException | None = None,
        size: int | None = None,
        retry: bool | None = None,
    ) -> SdkReply:
        """A reply from any mapping of headers (values turned to text)."""
        plain = httpx.Headers({str(k): str(v) for k, v in (headers or {}).items()})
        if size is None:
            length = plain.get("content-length", "")
            size = int(length) if length.isdigit() else 0
        return cls(int(status or 0), plain, throttled or status == 429, code, error, size, retry)

    @classmethod
    def failed(cls, error: BaseException) -> SdkReply:
        """No response: the exchange failed on the way (``error``)."""
        return cls(error=error)

    @property
    def status_code(self) -> int:
        """The status, named as ``httpx.Response`` names it (for rate-limit hooks)."""
        return self.status

    @property
    def retry_after(self) -> str | None:
        value: str | None = self.headers.get("retry-after")
        return value


@dataclass(slots=True)
class SdkAttempt:
    """One attempt under way (from :meth:`SdkEngine.begin`)."""

    method: str
    url: str  # redacted
    number: int
    started: float


class SdkEngine:
    """The SDK-call path of one connector run. Thread-safe; see the module docstring.

    ``limiter`` comes from the run's limiter store (:func:`sdk_engine` builds
    it); ``learn`` is called with every reply (the ``tapyard_rate_limit_learn``
    hook and the run's ``on_response``). ``sleep``, ``clock`` and ``rng`` are
    injectable for tests.
    """

    def __init__(
        self,
        *,
        policy: HttpPolicy | None = None,
        limiter: Limiter | None = None,
        learn: Callable[[SdkReply], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        hosts: HostGuard | None = None,
    ) -> None:
        self.policy = policy = policy or HttpPolicy()
        self.stats = HttpStats()
        self.breaker = CircuitBreaker(policy.circuit_threshold, policy.circuit_cooldown, clock=clock)
        #: the hosts the connector's manifest allows (RunContext.hosts): checked before each attempt
        self.hosts = hosts
        self.limiter = limiter
        if limiter is not None and limiter.max_wait is None:
            limiter.max_wait = policy.max_retry_after
        self._learn = learn
        self._sleep, self._clock, self._rng = sleep, clock, rng or random.Random()

    # -- a whole exchange ---------------------------------------------------------

    def exchange(
        self,
        send: Callable[[], R],
        read: Callable[[R | None, BaseException | None], SdkReply],
        *,
        method: str,
        url: str,
    ) -> R:
        """``send()`` (one HTTP exchange through the SDK's transport), retried as the policy says.

        ``read(result, error)`` makes the :class:`SdkReply` of an attempt from
        what ``send`` returned or raised. Returns the last attempt's result, or
        raises its exception, for the SDK to turn into its own error.
        """
        number, first = 0, None
        while True:
            number += 1
            attempt = self.begin(method, url, number=number)
            first = attempt.started if first is None else first
            result: R | None = None
            error: BaseException | None = None
            try:
                with self._slot():
                    self.pace(attempt)
                    try:
                        result = send()
                    finally:
                        if self.limiter is not None:
                            self.limiter.sent()
            except Exception as exc:  # the SDK's transport failed: read() says how
                error = exc
            delay = self.finish(attempt, read(result, error), first=first)
            if delay is None:
                if error is not None:
                    raise error
                return result  # type: ignore[return-value]
            self._sleep(delay)

    # -- the steps, for SDKs that run their own attempt loop ------------------------

    def begin(self, method: str, url: str, *, number: int = 1) -> SdkAttempt:
        """Before an attempt: check the host against the manifest (PermissionDeniedError), ask the
        circuit breaker (raises when it is open), count the request."""
        if self.hosts is not None:
            self.hosts.check(url)  # before anything leaves the machine
        shown = redact_url(url)
        self.breaker.before_call(method=method, url=shown)
        self.stats.add("requests")
        if number > 1:
            self.stats.add("retries")
        return SdkAttempt(method.upper(), shown, number, self._clock())

    def pace(self, attempt: SdkAttempt) -> None:
        """Wait for the limiter (call between :meth:`begin` and the send)."""
        if self.limiter is None:
            return
        try:
            wait = self.limiter.wait_time()
            cap = self.limiter.max_wait
            if cap is not None and wait > cap:
                raise RateLimitWaitTooLong(wait, cap, "the server's rate-limit headers")
            self.stats.add("wait_ms", round(1000 * self.limiter.acquire()))
        except RateLimitWaitTooLong as exc:
            raise RetryAfterTooLongError(
                f"{attempt.method} {attempt.url} not sent: {exc.reason} asked for a wait of "
                f"{exc.seconds:.0f}s before the next request, more than the {exc.cap:g}s cap; run again "
                "later, or raise HttpPolicy.max_retry_after (or rate_limit max_wait) to wait that long",
                method=attempt.method,
                url=attempt.url,
                attempts=attempt.number,
            ) from None

    def finish(self, attempt: SdkAttempt, reply: SdkReply, *, first: float | None = None) -> float | None:
        """After an attempt: learn from ``reply``, count it, and say what comes next.

        Returns the seconds to wait before trying again, or ``None`` when the
        attempt is the last (it succeeded, failed for good, or the retries
        are spent). Raises :class:`~tapyard.RetryAfterTooLongError` for a
        ``Retry-After`` over the cap and :class:`~tapyard.DeadlineExceededError`
        when the exchange has outlived ``request_deadline``.
        """
        self.stats.add("bytes", reply.size)
        if self.limiter is not None and reply.status:
            self.limiter.learn(reply.headers, status=429 if reply.throttled else reply.status)
        if self._learn is not None and reply.status:
            self._learn(reply)
        policy = self.policy
        lost = reply.status == 0 and reply.error is not None
        if reply.throttled:
            self.stats.add("throttled")
        elif reply.status >= 500:
            self.stats.add("server_errors")
        elif lost:
            self.stats.add("transport_errors")
        if reply.throttled or reply.status >= 500 or lost:
            said = f"failed: {type(reply.error).__name__}" if lost else f"answered {reply.status}"
            said += f" {reply.code}" if reply.code else ""
            self.breaker.record_failure(f"{attempt.method} {attempt.url} {said}")
        else:
            self.breaker.record_success()
        # A throttle (and a 503) may name its wait: honoured through the limiter,
        # or refused at once when it is over the cap, on the last attempt too.
        wait = self._retry_after(attempt, reply) if reply.throttled or reply.status == 503 else None
        retryable = reply.throttled or lost or reply.status in policy.retry_statuses
        if reply.retry is not None:
            retryable = reply.retry  # the vendor's own word
        if not retryable or attempt.number >= policy.max_attempts:
            return None
        started = attempt.started if first is None else first
        if self._clock() - started >= policy.request_deadline:
            raise DeadlineExceededError(
                f"{attempt.method} {attempt.url} did not complete within the {policy.request_deadline:g}s "
                "request deadline (HttpPolicy.request_deadline); the server is too slow or stalled",
                method=attempt.method,
                url=attempt.url,
                attempts=attempt.number,
            )
        pause = wait if wait is not None else self._backoff(attempt.number)
        if reply.throttled and reply.retry_after is None:
            # An SDK's throttle seldom says how long (SlowDown, ServerBusy): back
            # off as for a failure, beside what the limiter holds everyone to.
            pause = max(pause, self._backoff(attempt.number))
        self.stats.add("wait_ms", round(1000 * pause))
        return pause

    def _retry_after(self, attempt: SdkAttempt, reply: SdkReply) -> float | None:
        header = reply.retry_after
        seconds = parse_retry_after(header)[0]
        cap = self.policy.max_retry_after
        if seconds is not None and seconds > cap:
            raise RetryAfterTooLongError(
                f"{attempt.method} {attempt.url} answered {reply.status} and asked to wait {seconds:.0f}s "
                f"before retrying, more than the {cap:g}s cap; raise HttpPolicy.max_retry_after to wait that long",
                method=attempt.method,
                url=attempt.url,
                attempts=attempt.number,
            )
        if reply.throttled and self.limiter is not None:
            # The limiter holds every worker of the credential back (or paces
            # the retry itself): it says what is left for this caller to sleep.
            return self.limiter.throttled(header)
        return seconds

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform between 0 and ``backoff_base * 2**(attempt - 1)``, capped."""
        cap = min(self.policy.backoff_max, self.policy.backoff_base * 2.0 ** min(attempt - 1, 60))
        return self._rng.uniform(0.0, cap)

    def _slot(self) -> Any:
        if self.limiter is None:
            return contextlib.nullcontext()
        return self.limiter.in_flight()


def sdk_engine(
    connector: Any,
    config: Any,
    context: Any,
    *,
    fallback: str,
    rate_field: str | None = None,
    policy: Mapping[str, Any] | None = None,
) -> SdkEngine:
    """The :class:`SdkEngine` of one run of ``connector``, its limiter from the run's store.

    The rate-limit settings, lowest first: the ``rate_field`` of the config
    left at its default, the ``tapyard_rate_limit_policy`` hook's answer, the
    ``rate_field`` set in the user's config (a ``requests_per_second``), and
    the run's overrides (``--rate``, a ``rate_limit`` config key,
    ``sync(rate_limit=...)``). ``policy`` holds the connector's
    :class:`~tapyard.HttpPolicy` fields, under the run's own (``context.http``).
    Every run of one named credential shares one limiter, in any process that
    shares the store; ``fallback`` (an endpoint) keys a credential with no name.
    Raises :class:`~tapyard.ConfigError` on settings that are not valid.
    """
    from tapyard.base import ConfigError
    from tapyard.http._limiters import limiter_key
    from tapyard.http._ratelimit import rate_limit_settings
    from tapyard.http._stores import limiters_of

    pm = context.pm
    hooked = pm.hook.tapyard_rate_limit_policy(connector=connector, config=config)
    rate = getattr(config, rate_field, None) if rate_field else None
    explicit = rate_field in getattr(config, "model_fields_set", ())
    below = {"rate": rate} if rate is not None and not explicit else {}
    above = {"rate": rate} if rate is not None and explicit else {}
    merged = {**below, **(hooked or {}), **above}
    limits = rate_limit_settings(merged, context.rate_limit)
    key, scope = limiter_key(connector.name, getattr(context.credentials, "name", None), fallback)
    limiter = limiters_of(context).limiter(key, limits, scope=scope)
    try:
        http_policy = HttpPolicy(**{**(policy or {}), **context.http})
    except ValueError as exc:
        raise ConfigError(f"invalid HTTP settings: {exc}") from exc

    def learn(reply: SdkReply) -> None:
        pm.hook.tapyard_rate_limit_learn(connector=connector, response=reply, limiter=limiter)
        if context.on_response is not None:
            context.on_response(connector, reply)

    return SdkEngine(policy=http_policy, limiter=limiter, learn=learn, hosts=getattr(context, "hosts", None))


class SdkSource(Source):
    """Base of a run of a connector built on a vendor SDK: it holds the run's
    :class:`SdkEngine` (``self.engine``, built by :func:`sdk_engine` from the
    keyword arguments: ``fallback``, ``rate_field``, ``policy``) and reports its
    counters as the run's HTTP figures.

    A subclass builds its SDK client so that every HTTP exchange goes through
    ``self.engine.exchange`` (with a reader of its SDK's replies), and
    releases the client in :meth:`close`.
    """

    def __init__(
        self,
        connector: Connector,
        config: BaseModel,
        context: RunContext,
        **engine: Any,
    ) -> None:
        self.connector = connector
        self.config = config
        self.context = context
        self.pm = context.pm
        self.engine = sdk_engine(connector, config, context, **engine)

    @property
    def http_stats(self) -> Mapping[str, int]:
        return self.engine.stats.as_dict()

    def close(self) -> None:
        """Release the SDK's clients (called when the run ends)."""
