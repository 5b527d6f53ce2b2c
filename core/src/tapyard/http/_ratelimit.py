"""Client-side rate limiting: a token bucket that also learns from the server.

One :class:`RateLimiter` paces every worker that uses one credential (see
:func:`shared_limiter`). A token is granted only when every constraint below
allows it:

1. **The static bucket.** ``rate`` tokens per second, at most ``burst`` saved
   up. This is the ceiling: nothing a server says makes the limiter go faster
   than a configured rate.
2. **The learned pace.** Rate-limit headers (``X-RateLimit-*``, the IETF
   ``RateLimit-*`` fields or the combined ``RateLimit`` field, and
   ``RateLimit-Policy``) say how many requests remain (R) and in how many
   seconds the quota resets (T: delta-seconds, possibly fractional, or an
   epoch timestamp when the value is above 1e9). When R is small relative to
   what the bucket would allow over T, the remaining requests are spread
   evenly over the window: the next request should reach the server one slot,
   ``T / (R + 1)``, after the headers were written, and grants stay a slot
   apart. With R = 0 the slot is the reset itself: nothing until then. A
   policy of ``q`` requests per ``w`` seconds keeps grants ``w / q`` apart.
3. **Penalties.** After a 429 with ``Retry-After``, :meth:`RateLimiter.penalize`
   holds every worker back for that long.

How the pace is kept close to the quota without crossing it (a smooth quota
with no burst punishes a request that arrives a fraction of a millisecond
early, and forgets one that arrives late):

- *Server time.* Half the shortest round trip seen (a send to the learning of
  its response) is taken as one network leg: the headers were written about a
  leg before they arrived, and the next request takes a leg to get there.
- *Slack.* Every spacing carries a margin: 0.2% of it (at least 0.05 ms), plus a
  boost that each 429 raises by a millisecond and every response lets decay.
  A pace learned lower than the current one is approached gradually (by a
  step for each slot of the pace gone by), and a 429's own headers never set
  it: they say when the next token comes, not how far apart tokens come.
- *Anchored on the send.* Once sends are reported, a slot is timed from the
  send of the request whose response taught it rather than from the response:
  a server that counts a request as it reads it times its reset from that
  moment, so the way back and the server's work on the request (the jitter of
  both) drop out. The safety margin on such a slot is learned from 429s: each
  raises it, every admitted request lowers it a little, so that it settles
  where about one request in 250 arrives early. A server whose 429s come one
  after another however wide the margin grows times its resets otherwise, and
  its limiter goes back to anchoring on responses.
- *Sends, not grants.* A caller that reports with :meth:`RateLimiter.sent`
  when a request actually went out (the engine does, through httpcore's trace
  hook) gets the next grant spaced from that moment; time lost between a
  grant and its send (the GIL, a connection being opened) then delays the
  next request instead of squeezing it against this one.
- *Aim at the wire.* A grant is late by the sleep's overshoot, and its request
  reaches the wire later still (building it, the HTTP client's own work).
  Once sends are reported, the limiter measures that delay, from the moment
  it meant to grant to the send, and grants that much earlier: the smallest
  of the last 32 delays, never more than a quarter of the spacing, so a delay
  that is not typical never pulls requests ahead of the pace. On the real
  clock the wait itself ends within microseconds: the OS sleeps all but its
  last fraction of a millisecond, which is spent yielding in a loop.
- *A quiet start.* A limiter with no static rate lets one request out alone
  (for up to a second) until a response is learned, so a run does not open
  with a burst against a quota it knows nothing about.

Coarse resets, and no headers at all. A reset in whole seconds less than
``_COARSE_WINDOW`` away (``X-RateLimit-Reset: 1700000123`` or ``: 1``, the
IETF ``t=1``) cannot say that a token comes back every 10 ms: waiting for it
would make one request per second against a quota of a hundred. Such a
reset is read only as "``R`` requests may go now": the limiter spends them,
and when none remain it learns the spacing the server really keeps from what
the server accepts. It starts an eighth of the announced spacing apart and
narrows in from both sides: requests the server took, each sent ``s`` or
more after the last one it took, three in a row, make ``s`` a known-good
spacing (one or two could be a leftover fraction of a token); a 429 makes
its spacing a known-bad one; the next request goes out between the two (or,
before the first 429, a quarter of the good spacing apart), until they are
``_COARSE_CONVERGED`` apart; it then keeps the good one plus a margin. A 429
at the good spacing raises it (by more while they keep coming), and each
request taken at it lowers it a little: it settles where about one request
in 500 is refused, and follows a server that slows down or speeds up.

A refused request had its slot: the retry waits twice the spacing (doubled
again for each 429 in a row), and a bucket with a burst keeps a token unused
for each 429 so far, so that counting the 429s the server sees no more
requests than it allows. A whole-second ``Retry-After`` of up to
``_COARSE_RETRY_AFTER`` seconds from a server whose resets are coarse (or
that is known to take requests far closer together) is coarse too: only the
``_COARSE_STRIKES``-th 429 in a row makes the limiter wait all of it. Longer
values, and fractional ones, are always honoured. A server that sends no
rate-limit headers at all, or only ``Retry-After``, is learned the same way
from its 429s, its first ``Retry-After`` honoured.

Bounds. A wait longer than ``max_wait`` seconds (a reset a day away on a 200,
a long ``Retry-After``) is never slept: :meth:`RateLimiter.acquire` raises
:class:`RateLimitWaitTooLong` instead, which the HTTP engine turns into a
:class:`~tapyard.RetryAfterTooLongError` naming the cap. ``concurrency``
bounds the requests of one limiter in flight at once
(:meth:`RateLimiter.in_flight`), and ``learn=False`` makes the limiter ignore
rate-limit headers (429s still slow it down).

Clocks and sleeping are injectable so that tests run on virtual time.
"""

