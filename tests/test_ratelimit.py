"""The rate limiter, on virtual time: pacing, learning from headers, penalties, sharing."""

from __future__ import annotations

import contextlib
import email.utils
import heapq
import itertools
import math
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tapyard.http._ratelimit import RateLimiter, shared_limiter
from tests.scripted_server import Received, Reply, ScriptedServer

EPOCH = 1_700_000_000.0


class FakeTime:
    """One thread's virtual time: ``sleep`` moves the clock forward."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return EPOCH + self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class VirtualTime:
    """Virtual time for several threads: it moves only when every participant sleeps.

    Each participant calls :meth:`sleep` (which blocks until virtual time
    reaches its wake-up) and :meth:`leave` when it is done. Between sleeps a
    thread runs at a single instant, so what it reads from :meth:`clock` right
    after a call returns is the time that call happened.
    """

    def __init__(self, participants: int) -> None:
        self._now = 0.0
        self._cond = threading.Condition()
        self._active = participants
        self._heap: list[tuple[float, int]] = []
        self._woken: set[int] = set()
        self._seq = itertools.count()

    def clock(self) -> float:
        return self._now

    def wall(self) -> float:
        return EPOCH + self._now

    def sleep(self, seconds: float) -> None:
        with self._cond:
            entry = (self._now + max(0.0, seconds), next(self._seq))
            heapq.heappush(self._heap, entry)
            self._active -= 1
            self._advance()
            while entry[1] not in self._woken:
                self._cond.wait()
            self._woken.discard(entry[1])

    def leave(self) -> None:
        with self._cond:
            self._active -= 1
            self._advance()

    def _advance(self) -> None:
        if self._active == 0 and self._heap:
            self._now = max(self._now, self._heap[0][0])
            while self._heap and self._heap[0][0] <= self._now:
                self._woken.add(heapq.heappop(self._heap)[1])
                self._active += 1
            self._cond.notify_all()


def run_workers(vt: VirtualTime, workers: int, body: Callable[[int], None]) -> None:
    def run(index: int) -> None:
        try:
            body(index)
        finally:
            vt.leave()

    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(run, i) for i in range(workers)]:
            future.result(timeout=60)


def max_in_window(times: list[float], window: float) -> int:
    """The most events in any closed interval of length ``window``."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] < t - window - 1e-9:
            start += 1
        best = max(best, end - start + 1)
    return best


def just_after(expected: float | list[float]) -> Any:
    """What a learned wait should come to: the server's time plus the small safety margin.

    The margin is 1% of the spacing (at least 0.2 ms): allow up to 2% and 1 ms.
    """
    if isinstance(expected, list):
        return [just_after(value) for value in expected]
    return pytest.approx(expected * 1.01 + 0.0005, abs=expected * 0.01 + 0.0005)


def random_headers(rng: random.Random, now: float) -> dict[str, str]:
    """Whatever a server might say, sensible or not."""
    choice = rng.randrange(6)
    remaining = str(rng.choice([0, 1, 5, 1000]))
    if choice == 0:
        return {"X-RateLimit-Remaining": remaining, "X-RateLimit-Reset": f"{rng.uniform(0, 3):.3f}"}
    if choice == 1:
        return {
            "X-RateLimit-Remaining": remaining,
            "X-RateLimit-Reset": f"{EPOCH + now + rng.uniform(-1, 3):.3f}",
        }
    if choice == 2:
        return {
            "RateLimit-Limit": "1000",
            "RateLimit-Remaining": remaining,
            "RateLimit-Reset": "0.5",
            "RateLimit-Policy": "1000;w=1",
        }
    if choice == 3:
        return {"RateLimit": f"limit=100, remaining={remaining}, reset=1"}
    if choice == 4:
        return {"X-RateLimit-Remaining": "garbage", "RateLimit-Reset": "-5"}
    return {}


# The promise: never more than rate * W + burst in any window of W seconds


@pytest.mark.parametrize(("rate", "burst"), [(5.0, 3.0), (2.0, 1.0), (10.0, 20.0)])
def test_no_window_exceeds_rate_times_window_plus_burst_across_threads(
    rate: float, burst: float
) -> None:
    workers, duration = 8, 40.0
    vt = VirtualTime(workers)
    limiter = RateLimiter(rate, burst, clock=vt.clock, sleep=vt.sleep, wall_clock=vt.wall)
    grants: list[float] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        rng = random.Random(index)
        while vt.clock() < duration:
            limiter.acquire()
            with lock:
                grants.append(vt.clock())
            vt.sleep(rng.uniform(0.0, 0.05))  # the request's round trip
            limiter.learn(random_headers(rng, vt.clock()))
            if rng.random() < 0.02:
                limiter.penalize(rng.uniform(0.0, 0.5))

    run_workers(vt, workers, worker)
    assert max_in_window(grants, 10.0) <= rate * 10 + burst
    assert max_in_window(grants, 1.0) <= rate * 1 + burst


