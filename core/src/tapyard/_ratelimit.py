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
  A pace learned lower than the current one is approached gradually, and a
  429's own headers never lower it.
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

Clocks and sleeping are injectable so that tests run on virtual time.
"""

from __future__ import annotations

import collections
import decimal
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["RateLimiter", "shared_limiter"]

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


class RateLimiter:
    """A thread-safe token bucket that learns from rate-limit response headers.

    ``rate`` is tokens per second (``None`` or 0: no static limit), ``burst``
    the bucket's capacity (default 1, that is no burst). The module docstring
    describes how the static rate, learned headers and penalties combine.

    Promise: over any window of W seconds the limiter grants at most
    ``rate * W + burst`` tokens, whatever the headers say.
    """

    def __init__(
        self,
        rate: float | None = None,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if rate is not None and (rate < 0 or not math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number of requests per second, not {rate!r}")
        if burst is not None and (burst < 0 or not math.isfinite(burst)):
            raise ValueError(f"burst must be a positive number of requests, not {burst!r}")
        self._rate = rate or None
        # Less than one token of capacity could never grant anything.
        self._burst = max(1.0, burst or 1.0)
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

    @property
    def rate(self) -> float | None:
        """The static rate in requests per second, or ``None`` when unlimited."""
        return self._rate

    @property
    def burst(self) -> float:
        """The bucket's capacity."""
        return self._burst

    def acquire(self) -> float:
        """Block until a token is available, take it, and return the seconds waited."""
        waited = 0.0
        aim: float | None = None
        while True:
            with self._lock:
                now = self._clock()
                wait = self._wait_time(now)
                if aim is None and wait > _EPSILON:
                    # The caller has to wait for the pace: remember the moment
                    # meant for its grant, to measure how late its send is.
                    aim = now + wait
                if wait <= _EPSILON:
                    if self._rate is not None:
                        self._tokens = max(0.0, self._tokens - 1.0)
                    self._last_grant = now
                    self._local.granted, self._local.measured = now, False
                    self._local.aim = aim
                    if self._handoff:
                        self._unsent = (threading.get_ident(), now)
                    return waited
            self._sleep(wait)
            waited += wait

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
            if self._unsent is None or self._unsent[0] != threading.get_ident():
                return
            self._unsent = None
            self._last_grant = max(self._last_grant, now)
            if not getattr(self._local, "measured", True):
                self._local.granted = now  # time the round trip from the wire
            aim = getattr(self._local, "aim", None)
            if aim is not None and now >= aim:
                self._local.aim = None
                self._lags.append(now - aim)
                if len(self._lags) >= _LAG_MIN_SAMPLES:
                    self._lag = min(self._lags)

    def learn(self, headers: Mapping[str, str]) -> None:
        """Adjust the pace from a response's rate-limit headers; ignore what it cannot parse.

        Call it on the thread that called :meth:`acquire` for that request: the
        limiter uses the grant time to estimate when the server answered.
        """
        quota = _parse_quota(headers, self._wall_clock())
        with self._lock:
            self._probing = False
            now = self._clock()
            sent, leg = self._timing(now)
            if quota is None:
                return
            pace = self._slacken(quota.interval) if quota.interval else 0.0
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
            # gradually, so one odd response cannot speed every worker up.
            self._pace = max(pace, self._pace * (1.0 if quota.throttled else _PACE_DECAY))
            self._boost *= _BOOST_DECAY

    def penalize(self, seconds: float) -> None:
        """Grant no token to any worker for ``seconds`` (after a 429 with Retry-After).

        Each penalty also widens the safety margin a little (it shrinks again
        as responses are learned): a 429 means the pacing ran too close.
        """
        with self._lock:
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
            if seconds > 0:
                self._not_before = max(self._not_before, self._clock() + seconds)

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
    if reset is not None and absolute:
        scale = 1000.0 if reset > _EPOCH_MS_THRESHOLD else 1.0
        reset = reset / scale - wall_now
        rounding = _rounding(reset_text) / scale
    policies = [lower[key] for key in ("ratelimit-policy", "ratelimit-limit") if key in lower]
    interval = _policy_interval(policies)
    if remaining is None and reset is None and interval is None:
        return None
    throttled = "retry-after" in lower
    return _Quota(remaining, reset, absolute, rounding, throttled, interval)


_SHARED: dict[str, RateLimiter] = {}
_SHARED_LOCK = threading.Lock()


def shared_limiter(key: str, rate: float | None, burst: float | None) -> RateLimiter:
    """The process-wide limiter for ``key`` (connector name + credential id), made on first use.

    Every worker thread asking for the same key gets the same object, so they
    share one bucket, one learned pace and one penalty. The first call's
    ``rate`` and ``burst`` configure it; later calls get that limiter as it is.
    """
    with _SHARED_LOCK:
        limiter = _SHARED.get(key)
        if limiter is None:
            limiter = _SHARED[key] = RateLimiter(rate, burst)
        return limiter