from __future__ import annotations

import collections
import contextlib
import decimal
import email.utils
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from tapyard.base import Connector

__all__ = [
    "RateLimitSettings",
    "RateLimitWaitTooLong",
    "RateLimiter",
    "parse_retry_after",
    "rate_limit_settings",
    "shared_limiter",
    "split_rate_limit",
]

#: reset values above these are epoch timestamps in seconds, or in milliseconds
_EPOCH_THRESHOLD = 1e9
_EPOCH_MS_THRESHOLD = 1e11
#: float noise tolerated when deciding whether a whole token is available
_EPSILON = 1e-9
#: the least slack kept on every learned spacing: a share of it, and a floor in seconds
_SLACK_SHARE = 0.002
_MIN_SLACK = 0.00005
#: the most slack a rounded epoch reset adds, as a share of the spacing
_MAX_ROUNDING = 0.05
#: how fast a learned spacing may shrink, per response
_PACE_DECAY = 0.98
#: seconds of slack each 429 adds, the most it may add up to, and its decay per response
_BOOST_STEP = 0.001
_BOOST_MAX = 0.010
_BOOST_DECAY = 0.999
#: how long the other workers wait for the first response, and how often they look
_PROBE_TIMEOUT = 1.0
_PROBE_POLL = 0.005
#: how long a grant waits for the one before it to be sent, and how often it looks
_HANDOFF_TIMEOUT = 0.25
_HANDOFF_POLL = 0.0005
#: grant-to-wire delays kept, how many before they count, and the largest
#: share of the spacing they may take off
_LAG_WINDOW = 32
_LAG_MIN_SAMPLES = 8
_LAG_MAX_SHARE = 0.25
#: the margin kept on a send-anchored slot: where it starts, how much a 429
#: raises it (doubling while 429s come less than _HEAD_CALM requests apart), the
#: share of requests it lets arrive early (it settles where that share of 429s
#: happens), and its most, as a share of the spacing
_HEAD_MARGIN = 0.00025
_HEAD_STEP = 0.00015
_HEAD_EARLY_SHARE = 0.004
_HEAD_MAX_SHARE = 0.5
_HEAD_CALM = 20
#: round trips whose excess over the shortest gives the usual one, and how many
#: before it counts (the first requests may meet a server not yet warm)
_EXCESS_WINDOW = 63
_EXCESS_MIN_SAMPLES = 8
#: 429s that close together make the limiter give up anchoring on sends
_HEAD_GIVE_UP = 5
_HEAD_DECREASE = _HEAD_STEP * _HEAD_EARLY_SHARE / (1.0 - _HEAD_EARLY_SHARE)
#: a whole-second reset closer than this is coarse: it cannot say whether the
#: next token comes in 10 ms or in a second (a fixed window's reset, further
#: away, says how long to spread the requests left over, and is kept)
_COARSE_WINDOW = 2.0
#: a known-good and a known-bad spacing this close (as a ratio) are converged
_COARSE_CONVERGED = 1.03
#: a known-good and a known-bad spacing this close: the spacing kept between them
#: is settled (within 5% of the server's), and a fleet may space every process by it
_COARSE_SETTLED = 1.1
#: the margin kept over the known-good spacing once converged
_COARSE_MARGIN = 0.01
#: how much a 429 at a good spacing raises it (doubling while such 429s come
#: less than _HEAD_CALM requests apart), and how much each request taken at
#: it lowers it: it settles where about one request in 500 is refused
_COARSE_STEP = 0.02
#: the share of requests a converged coarse spacing lets the server refuse: lower
#: than a send-anchored slot's, since the probes that find the spacing cost 429s too
_COARSE_EARLY_SHARE = 0.002
_COARSE_DECREASE = _COARSE_STEP * _COARSE_EARLY_SHARE / (1.0 - _COARSE_EARLY_SHARE)
#: how far below the announced spacing the first probe goes, and each probe
#: before the first 429
_COARSE_START = 32.0
_COARSE_DESCENT = 4.0
#: a whole-second Retry-After up to this many seconds is coarse (see above)
_COARSE_RETRY_AFTER = 2.0
#: 429s in a row after which a coarse Retry-After is honoured in full (each
#: one before it doubles the spacing of the retry)
_COARSE_STRIKES = 5
#: the shortest spacing a probe tries
_COARSE_FLOOR = 0.0005
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


@dataclass(frozen=True, slots=True)
class _Quota:
    """What one response said about the quota; ``None`` where it said nothing."""

    remaining: float | None = None
    reset: float | None = None  # seconds from now
    absolute: bool = False  # reset came as an epoch timestamp
    rounding: float = 0.0  # how early a rounded epoch reset may be
    throttled: bool = False  # the response carried Retry-After
    interval: float | None = None  # seconds per request, from a policy
    whole: bool = False  # reset in whole seconds: rounded by up to a second


class RateLimitWaitTooLong(Exception):
    """A wait for the rate limiter longer than its ``max_wait``: raised instead of sleeping.

    ``seconds`` is the wait, ``reason`` what asked for it (for the message).
    """

    def __init__(self, seconds: float, cap: float, reason: str) -> None:
        super().__init__(f"{reason} asks to wait {seconds:.0f}s, more than the {cap:g}s cap")
        self.seconds = seconds
        self.cap = cap
        self.reason = reason