def test_no_window_exceeds_the_bound_in_a_simulated_sequence() -> None:
    time = FakeTime()
    limiter = RateLimiter(4.0, 2.0, clock=time.clock, sleep=time.sleep, wall_clock=time.wall)
    rng = random.Random(1)
    grants = []
    while time.now < 100.0:
        limiter.acquire()
        grants.append(time.now)
        time.now += rng.choice([0.0, 0.0, 0.01, 0.3, 2.0])
        limiter.learn(random_headers(rng, time.now))
    assert max_in_window(grants, 10.0) <= 4 * 10 + 2


def test_a_busy_bucket_reaches_its_bound() -> None:
    """The bound is tight: without headers the limiter does use its whole rate."""
    time = FakeTime()
    limiter = RateLimiter(5.0, 3.0, clock=time.clock, sleep=time.sleep)
    grants = []
    while time.now <= 10.0:
        limiter.acquire()
        grants.append(time.now)
    assert max_in_window(grants, 10.0) == 5 * 10 + 3


# Static pacing


def test_static_rate_spaces_grants_evenly() -> None:
    time = FakeTime()
    limiter = RateLimiter(2.0, clock=time.clock, sleep=time.sleep)
    grants = []
    for _ in range(5):
        limiter.acquire()
        grants.append(time.now)
    assert grants == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])


def test_burst_then_rate() -> None:
    time = FakeTime()
    limiter = RateLimiter(1.0, 3.0, clock=time.clock, sleep=time.sleep)
    grants = []
    for _ in range(5):
        limiter.acquire()
        grants.append(time.now)
    assert grants == pytest.approx([0.0, 0.0, 0.0, 1.0, 2.0])


@pytest.mark.parametrize("rate", [None, 0])
def test_unlimited_does_not_wait(rate: float | None) -> None:
    time = FakeTime()
    limiter = RateLimiter(rate, clock=time.clock, sleep=time.sleep)
    for _ in range(100):
        assert limiter.acquire() == 0.0
        limiter.learn({})
    assert time.sleeps == []
    assert limiter.rate is None


def test_an_unlimited_limiter_sends_one_request_alone_until_it_learns() -> None:
    vt = VirtualTime(3)
    limiter = RateLimiter(None, clock=vt.clock, sleep=vt.sleep)
    grants: dict[int, float] = {}

    def worker(index: int) -> None:
        vt.sleep(index * 0.001)  # a fixed order of arrival
        limiter.acquire()
        grants[index] = vt.clock()
        vt.sleep(0.2)
        limiter.learn({})

    run_workers(vt, 3, worker)
    assert grants[0] == 0.0
    assert grants[1] == pytest.approx(0.2, abs=0.01)
    assert grants[2] == pytest.approx(0.2, abs=0.01)


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(-1)
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(1, float("nan"))


# Learning from headers


def learned(headers: dict[str, str], rate: float | None = None, after: float = 0.0) -> FakeTime:
    """A limiter that granted at 0, learned ``headers`` ``after`` seconds later, then acquired."""
    time = FakeTime()
    limiter = RateLimiter(rate, clock=time.clock, sleep=time.sleep, wall_clock=time.wall)
    limiter.acquire()
    time.now += after
    limiter.learn(headers)
    time.sleeps.clear()
    limiter.acquire()
    return time