class RateLimitSettings(BaseModel):
    """What a user may set about a credential's rate limit (config key ``rate_limit``,
    the policy hook, ``sync(rate_limit=...)``, ``tapyard sync --rate``).

    ``rate`` is a ceiling in requests per second (0: none), ``burst`` the requests that
    may go at once after a quiet spell, ``concurrency`` the most requests in
    flight at once, ``learn`` whether rate-limit headers are read at all, and
    ``max_wait`` the longest wait (a reset, a ``Retry-After``) slept rather
    than failing the stream (default: ``HttpPolicy.max_retry_after``).
    """

    model_config = ConfigDict(extra="forbid")

    rate: float | None = Field(None, ge=0, allow_inf_nan=False)
    burst: float | None = Field(None, ge=0, allow_inf_nan=False)
    concurrency: int | None = Field(None, ge=1)
    learn: bool = True
    max_wait: float | None = Field(None, ge=0, allow_inf_nan=False)


def rate_limit_settings(
    policy: Mapping[str, Any] | None, overrides: Mapping[str, Any] | None = None
) -> RateLimitSettings:
    """The settings of a run: the policy hook's answer, then the run's overrides on top.

    Raises :class:`~tapyard.ConfigError` when they are not valid (a plugin's
    policy naming an unknown setting, a negative rate).
    """
    from tapyard.base import validate_model

    merged = {**(policy or {}), **{k: v for k, v in (overrides or {}).items() if v is not None}}
    return validate_model(RateLimitSettings, merged, what="rate-limit settings")


def split_rate_limit(
    connector: Connector, raw: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``raw`` config without its ``rate_limit`` key, and that key's settings (validated).

    A connector whose config model declares a ``rate_limit`` field keeps the
    key: it is then the connector's own. Raises :class:`~tapyard.ConfigError`
    on settings that are not valid.
    """
    config_model = getattr(connector, "config_model", None)
    fields = getattr(config_model, "model_fields", {})
    if "rate_limit" not in raw or "rate_limit" in fields:
        return dict(raw), None
    rest = dict(raw)
    value = rest.pop("rate_limit")
    if value is None:
        return rest, None
    from tapyard.base import ConfigError, validate_model

    if not isinstance(value, Mapping):
        raise ConfigError(
            f"rate_limit in the config must be a mapping like {{\"rate\": 10}}, not {type(value).__name__}"
        )
    settings = validate_model(RateLimitSettings, value, what="rate_limit settings in the config")
    return rest, settings.model_dump(exclude_unset=True)


class RateLimiter:
    """A thread-safe token bucket that learns from rate-limit response headers.

    ``rate`` is tokens per second (``None`` or 0: no static limit), ``burst``
    the bucket's capacity (default 1, that is no burst). The module docstring
    describes how the static rate, learned headers and penalties combine.

    Promise: over any window of W seconds the limiter grants at most
    ``rate * W + burst`` tokens, whatever the headers say. ``concurrency``
    bounds the requests in flight (see :meth:`in_flight`), ``learn=False``
    ignores rate-limit headers, and no wait longer than ``max_wait`` seconds
    is ever slept (:meth:`acquire` raises :class:`RateLimitWaitTooLong`).
    """

    def __init__(
        self,
        rate: float | None = None,
        burst: float | None = None,
        *,
        concurrency: int | None = None,
        learn: bool = True,
        max_wait: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        #: the most requests in flight at once (``None``: unbounded), and
        #: whether rate-limit headers are read: see :meth:`configure`
        self.concurrency: int | None = None
        self.learning = learn
        self._slots: threading.BoundedSemaphore | None = None
        self._apply(rate, burst, concurrency, learn, max_wait)
        #: seconds callers spent waiting in acquire(), all threads together
        self.waited = 0.0
        # Why _not_before lies where it does (for the message of a wait too long).
        self._why = "the server's rate-limit headers"
        # Coarse resets (see the module docstring): spare tokens the server
        # reported, the send of the last request it took, the spacing kept
        # between requests when none are spare, and the largest known-bad and
        # smallest known-good spacings.
        self._coarse = False
        self._spare = 0
        self._last_ok_send = -math.inf
        self._gap = 0.0
        self._bad = 0.0
        self._good = math.inf
        self._strikes = 0
        self._empty = True
        self._noise_streak = 0
        self._since_noise = 0
        self._last_probes = (math.inf, math.inf)
        self._refusals = 0
        self._most_remaining = 0
        self._precise_429 = False
        self._clock = clock
        # On the real clock, sleep precisely: an OS sleep overshoots by a tenth
        # of a millisecond or more, a share of every paced request's slot.
        self._sleep = sleep or (_precise_sleep if clock is time.monotonic else time.sleep)
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._local = threading.local()
        self._tokens = self._burst
        self._stamp = clock()
        self._not_before = -math.inf
        self._last_grant = -math.inf
        self._pace = 0.0
        self._min_rtt = math.inf
        self._samples = 0
        self._boost = 0.0
        # when the pace and the boost were last lowered (see learn())
        self._faded = clock()
        # With no static rate, nothing is known about the quota until a first
        # response is learned; one request goes out alone to find out.
        self._probing = self._rate is None
        # Once callers report when requests actually go out (sent()), a grant
        # waits for the one before it to leave: see sent().
        self._handoff = False
        self._unsent: tuple[int, float] | None = None
        # How late requests reach the wire after the moment meant for their grant.
        self._lags: collections.deque[float] = collections.deque(maxlen=_LAG_WINDOW)
        self._lag = 0.0
        # The margin of send-anchored slots (see learn()), learned from 429s.
        self._margin = _HEAD_MARGIN
        self._early_streak = 0
        self._since_early = 0
        self._send_anchor = True
        self._excess: collections.deque[float] = collections.deque(maxlen=_EXCESS_WINDOW)
        # how far after its send each request's slot came, for epoch resets
        self._offsets: collections.deque[float] = collections.deque(maxlen=_EXCESS_WINDOW)

    @property
    def rate(self) -> float | None:
        """The static rate in requests per second, or ``None`` when unlimited."""
        return self._rate

    @property
    def burst(self) -> float:
        """The bucket's capacity."""
        return self._burst

    @property
    def spacing(self) -> float:
        """The least seconds between grants that what was learned asks for (0: none):
        what a shared budget spaces every process's grants by (``tapyard.http._limiters``)."""
        with self._lock:
            gap = self._gap if self._coarse and self._spare < 1 else 0.0
            return max(self._pace, gap)

    def sent_after(self, seconds: float) -> None:
        """The request granted to this thread went out ``seconds`` after the last
        request of anyone sharing its budget (a fleet: see ``tapyard.http._limiters``).

        A server whose resets are coarse is learned from the spacing between the
        requests it takes: in a fleet, that is this one, not the time since this
        process's own last request. Call it before :meth:`learn` of its response.
        """
        self._local.after = seconds

    @property
    def settled(self) -> bool:
        """Whether :attr:`spacing` is one the server said, or lies between a spacing the
        server was seen to keep and one it refused, ``_COARSE_SETTLED`` apart, rather
        than a probe still narrowing in on a coarse server's spacing from afar: a
        fleet spaces a process whose spacing is such a probe by the one a settled
        process took its last grant with (``tapyard.http._limiters``)."""
        with self._lock:
            if not (self._coarse and self._spare < 1):
                return True
            return self._bad > 0.0 and self._good <= self._bad * _COARSE_SETTLED

    @property
    def probing(self) -> bool:
        """Whether it waits for a first response to learn from (no static rate, none yet)."""
        return self._probing

    @property
    def reports_sends(self) -> bool:
        """Whether its callers report when requests go out (:meth:`sent` was called)."""
        return self._handoff

    def configure(self, settings: RateLimitSettings) -> None:
        """Apply new settings (a run with its own ``--rate``); what was learned is kept."""
        with self._lock:
            self._refill(self._clock())
            self._apply(
                settings.rate, settings.burst, settings.concurrency, settings.learn, settings.max_wait
            )
            self._tokens = min(self._tokens, self._burst)

    def _apply(
        self,
        rate: float | None,
        burst: float | None,
        concurrency: int | None,
        learn: bool,
        max_wait: float | None,
    ) -> None:
        _check_settings(rate, burst, concurrency, max_wait)
        self._rate = rate or None
        # Less than one token of capacity could never grant anything.
        self._burst = max(1.0, burst or 1.0)
        self.learning = learn
        self.max_wait = max_wait
        if concurrency != self.concurrency:
            self.concurrency = concurrency
            self._slots = threading.BoundedSemaphore(concurrency) if concurrency else None

    @contextlib.contextmanager
    def in_flight(self) -> Iterator[None]:
        """Hold one of the ``concurrency`` slots for the duration of a request."""
        slots = self._slots
        if slots is None:
            yield
            return
        slots.acquire()
        try:
            yield
        finally:
            slots.release()

    def acquire(self) -> float:
        """Block until a token is available, take it, and return the seconds waited.

        Raises :class:`RateLimitWaitTooLong` rather than wait longer than
        ``max_wait`` seconds.
        """
        waited = 0.0
        aim: float | None = None
        while True:
            with self._lock:
                now = self._clock()
                wait = self._wait_time(now)
                if self.max_wait is not None and wait > self.max_wait:
                    raise RateLimitWaitTooLong(wait, self.max_wait, self._why)
                if aim is None and wait > _EPSILON:
                    # The caller has to wait for the pace: remember the moment
                    # meant for its grant, to measure how late its send is.
                    aim = now + wait
                if wait <= _EPSILON:
                    if self._rate is not None:
                        self._tokens = max(0.0, self._tokens - 1.0)
                    self._last_grant = now
                    self._local.granted, self._local.measured, self._local.wired = now, False, False
                    self._local.after = None
                    self._local.aim = aim
                    # A request on a spare token says nothing of the spacing.
                    self._local.spare = self._coarse and self._spare > 0
                    if self._local.spare:
                        self._spare -= 1
                    if self._handoff:
                        self._unsent = (threading.get_ident(), now)
                    self.waited += waited
                    return waited
            self._sleep(wait)
            waited += wait

    def wait_time(self) -> float:
        """Seconds the next :meth:`acquire` would wait now (0 when it would not)."""
        with self._lock:
            return max(0.0, self._wait_time(self._clock()))

    def sent(self) -> None:
        """Report that the request granted to this thread has just gone out on the wire.

        Optional, but it makes pacing immune to delays between a grant and the
        send (another thread holding the GIL, a connection being opened):
        once a limiter has been told this, each grant waits until the request
        granted before it has gone out (up to a fraction of a second), and
        spaces itself from that moment instead of from the earlier grant, so a
        late request can never be followed too closely by the next one.
        Calling it again, or with nothing granted, does no harm.
        """
        with self._lock:
            now = self._clock()
            self._handoff = True
            if not getattr(self._local, "wired", True):
                # Time the round trip, and the window of an epoch reset, from the
                # wire (the first report of it: a caller may report again), not
                # from the grant: the first request of all (sent before the
                # handoff starts) may have waited long after its grant, for the
                # other processes of a fleet (a window that long made its pace
                # ten times too wide, and pace is only lowered gradually).
                self._local.granted, self._local.wired = now, True
            if self._unsent is None or self._unsent[0] != threading.get_ident():
                return
            self._unsent = None
            self._last_grant = max(self._last_grant, now)
            aim = getattr(self._local, "aim", None)
            if aim is not None and now >= aim:
                self._local.aim = None
                self._lags.append(now - aim)
                if len(self._lags) >= _LAG_MIN_SAMPLES:
                    self._lag = min(self._lags)

    def learn(self, headers: Mapping[str, str], status: int | None = None) -> None:
        """Adjust the pace from a response's rate-limit headers; ignore what it cannot parse.

        Call it on the thread that called :meth:`acquire` for that request: the
        limiter uses the grant time to estimate when the server answered.
        ``status``, when given, is the response's status code: a response that
        is not a 429 tells the limiter the server took the request (what it
        learns coarse resets from). A plugin passing vendor headers it mapped
        leaves it out.
        """
        quota = _parse_quota(headers, self._wall_clock()) if self.learning else None
        with self._lock:
            self._probing = False
            now = self._clock()
            sent, leg = self._timing(now)
            if status is None:
                # From a plugin mapping vendor headers: a 429 names a Retry-After.
                status = 429 if any(k.lower() == "retry-after" for k in headers) else 200
            if status != 429:
                self._taken(sent)
            self._precise_429 = (
                status == 429 and quota is not None and quota.reset is not None and not quota.whole
            )
            if quota is None:
                return
            pace = self._slacken(quota.interval) if quota.interval else 0.0
            if _is_coarse(quota):
                # Only a policy paces here: a pace learned from a reset that
                # looked precise (one second away) would take hundreds of
                # responses to decay.
                self._learn_coarse(quota)
                self._pace = pace
                return
            self._coarse = False
            if quota.remaining is not None and quota.reset is not None:
                # Work in server time: the headers were written about one leg
                # before they arrived (a slot anchored on the send may come
                # earlier: see below). An epoch reset is a fixed point,
                # and how far it lies from the moment they were written is
                # unknown (a slow server answers long after it counted the
                # request), so its window is taken from the send: longer,
                # never shorter.
                server_now = now - leg
                if quota.absolute:
                    deadline = now + quota.reset
                    window = max(0.0, deadline - (now if sent is None else sent))
                else:
                    deadline = server_now + quota.reset
                    window = max(0.0, quota.reset)
                remaining = max(0.0, math.floor(quota.remaining))
                self._refill(now)
                allowed = math.inf if self._rate is None else self._tokens + self._rate * window
                if remaining < allowed:
                    # The next request should reach the server one slot into the
                    # window; it takes a leg to get there.
                    spread = window / (remaining + 1.0)
                    slot = deadline - spread * remaining
                    slack = self._slacken(spread) - spread
                    slack += min(quota.rounding, _MAX_ROUNDING * spread)
                    not_before = slot - leg + slack
                    if sent is not None and self._handoff and self._send_anchor and quota.absolute:
                        # An epoch reset printed to the millisecond may be half
                        # a millisecond early, a twentieth of a 10 ms slot, and
                        # waiting out that doubt on every request costs as
                        # much. Where a slot comes about as long after each
                        # send (a server that counts a request as it reads
                        # it), the usual distance, whose rounding averages
                        # out, times the next one from this send; the margin
                        # learned from 429s covers the rest, as below. The
                        # slot read from the header stays the latest, and the
                        # earliest the header's rounding allows the earliest.
                        self._offsets.append(slot - sent)
                        if len(self._offsets) >= _EXCESS_MIN_SAMPLES:
                            usual = sorted(self._offsets)[len(self._offsets) // 2]
                            # never earlier than the earliest the header allows
                            earliest = not_before - 2.0 * min(quota.rounding, _MAX_ROUNDING * spread)
                            not_before = min(not_before, max(earliest, sent + usual - leg + self._margin))
                            # (the spacing between sends is not shortened by a
                            # leg: every send takes one to get there)
                            spread = min(spread, usual)
                            slack = min(slack, self._margin)
                    if sent is not None and self._handoff and self._send_anchor and not quota.absolute:
                        # Anchored on the send: a server that counts a request as it
                        # reads it, and times the reset from that moment, counted
                        # this one about as long after its send as the next will
                        # take to arrive after its own. The response's way back,
                        # and whatever the server did before answering, then drop
                        # out: the slot moves ahead by the round trip's excess over
                        # the shortest. How far the two ways there differ is
                        # covered by a margin learned from 429s. A round trip much
                        # longer than usual may have been held up on the way there
                        # (a stalled server reads the request late, and its reset
                        # starts late), so the slot moves ahead by no more than the
                        # usual excess. The slot anchored on the response stays the
                        # latest it can be.
                        excess = max(0.0, now - sent - 2.0 * leg)
                        self._excess.append(excess)
                        if len(self._excess) >= _EXCESS_MIN_SAMPLES:
                            usual = sorted(self._excess)[len(self._excess) // 2]
                            not_before = min(not_before, slot - min(excess, usual) - leg + self._margin)
                        # and the margin, not the 429 boost, spaces the grants
                        slack = min(slack, self._margin)
                    self._not_before = max(self._not_before, not_before)
                    if not quota.throttled:
                        # A 429's reset says when the next token comes (kept in
                        # not_before), not how far apart tokens come: the token
                        # before it went to someone else (another process of a
                        # fleet) a moment earlier. Taken as the pace, it spaced a
                        # process's grants half the server's spacing apart, 429
                        # after 429 until its request failed.
                        pace = max(pace, spread + slack)
            if not quota.throttled:
                self._since_early += 1
                if self._since_early >= _HEAD_CALM:
                    self._early_streak = 0
                # Lower the margin a little with every request the server took,
                # so that it settles where about one request in 250 comes early.
                self._margin = max(_MIN_SLACK, self._margin - _HEAD_DECREASE)
            # A 429 saying "a token in 0 s" must not undo the spacing that the
            # responses before it agreed on, and a lower pace is only approached
            # gradually, so one odd response cannot speed every worker up:
            # by a step per slot of the pace since the last response, which is
            # one step per response for a process that takes every slot, and
            # more for one that sees a response in eight (a process of a fleet
            # sharing a budget), whose old pace and 429 boost would otherwise
            # outlive what the fleet learned since by eight times as long.
            slots = min(1e4, max(1.0, (now - self._faded) / self._pace)) if self._pace > 0 else 1.0
            self._faded = now
            self._pace = max(pace, self._pace * (1.0 if quota.throttled else _PACE_DECAY**slots))
            self._boost *= _BOOST_DECAY**slots

    def throttled(self, retry_after: str | None) -> float | None:
        """Account for a 429 whose ``Retry-After`` header is ``retry_after``.

        Returns the seconds the caller should sleep before retrying (what
        :meth:`acquire` also holds every worker back): 0 when the limiter paces
        the retry itself, ``None`` when it leaves the wait to the caller's own
        backoff (no ``Retry-After`` and header learning off). A ``Retry-After``
        is honoured in full (as :meth:`penalize`) unless it is coarse: a whole
        second or two from a server whose resets are coarse too (or that is
        known to take requests far closer together), or beside a precise
        reset; see the module docstring.
        Call it on the thread whose request got the 429.
        """
        seconds, whole = parse_retry_after(retry_after)
        with self._lock:
            # A whole second or two is coarse when the server's resets are (or
            # it sends none), or it is known to take requests far closer
            # together, or the 429 also carried a precise reset (which learn()
            # has already waited for).
            coarse = seconds is None or (
                whole
                and seconds <= _COARSE_RETRY_AFTER
                and (self._coarse or self._good * 4.0 <= seconds or self._precise_429)
            )
        if not self.learning:
            if seconds is None:
                return None
            self.penalize(seconds)
            return seconds
        if not coarse:
            # A wait the server means: honour it in full, and learn the
            # spacing from then on all the same.
            assert seconds is not None
            with self._lock:
                self._strikes += 1
                if not self._precise_429:
                    self._refused()
            self.penalize(seconds)
            return seconds
        with self._lock:
            now = self._clock()
            self._penalty()
            self._strikes += 1
            if not self._precise_429:
                self._refused()
            if self._strikes >= _COARSE_STRIKES:
                # Refused again and again (beside a precise reset too: in a fleet
                # the token it named went to another process each time): the
                # server means its wait (or, naming none, gets an exponential
                # backoff).
                hold = seconds if seconds is not None else min(30.0, max(self._gap, 0.05) * 2.0**self._strikes)
                self._not_before = max(self._not_before, now + hold)
                self._why = "the server's 429 Retry-After" if seconds is not None else "backing off after 429s"
            return 0.0

    def penalize(self, seconds: float) -> None:
        """Grant no token to any worker for ``seconds`` (after a 429 with Retry-After).

        Each penalty also widens the safety margin a little (it shrinks again
        as responses are learned): a 429 means the pacing ran too close.
        """
        with self._lock:
            self._penalty()
            if seconds > 0:
                if self._not_before < self._clock() + seconds:
                    self._why = "the server's Retry-After"
                self._not_before = max(self._not_before, self._clock() + seconds)

    def _refused(self) -> None:
        """This thread's request got a 429: a spacing known to be too short (the lock held)."""
        sent: float | None = getattr(self._local, "granted", None)
        gap = None if sent is None else sent - self._last_ok_send
        gap = getattr(self._local, "after", None) or gap
        self._last_probes = (math.inf, math.inf)
        self._refusals += 1
        if gap is not None and gap > 0 and not getattr(self._local, "spare", False):
            if gap < self._good:
                self._bad = max(self._bad, gap)
            else:
                # Refused at a spacing known to be good: jitter on the way (the
                # request before arrived late, this one early), a good spacing
                # that was luck (a fraction of a token left over), or a server
                # that slowed down. Raise it, faster while this keeps happening;
                # requests taken at it lower it again, slowly.
                step = _COARSE_STEP * 2.0 ** min(self._noise_streak, 5)
                self._noise_streak += 1
                self._since_noise = 0
                self._good *= 1.0 + step
        self._coarse = True
        self._spare = 0
        self._empty = True
        self._next_gap()

    def _taken(self, sent: float | None) -> None:
        """The server took this thread's request, sent at ``sent``: learn the spacing."""
        self._strikes = 0
        if sent is None:
            return
        gap = getattr(self._local, "after", None) or sent - self._last_ok_send
        if self._coarse and self._empty and gap > 0 and not getattr(self._local, "spare", False):
            # Sent this long after the last request taken, with no token to
            # spare then, three times in a row: a spacing the server keeps.
            # (Once or twice could be a fraction of a token left over from
            # before: k in a row at s means s > (1 - 1/k) of the true spacing.)
            good = max(gap, *self._last_probes)
            self._last_probes = (gap, self._last_probes[0])
            if good < self._good:
                self._good = good
            elif self._bad > 0.0:
                self._good = max(self._bad, self._good * (1.0 - _COARSE_DECREASE))
            self._since_noise += 1
            if self._since_noise >= _HEAD_CALM:
                self._noise_streak = 0
            self._next_gap()
            if self._bad <= 0.0:
                # Before the first 429 every request taken halves the next
                # probe's spacing (the known-good one still needs three in a
                # row): a run should not spend its first second finding out.
                self._gap = max(_COARSE_FLOOR, min(self._gap, gap / 2.0))
        else:
            self._last_probes = (math.inf, math.inf)
        self._last_ok_send = max(self._last_ok_send, sent)

    def _learn_coarse(self, quota: _Quota) -> None:
        """Take what a whole-second reset can say: how many requests may go now."""
        remaining = 0 if quota.remaining is None else max(0, math.floor(quota.remaining))
        if not self._coarse and self._gap <= 0.0:
            spacing = max(0.0, quota.reset or 0.0) / (remaining + 1.0)
            self._gap = max(_COARSE_FLOOR, spacing / _COARSE_START)
            if self._rate is not None:
                self._gap = min(self._gap, 1.0 / self._rate)
        self._coarse = True
        # Leave a token unused for each 429 so far (up to all the burst): a
        # bucket never drained below that many admits that many fewer in any
        # window, so counting the refused requests the server sees no more
        # than it allows.
        self._most_remaining = max(self._most_remaining, remaining)
        spare = max(0, remaining - min(self._refusals, self._most_remaining))
        self._spare = int(min(spare, 1e6))
        # Only a request sent into an empty bucket says what spacing it keeps.
        self._empty = remaining < 1

    def _next_gap(self) -> None:
        """The spacing for the next request sent with no token to spare."""
        good, bad = self._good, self._bad
        if good == math.inf:
            if bad > 0.0:
                self._gap = bad * _COARSE_DESCENT
        elif bad <= 0.0:
            self._gap = good / _COARSE_DESCENT
        elif good > bad * _COARSE_CONVERGED:
            self._gap = math.sqrt(good * bad)
        else:
            self._gap = good * (1.0 + _COARSE_MARGIN)
        self._gap = max(_COARSE_FLOOR, self._gap)

    def _penalty(self) -> None:
        """What every 429 does to the margins (the lock held)."""
        self._boost = min(_BOOST_MAX, self._boost + _BOOST_STEP)
        # A send-anchored slot came early: widen its margin, by twice as much
        # for each 429 that follows another within _HEAD_CALM requests (a
        # server that times its reset from when it answers needs the margin
        # to cover all its work on a request).
        step = _HEAD_STEP * 2.0 ** min(self._early_streak, 12)
        self._early_streak += 1
        if self._early_streak >= _HEAD_GIVE_UP:
            # 429 after 429 however wide the margin: this server's resets
            # are not timed from when it counts a request. Anchor on responses.
            self._send_anchor = False
        self._since_early = 0
        self._margin = min(max(_MIN_SLACK, _HEAD_MAX_SHARE * self._pace), self._margin + step)

    def _slacken(self, spacing: float) -> float:
        """``spacing`` plus the safety margin: a share of it, at least a floor, and the boost."""
        return spacing + max(_MIN_SLACK, _SLACK_SHARE * spacing) + self._boost

    def _refill(self, now: float) -> None:
        if self._rate is not None and now > self._stamp:
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = max(self._stamp, now)

    def _wait_time(self, now: float) -> float:
        self._refill(now)
        # The learned pace aims at the wire: grant early by the usual delay to it.
        early = min(self._lag, _LAG_MAX_SHARE * self._pace)
        wait = max(self._not_before, self._last_grant + self._pace) - early - now
        if self._probing and self._last_grant > -math.inf:
            if now >= self._last_grant + _PROBE_TIMEOUT:
                self._probing = False
            else:
                wait = max(wait, min(_PROBE_POLL, self._last_grant + _PROBE_TIMEOUT - now))
        if self._unsent is not None and now < self._unsent[1] + _HANDOFF_TIMEOUT:
            wait = max(wait, min(_HANDOFF_POLL, self._unsent[1] + _HANDOFF_TIMEOUT - now))
        if self._coarse and self._spare < 1:
            # No token to spare: keep the learned spacing from the last request
            # the server took, aimed at the wire like the pace.
            # After a 429 the retry waits twice the spacing (four times after
            # two, ...): the refused request had the slot, so that over any
            # window the server sees no more requests than it allows.
            gap = self._gap * 2.0 ** min(self._strikes, 16)
            ahead = min(self._lag, _LAG_MAX_SHARE * gap)
            wait = max(wait, self._last_ok_send + gap - ahead - now)
        if self._rate is not None and self._tokens < 1.0 - _EPSILON:
            wait = max(wait, (1.0 - self._tokens) / self._rate)
        return wait

    def _timing(self, now: float) -> tuple[float | None, float]:
        """When this thread's request was sent (or granted), and how long one network leg takes.

        A leg is half the shortest round trip seen from a send to the learning
        of its response, on one thread. The first one is not trusted (it
        carries the connection set-up), and a thread with no grant has nothing
        to measure: the leg is then 0, as if the headers were written the
        moment they arrived. A grant is measured once but stays the thread's
        until its next acquire, so that a plugin learning vendor headers from
        the same response is timed alike.
        """
        granted: float | None = getattr(self._local, "granted", None)
        if granted is None or granted > now:
            return None, 0.0
        if not getattr(self._local, "measured", False):
            self._local.measured = True
            self._min_rtt = min(self._min_rtt, now - granted)
            self._samples += 1
        return granted, (self._min_rtt / 2.0 if self._samples >= 2 else 0.0)


#: how long before the end of a wait a precise sleep stops sleeping and yields instead
_SPIN = 0.0004


def _precise_sleep(seconds: float) -> None:
    """Sleep ``seconds`` on ``time.monotonic``, ending within a few microseconds.

    The OS sleeps the bulk of it; the last fraction of a millisecond is spent
    yielding the CPU (and the GIL) in a loop: ``time.sleep(0)``.
    """
    end = time.monotonic() + seconds
    if seconds > _SPIN:
        time.sleep(seconds - _SPIN)
    while time.monotonic() < end:
        time.sleep(0)


def _number(value: str | None) -> float | None:
    """The first number in a header value (``"100"``, ``"100, 100;w=1"``, ``"1.5"``)."""
    if value is None:
        return None
    match = _NUMBER.search(value)
    if match is None:
        return None
    number = float(match.group())
    return number if math.isfinite(number) else None


def _rounding(value: str | None) -> float:
    """Half the last decimal place of a fractional timestamp ("1700000000.125" -> 0.0005).

    An epoch reset printed to milliseconds may be up to that much early. Whole
    numbers, and decimals that are all zeros, count as exact.
    """
    match = _NUMBER.search(value or "")
    if match is None:
        return 0.0
    number = decimal.Decimal(match.group())
    exponent = number.as_tuple().exponent
    if not isinstance(exponent, int) or exponent >= 0 or number == number.to_integral_value():
        return 0.0
    return 0.5 * 10.0**exponent


def _params(value: str) -> list[dict[str, str]]:
    """Structured-field-ish items: ``'"a";q=100;w=60, 10;w=1'`` -> one dict per item.

    A bare leading number is stored under ``q`` (``"100;w=1"`` means 100 per 1 s).
    """
    items = []
    for item in value.split(","):
        fields: dict[str, str] = {}
        for i, part in enumerate(item.split(";")):
            key, sep, val = part.strip().partition("=")
            if sep:
                fields[key.strip().lower()] = val.strip().strip('"')
            elif i == 0 and _NUMBER.fullmatch(key):
                fields["q"] = key
        items.append(fields)
    return items


def _policy_interval(values: list[str]) -> float | None:
    """Seconds per request under the strictest ``q``-per-``w`` policy among ``values``."""
    intervals = []
    for value in values:
        for fields in _params(value):
            quota, window = _number(fields.get("q")), _number(fields.get("w"))
            if quota and window and quota > 0 and window > 0:
                intervals.append(window / quota)
    return max(intervals) if intervals else None


def _parse_quota(headers: Mapping[str, str], wall_now: float) -> _Quota | None:
    """Read every rate-limit header family; IETF fields win over ``X-RateLimit-*``."""
    lower = {key.lower(): value for key, value in headers.items()}
    combined: dict[str, str] = {}
    if "ratelimit" in lower:
        # draft-ietf-httpapi-ratelimit-headers: "limit=100, remaining=5, reset=3"
        # or '"default";r=5;t=3'.
        for fields in _params(lower["ratelimit"]):
            combined.update(fields)
    remaining = _number(
        lower.get("ratelimit-remaining")
        or combined.get("remaining")
        or combined.get("r")
        or lower.get("x-ratelimit-remaining")
    )
    reset_text = (
        lower.get("ratelimit-reset")
        or combined.get("reset")
        or combined.get("t")
        or lower.get("x-ratelimit-reset")
    )
    reset, rounding = _number(reset_text), 0.0
    absolute = reset is not None and reset > _EPOCH_THRESHOLD
    # Whole seconds (not milliseconds): the value may be rounded by up to one.
    whole = reset is not None and reset < _EPOCH_MS_THRESHOLD and _is_whole(reset_text)
    if reset is not None and absolute:
        scale = 1000.0 if reset > _EPOCH_MS_THRESHOLD else 1.0
        reset = reset / scale - wall_now
        rounding = _rounding(reset_text) / scale
    policies = [lower[key] for key in ("ratelimit-policy", "ratelimit-limit") if key in lower]
    interval = _policy_interval(policies)
    if remaining is None and reset is None and interval is None:
        return None
    throttled = "retry-after" in lower
    return _Quota(remaining, reset, absolute, rounding, throttled, interval, whole)


def _is_coarse(quota: _Quota) -> bool:
    """Whether a reset is too coarse to pace by: in whole seconds, and less than
    ``_COARSE_WINDOW`` away."""
    return quota.whole and quota.reset is not None and quota.reset < _COARSE_WINDOW


def _is_whole(value: str | None) -> bool:
    """Whether the first number in ``value`` is written without a fractional part."""
    match = _NUMBER.search(value or "")
    return match is not None and not any(c in match.group() for c in ".eE")


def parse_retry_after(value: str | None) -> tuple[float | None, bool]:
    """``Retry-After`` as ``(seconds, whole)``: seconds (whole or fractional) or an HTTP date.

    ``whole`` says the value was given to the second (an integer or a date).
    Negative waits count as 0; what cannot be parsed is ``(None, False)``.
    """
    text = (value or "").strip()
    if not text:
        return None, False
    try:
        seconds = float(text)
        whole = _is_whole(text)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(text).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None, False
        whole = True
    if not math.isfinite(seconds):
        return None, False
    return max(0.0, seconds), whole


def _check_settings(
    rate: float | None, burst: float | None, concurrency: int | None, max_wait: float | None
) -> None:
    if rate is not None and (rate < 0 or not math.isfinite(rate)):
        raise ValueError(f"rate must be a positive number of requests per second, not {rate!r}")
    if burst is not None and (burst < 0 or not math.isfinite(burst)):
        raise ValueError(f"burst must be a positive number of requests, not {burst!r}")
    if concurrency is not None and concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency!r}")
    if max_wait is not None and (max_wait < 0 or math.isnan(max_wait)):
        raise ValueError(f"max_wait must be a number of seconds, not {max_wait!r}")


_SHARED: dict[str, RateLimiter] = {}
_SHARED_LOCK = threading.Lock()


def shared_limiter(
    key: str,
    rate: float | None,
    burst: float | None,
    *,
    concurrency: int | None = None,
    learn: bool = True,
    max_wait: float | None = None,
) -> RateLimiter:
    """The process-wide limiter for ``key`` (connector name + credential id), made on first use.

    Every worker thread asking for the same key gets the same object, so they
    share one bucket, one learned pace and one penalty. Each call applies its
    settings (the latest run's ``rate``, ``burst``, ``concurrency``, ``learn``
    and ``max_wait`` win); what the limiter learned from the server is kept.
    """
    with _SHARED_LOCK:
        limiter = _SHARED.get(key)
        if limiter is None:
            limiter = _SHARED[key] = RateLimiter(
                rate, burst, concurrency=concurrency, learn=learn, max_wait=max_wait
            )
        else:
            limiter.configure(
                RateLimitSettings(
                    rate=rate, burst=burst, concurrency=concurrency, learn=learn, max_wait=max_wait
                )
            )
        return limiter