@pytest.mark.parametrize(
    "headers",
    [
        {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2"},
        {"RateLimit-Limit": "60", "RateLimit-Remaining": "0", "RateLimit-Reset": "2"},
        {"ratelimit-remaining": "0", "ratelimit-reset": "2.0"},
        {"RateLimit": "limit=60, remaining=0, reset=2"},
        {"RateLimit": '"default";r=0;t=2', "RateLimit-Policy": '"default";q=60;w=60'},
    ],
)
def test_remaining_zero_waits_for_the_reset(headers: dict[str, str]) -> None:
    time = learned(headers, after=0.01)
    assert time.now == just_after(2.01)


def test_fractional_delta_reset() -> None:
    time = learned({"RateLimit-Remaining": "0", "RateLimit-Reset": "0.25"}, after=0.01)
    assert time.now == just_after(0.26)


@pytest.mark.parametrize(
    ("reset", "expected"),
    [
        (f"{EPOCH + 3:.0f}", 3.0),  # epoch seconds
        (f"{EPOCH + 1.5:.3f}", 1.5),  # fractional epoch
        (f"{(EPOCH + 4) * 1000:.0f}", 4.0),  # epoch milliseconds
        (f"{EPOCH - 10:.0f}", 0.0),  # already past
    ],
)
def test_epoch_reset(reset: str, expected: float) -> None:
    time = learned({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset})
    assert time.now == just_after(expected)


def test_remaining_requests_are_spread_over_the_window() -> None:
    time = FakeTime()
    limiter = RateLimiter(None, clock=time.clock, sleep=time.sleep)
    limiter.acquire()
    limiter.learn({"X-RateLimit-Remaining": "4", "X-RateLimit-Reset": "10"})
    grants = []
    for _ in range(3):
        limiter.acquire()
        grants.append(time.now)
    assert grants == just_after([2.0, 4.0, 6.0])


def test_policy_sets_the_pace() -> None:
    time = FakeTime()
    limiter = RateLimiter(None, clock=time.clock, sleep=time.sleep)
    limiter.acquire()
    limiter.learn(
        {"RateLimit-Policy": "4;w=1", "RateLimit-Remaining": "50", "RateLimit-Reset": "1"}
    )
    grants = []
    for _ in range(4):
        limiter.acquire()
        grants.append(time.now)
    assert grants == just_after([0.25, 0.5, 0.75, 1.0])


def test_plenty_remaining_leaves_a_static_rate_alone() -> None:
    time = FakeTime()
    limiter = RateLimiter(10.0, 5.0, clock=time.clock, sleep=time.sleep)
    limiter.acquire()
    # The bucket could send at most 4 + 10 * 60 = 604 in the window: 1000 is plenty.
    limiter.learn({"X-RateLimit-Remaining": "1000", "X-RateLimit-Reset": "60"})
    for _ in range(4):
        limiter.acquire()
    assert time.sleeps == []


def test_less_remaining_than_the_bucket_allows_slows_a_static_rate() -> None:
    time = FakeTime()
    limiter = RateLimiter(10.0, 5.0, clock=time.clock, sleep=time.sleep)
    limiter.acquire()
    limiter.learn({"X-RateLimit-Remaining": "299", "X-RateLimit-Reset": "60"})
    limiter.acquire()
    limiter.acquire()
    assert time.now == just_after(2 * 60 / 300)


def test_headers_never_raise_a_static_rate() -> None:
    time = FakeTime()
    limiter = RateLimiter(1.0, clock=time.clock, sleep=time.sleep)
    grants = []
    for _ in range(4):
        limiter.acquire()
        grants.append(time.now)
        limiter.learn(
            {"RateLimit-Policy": "1000;w=1", "RateLimit-Remaining": "999", "RateLimit-Reset": "1"}
        )
    assert grants == pytest.approx([0.0, 1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-RateLimit-Remaining": "lots"},
        {"X-RateLimit-Reset": "soon"},
        {"RateLimit-Policy": "garbage;w=x"},
        {"RateLimit-Remaining": "inf", "RateLimit-Reset": "nan"},
    ],
)
def test_unparseable_headers_are_ignored(headers: dict[str, str]) -> None:
    time = learned(headers)
    assert time.now == 0.0


# Penalties and sharing


def test_penalize_holds_back_every_worker() -> None:
    time = FakeTime()
    limiter = RateLimiter(100.0, 10.0, clock=time.clock, sleep=time.sleep)
    limiter.penalize(5.0)
    assert limiter.acquire() == pytest.approx(5.0)
    assert time.now == pytest.approx(5.0)
    assert limiter.acquire() == 0.0  # the penalty is over; the bucket is full


def test_penalize_across_threads() -> None:
    vt = VirtualTime(4)
    limiter = RateLimiter(None, clock=vt.clock, sleep=vt.sleep)
    grants: list[float] = []

    def worker(index: int) -> None:
        if index == 0:
            limiter.penalize(3.0)
        else:
            vt.sleep(0.5)
        limiter.acquire()
        grants.append(vt.clock())
        limiter.learn({})

    run_workers(vt, 4, worker)
    assert min(grants) == pytest.approx(3.0)


def test_shared_limiter_is_one_object_per_key_and_takes_the_latest_settings() -> None:
    first = shared_limiter("test-connector:cred-1", 5.0, 2.0)
    assert first.rate == 5.0 and first.burst == 2.0
    # A later run of the same credential (say with --rate) gets the same bucket,
    # with its own settings: a rate given for a run is never silently ignored.
    assert shared_limiter("test-connector:cred-1", 99.0, None, concurrency=2, learn=False) is first
    assert (first.rate, first.burst, first.concurrency, first.learning) == (99.0, 1.0, 2, False)
    assert shared_limiter("test-connector:cred-2", 5.0, 2.0) is not first


def test_shared_limiter_is_thread_safe() -> None:
    barrier = threading.Barrier(16)

    def get(_: int) -> RateLimiter:
        barrier.wait()
        return shared_limiter("test-connector:race", 1.0, 1.0)

    with ThreadPoolExecutor(16) as pool:
        limiters = list(pool.map(get, range(16)))
    assert len({id(limiter) for limiter in limiters}) == 1


# The goal: a smooth quota nearly fully used, almost without 429s


class SmoothServer:
    """A server allowing ``rate`` requests per second with no burst (a GCRA, capacity 1)."""

    def __init__(self, rate: float, epoch: bool) -> None:
        self.rate = rate
        self.epoch = epoch
        self.tokens = 1.0
        self.stamp = 0.0
        self.ok = 0
        self.throttled = 0
        self.lock = threading.Lock()

    def handle(self, now: float) -> tuple[bool, dict[str, str]]:
        with self.lock:
            self.tokens = min(1.0, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            ok = self.tokens >= 1.0
            if ok:
                self.tokens -= 1.0
                self.ok += 1
            else:
                self.throttled += 1
            reset = (1.0 - self.tokens) / self.rate
        if self.epoch:
            headers = {
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{EPOCH + now + reset:.3f}",
            }
        else:
            headers = {
                "RateLimit-Limit": str(int(self.rate)),
                "RateLimit-Remaining": str(math.floor(self.tokens)),
                "RateLimit-Reset": repr(reset),
            }
        if not ok:
            headers["Retry-After"] = f"{reset:.3f}"
        return ok, headers


@pytest.mark.parametrize(
    ("workers", "latency", "epoch"),
    [
        (1, 0.0, False),
        (4, 0.0, False),
        (1, 0.0, True),
        (4, 0.0, True),
        # The server decides at once but answers 50 ms later: only workers
        # with several requests in flight can use the quota.
        (8, 0.05, False),
        (8, 0.05, True),
    ],
)
def test_learned_pacing_uses_a_smooth_quota_without_429s(
    workers: int, latency: float, epoch: bool
) -> None:
    rate, duration, leg = 20.0, 20.0, 0.0005
    vt = VirtualTime(workers)
    server = SmoothServer(rate, epoch)
    limiter = RateLimiter(None, clock=vt.clock, sleep=vt.sleep, wall_clock=vt.wall)

    def worker(index: int) -> None:
        rng = random.Random(index)
        while vt.clock() < duration:
            limiter.acquire()
            vt.sleep(leg + rng.expovariate(1 / 0.0002))
            ok, headers = server.handle(vt.clock())
            vt.sleep(latency + leg + rng.expovariate(1 / 0.0002))
            limiter.learn(headers)
            if not ok:
                limiter.penalize(float(headers["Retry-After"]))

    run_workers(vt, workers, worker)
    used = server.ok / (rate * duration)
    throttled = server.throttled / (server.ok + server.throttled)
    assert used >= 0.95, used
    assert throttled <= 0.01, throttled


# Reporting sends


def test_a_grant_waits_for_the_one_before_it_to_go_out() -> None:
    """A request held up after its grant (the GIL, a new connection) pushes the next one back."""
    vt = VirtualTime(2)
    limiter = RateLimiter(None, clock=vt.clock, sleep=vt.sleep)
    limiter.acquire()
    limiter.sent()  # this caller reports its sends
    limiter.learn({"RateLimit-Policy": "10;w=1"})  # 0.1 s apart
    grants: dict[int, float] = {}

    def worker(index: int) -> None:
        if index == 1:
            vt.sleep(0.12)  # after the first grant (0.1), before its send (0.15)
        limiter.acquire()
        grants[index] = vt.clock()
        if index == 0:
            vt.sleep(0.05)  # held up before the send
            limiter.sent()

    run_workers(vt, 2, worker)
    assert grants[0] == just_after(0.1)
    assert grants[1] == just_after(grants[0] + 0.05 + 0.1)


def test_an_unreported_send_holds_the_others_only_briefly() -> None:
    vt = VirtualTime(2)
    limiter = RateLimiter(None, clock=vt.clock, sleep=vt.sleep)
    limiter.acquire()
    limiter.sent()
    limiter.learn({})
    grants: dict[int, float] = {}

    def worker(index: int) -> None:
        vt.sleep(index * 0.001)
        limiter.acquire()  # thread 0 never reports its send
        grants[index] = vt.clock()

    run_workers(vt, 2, worker)
    assert grants[0] == 0.0
    assert grants[1] == pytest.approx(0.25, abs=0.002)


def test_grants_move_ahead_by_the_usual_delay_before_the_wire() -> None:
    """A caller whose requests leave 3 ms after their grant (building them, the HTTP
    client's work) gets, once the delay is known, grants 3 ms earlier: its sends,
    not its grants, end up a slot apart."""
    vt = VirtualTime(1)
    limiter = RateLimiter(None, clock=vt.clock, sleep=vt.sleep)
    sends: list[float] = []

    def worker(_: int) -> None:
        for _ in range(40):
            limiter.acquire()
            vt.sleep(0.003)
            sends.append(vt.clock())
            limiter.sent()
            limiter.learn({"RateLimit-Policy": "10;w=1"})  # 0.1 s apart

    run_workers(vt, 1, worker)
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    assert gaps[2] == pytest.approx(0.1 + 0.003, abs=0.001)  # before the delay is known
    assert gaps[-1] == pytest.approx(0.1, abs=0.0005)  # after: the sends are a slot apart
    assert min(gaps[1:]) >= 0.1  # never closer than the pace


def test_the_head_start_is_the_smallest_delay_and_at_most_a_quarter_of_the_spacing() -> None:
    vt = VirtualTime(1)
    limiter = RateLimiter(None, clock=vt.clock, sleep=vt.sleep)
    sends: list[float] = []
    rng = random.Random(7)

    def worker(_: int) -> None:
        for _ in range(60):
            limiter.acquire()
            # a delay of 40-60 ms: more than a quarter of the 0.1 s spacing
            vt.sleep(0.04 + 0.02 * rng.random())
            sends.append(vt.clock())
            limiter.sent()
            limiter.learn({"RateLimit-Policy": "10;w=1"})

    run_workers(vt, 1, worker)
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    # capped at 25 ms early, the sends still land a slot plus the rest of the delay apart
    assert min(gaps[20:]) >= 0.1 + 0.04 - 0.025 - 1e-6


# Anchoring slots on the send


class WorkingServer(SmoothServer):
    """A smooth quota whose server counts a request as it reads it, then works on
    it for a while (``work`` seconds, with jitter) before it answers. With
    ``reset_at_answer`` it times ``RateLimit-Reset`` from when it answers instead
    (a server whose rate-limit headers are computed late)."""

    def __init__(self, rate: float, work: float, reset_at_answer: bool = False) -> None:
        super().__init__(rate, epoch=False)
        self.work = work
        self.reset_at_answer = reset_at_answer


def paced_run(server: WorkingServer, report_sends: bool, duration: float = 20.0) -> tuple[float, int]:
    vt = VirtualTime(1)
    limiter = RateLimiter(None, clock=vt.clock, sleep=vt.sleep, wall_clock=vt.wall)
    rng = random.Random(7)

    def worker(_: int) -> None:
        while vt.clock() < duration:
            limiter.acquire()
            if report_sends:
                limiter.sent()
            vt.sleep(0.0003 + rng.expovariate(1 / 0.00005))  # the way there
            ok, headers = server.handle(vt.clock())
            work = server.work * (0.5 + rng.random())
            vt.sleep(work)
            if server.reset_at_answer:
                headers["RateLimit-Reset"] = repr(max(0.0, float(headers["RateLimit-Reset"]) - work))
            vt.sleep(0.0003 + rng.expovariate(1 / 0.0005))  # the way back: slower, and jittery
            limiter.learn(headers)
            if not ok:
                limiter.penalize(float(headers["Retry-After"]))

    run_workers(vt, 1, worker)
    return server.ok / (server.rate * duration), server.throttled


def test_slots_anchored_on_the_send_leave_out_the_servers_work_and_the_way_back() -> None:
    """One worker, a server that spends about 2 ms on each request after counting
    it: anchored on the response, each request would be late by that work and by
    the jitter of the way back; anchored on the send, only the way there counts."""
    used, throttled = paced_run(WorkingServer(50.0, 0.002), report_sends=True)
    assert used >= 0.97, used
    assert throttled <= 0.01 * 1000, throttled
    response_anchored, none = paced_run(WorkingServer(50.0, 0.002), report_sends=False)
    assert none == 0
    assert used >= response_anchored + 0.03, (used, response_anchored)


def test_a_server_timing_its_reset_from_its_answer_makes_the_limiter_give_the_send_up() -> None:
    """Anchored on the send, such a server's resets look early by all its work
    (10-30 ms here): the 429s come one after another, however the margin widens,
    and after a few the limiter anchors on responses again, doing no worse than
    a limiter that was never told about sends."""
    used, throttled = paced_run(WorkingServer(20.0, 0.02, reset_at_answer=True), report_sends=True)
    before, before_throttled = paced_run(WorkingServer(20.0, 0.02, reset_at_answer=True), report_sends=False)
    assert throttled <= before_throttled + 5, (throttled, before_throttled)
    assert used >= before - 0.01, (used, before)


def test_the_margin_settles_and_429s_only_widen_it() -> None:
    vt = FakeTime()
    limiter = RateLimiter(None, clock=vt.clock, sleep=vt.sleep)
    limiter.acquire()
    limiter.sent()
    limiter.learn({"RateLimit-Policy": "100;w=1"})
    start = limiter._margin
    limiter.penalize(0.001)
    limiter.penalize(0.001)  # soon after the first: twice the step
    assert limiter._margin == pytest.approx(start + 0.00015 + 0.0003)
    for _ in range(10_000):
        limiter.learn({"RateLimit-Policy": "100;w=1"})
    assert limiter._margin == pytest.approx(0.00005)  # back to the floor, never below
    limiter.penalize(0.001)  # long after the last: one step again
    assert limiter._margin == pytest.approx(0.00005 + 0.00015)
    for _ in range(100):
        limiter.penalize(1.0)
    assert limiter._margin == pytest.approx(limiter._pace / 2)  # at most half the spacing


# Every convention, against a real local server


class BucketServer:
    """A token bucket behind a real HTTP server, announcing itself in one ``convention``.

    ``/items?cursor=N`` serves record N and the cursor of the next, up to
    ``pages``. Every request is timed as it arrives, 429s included: what the
    server observes is what the limit is about.
    """

    def __init__(self, convention: str, rate: float, burst: float, pages: int) -> None:
        self.convention, self.rate, self.burst, self.pages = convention, rate, burst, pages
        self.tokens, self.stamp = burst, time.monotonic()
        self.arrivals: list[float] = []
        self.throttled = 0
        self.lock = threading.Lock()

    def __call__(self, request: Received) -> Reply:
        with self.lock:
            now = time.monotonic()
            self.arrivals.append(now)
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            admitted = self.tokens >= 1.0
            if admitted:
                self.tokens -= 1.0
            else:
                self.throttled += 1
            remaining, wait = math.floor(self.tokens), max(0.0, (1.0 - self.tokens) / self.rate)
        headers = self.headers(remaining, wait, admitted)
        if not admitted:
            return Reply.json({"error": "slow down"}, status=429, headers=headers)
        n = int(request.query.get("cursor", ["0"])[0]) + 1
        after = str(n) if n < self.pages else None
        return Reply.json({"data": [{"id": n}], "next": after}, headers=headers)

    def headers(self, remaining: int, wait: float, admitted: bool) -> dict[str, str]:
        whole = str(max(1, math.ceil(wait)))
        conv = self.convention
        out: dict[str, str] = {}
        if conv in ("fractional", "epoch", "epoch-frac", "delta"):
            out["X-RateLimit-Limit"] = str(int(self.rate))
            out["X-RateLimit-Remaining"] = str(remaining)
            at = time.time() + wait
            out["X-RateLimit-Reset"] = {
                "fractional": f"{wait:.3f}",
                "epoch": str(math.ceil(at)),
                "epoch-frac": f"{at:.3f}",
                "delta": str(math.ceil(wait)),
            }[conv]
        elif conv == "ietf":
            out["RateLimit-Policy"] = f'"default";q={int(self.rate)};w=1'
            out["RateLimit"] = f'"default";r={remaining};t={math.ceil(wait)}'
        if not admitted and conv != "none":
            out["Retry-After"] = f"{max(wait, 0.001):.3f}" if conv == "fractional" else whole
        if not admitted and conv == "retry-after-date":
            out["Retry-After"] = email.utils.formatdate(time.time() + 1, usegmt=True)
        return out


#: (convention, rate, burst): whole-second resets, dates and no headers among them
CONVENTIONS = [
    ("fractional", 20.0, 1.0),
    ("epoch", 20.0, 1.0),
    ("epoch-frac", 20.0, 1.0),
    ("delta", 20.0, 1.0),
    ("ietf", 20.0, 1.0),
    ("retry-after", 20.0, 1.0),
    ("retry-after-date", 20.0, 1.0),
    ("none", 20.0, 1.0),
    ("epoch", 20.0, 5.0),
]


def test_every_convention_keeps_every_10_second_window_within_the_limit(tmp_path: Path) -> None:
    """One sync per convention, all at once (about 12 s in all): over every 10-second
    window the server sees no more requests, 429s included, than its limit allows,
    and each sync still finishes with every record, far faster than one request
    per announced whole-second reset. (What share of the limit each reaches is
    for the benchmark to say: this machine is shared, and ten syncs run here
    in one process.)"""
    import tapyard
    from tests.test_bounds import connector

    pages = 250  # 12.5 s at 20 requests/s: windows of 10 s slide over 2.5 s
    servers = [BucketServer(conv, rate, burst, pages) for conv, rate, burst in CONVENTIONS]
    results: dict[int, Any] = {}

    def run(index: int, server: BucketServer, url: str) -> None:
        started = time.monotonic()
        result = tapyard.sync(connector(url), {}, to=f"sqlite:///{tmp_path / f'{index}.db'}", concurrency=1)
        results[index] = (result, time.monotonic() - started)

    with contextlib.ExitStack() as stack:
        urls = []
        for server in servers:
            scripted = stack.enter_context(ScriptedServer())
            scripted.always("/items", server)
            urls.append(scripted.url)
        threads = [threading.Thread(target=run, args=(i, s, u)) for i, (s, u) in enumerate(zip(servers, urls, strict=True))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    failures = []
    for index, (server, (conv, rate, burst)) in enumerate(zip(servers, CONVENTIONS, strict=True)):
        result, seconds = results[index]
        label = f"{conv} {rate:g}/s burst {burst:g}"
        if not result.ok or result.records != pages:
            failures.append(f"{label}: {[s.error for s in result.streams]}")
            continue
        most = max_in_window(server.arrivals, 10.0)
        if most > rate * 10.0 + burst:
            failures.append(f"{label}: {most} requests in a 10 s window, {server.throttled} 429s")
        share = (pages / seconds) / rate
        print(f"{label}: {share:.0%} of the limit in {seconds:.1f}s, {server.throttled} 429s, {most} in 10 s")
        if share < 0.15:  # a floor against sleeping out whole-second resets (1/s here)
            failures.append(f"{label}: only {share:.0%} of the limit ({server.throttled} 429s)")
    assert not failures, failures


def _coarse_server_run(limiter: RateLimiter, ft: FakeTime, requests: int) -> list[tuple[bool, float]]:
    """``requests`` requests of one limiter to a server of 100/s (burst 1) that tells
    its reset in whole epoch seconds; each response learned 0.5 ms after its send.
    Returns (settled, spacing) after each."""
    tokens, stamp, seen = 1.0, 0.0, []
    for _ in range(requests):
        limiter.acquire()
        limiter.sent()
        now = ft.now
        tokens, stamp = min(1.0, tokens + (now - stamp) * 100.0), now
        admitted = tokens >= 1.0 - 1e-9
        tokens -= 1.0 if admitted else 0.0
        reset = math.ceil(EPOCH + now + max(0.0, 1.0 - tokens) / 100.0)
        headers = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": str(math.floor(tokens)),
                   "X-RateLimit-Reset": str(reset)}
        ft.now += 0.0005
        if admitted:
            limiter.learn(headers, status=200)
        else:
            limiter.learn({**headers, "Retry-After": "1"}, status=429)
            limiter.throttled("1")
        seen.append((limiter.settled, limiter.spacing))
    return seen


def test_a_coarse_servers_spacing_is_settled_once_narrowed_in_on() -> None:
    """Whole-second resets say nothing finer than "R left": the limiter narrows in on
    the spacing the server keeps, and until a spacing the server kept and one it
    refused lie within 10% of each other its spacing is a probe, not settled (a
    fleet spaces such a process by a settled one's: tapyard.http._limiters). Once
    settled, it is within 5% of the server's 10 ms. Precise resets are settled at once."""
    ft = FakeTime()
    limiter = RateLimiter(clock=ft.clock, sleep=ft.sleep, wall_clock=ft.wall)
    seen = _coarse_server_run(limiter, ft, 200)
    assert not seen[0][0] and seen[0][1] > 0.02  # the first probe: a 32nd of the reset
    first = next(i for i, (settled, _) in enumerate(seen) if settled)
    assert first < 60, seen[:60]
    assert all(0.0095 <= spacing <= 0.0105 for settled, spacing in seen[first:] if settled), seen[first:]
    precise = RateLimiter(clock=ft.clock, sleep=ft.sleep, wall_clock=ft.wall)
    precise.learn({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "0.010"}, status=200)
    assert precise.settled and precise.spacing > 0.009


def test_an_epoch_reset_is_timed_from_the_wire_even_for_the_first_request() -> None:
    """A request that waited long between its grant and the wire (the first one of a
    fleet's process waits for the others) is timed from its send: an epoch reset
    15 ms after the send makes a 15 ms pace, not the half second since the grant
    (the first send comes before the limiter knows its sends are reported, and
    pace is only lowered gradually: a pace that wide held for seconds), and a
    second report of the same send (the body after the headers) does not move it."""
    ft = FakeTime()
    limiter = RateLimiter(clock=ft.clock, sleep=ft.sleep, wall_clock=ft.wall)
    limiter.acquire()
    ft.now += 0.5  # waiting for the fleet's budget
    limiter.sent()
    wire = ft.now
    ft.now += 0.005
    limiter.sent()  # reported again (the body after the headers): the first report counts
    ft.now += 0.0004
    limiter.learn({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": f"{EPOCH + wire + 0.015:.3f}"}, status=200)
    assert 0.0145 < limiter.spacing < 0.017


def test_429s_in_a_row_beside_a_precise_reset_end_in_the_servers_retry_after() -> None:
    """A 429 with a precise reset is retried at the reset (its whole-second
    Retry-After is coarse beside it), but one refused again and again there (in a
    fleet, each token went to another process) waits the Retry-After in full at the
    fifth in a row, so the sixth attempt (the HTTP engine's last) is not spent at once."""
    ft = FakeTime()
    limiter = RateLimiter(clock=ft.clock, sleep=ft.sleep, wall_clock=ft.wall)
    waits = []
    for _ in range(5):
        limiter.acquire()
        limiter.sent()
        ft.now += 0.0005
        headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": f"{EPOCH + ft.now + 0.004:.3f}",
                   "Retry-After": "1"}
        limiter.learn(headers, status=429)
        assert limiter.throttled("1") == 0.0
        waits.append(limiter.wait_time())
    assert all(wait < 0.05 for wait in waits[:4]), waits
    assert waits[4] > 0.9, waits
    # a request taken again starts the count over
    ft.now += waits[4]
    limiter.acquire()
    limiter.sent()
    ft.now += 0.0005
    limiter.learn({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": f"{EPOCH + ft.now + 0.01:.3f}"}, status=200)
    assert limiter._strikes == 0


def test_an_old_pace_fades_by_the_slots_gone_by_not_by_the_responses() -> None:
    """A lower pace is approached by 2% a response while responses come a slot
    apart (one odd response cannot speed everyone up), but a process that saw no
    response for many slots (a process of a fleet sees one in eight; the others took
    the slots) takes the new pace: what it learned long ago does not outweigh it."""

    def answer(limiter: RateLimiter, ft: FakeTime, reset: float) -> None:
        limiter.acquire()
        limiter.sent()
        ft.now += 0.0005
        limiter.learn({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": f"{reset:.4f}"}, status=200)

    ft = FakeTime()
    limiter = RateLimiter(clock=ft.clock, sleep=ft.sleep, wall_clock=ft.wall)
    answer(limiter, ft, 0.020)
    assert limiter.spacing == pytest.approx(0.020, rel=0.05)
    answer(limiter, ft, 0.010)  # the next slot: lowered by 2% only
    assert limiter.spacing == pytest.approx(0.0196, rel=0.01)
    ft.now += 5.0  # 250 slots with no response of its own
    answer(limiter, ft, 0.010)
    assert limiter.spacing == pytest.approx(0.010, rel=0.05)


def test_an_epoch_slot_to_the_millisecond_spaces_sends_by_no_less_than_it() -> None:
    """A budget shared by a fleet spaces every grant of a process by its pace: an
    epoch reset to the millisecond, 9.6 ms after the send (the token before came a
    little early), gives a pace of at least that, not that less the 0.25 ms leg the
    next request takes to get there (the leg moves the moment to send, not the
    spacing between sends: 9.35 ms let one process of eight be refused six times in
    a row until its sync failed)."""
    ft = FakeTime()
    limiter = RateLimiter(clock=ft.clock, sleep=ft.sleep, wall_clock=ft.wall)
    for _ in range(12):  # enough sends for the usual distance to the slot to count
        limiter.acquire()
        limiter.sent()
        ft.now += 0.0005  # a round trip: a leg of 0.25 ms
        limiter.learn({"X-RateLimit-Remaining": "0",
                       "X-RateLimit-Reset": f"{EPOCH + ft.now - 0.0005 + 0.0096:.4f}"}, status=200)
    assert limiter.spacing >= 0.0096
