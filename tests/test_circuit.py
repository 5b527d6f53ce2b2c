"""The circuit breaker, on a fake clock."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tapyard.base._exceptions import CircuitOpenError, HTTPError
from tapyard.http._circuit import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def tripped(clock: Clock, threshold: int = 3, cooldown: float = 30.0) -> CircuitBreaker:
    breaker = CircuitBreaker(threshold, cooldown, clock=clock)
    for _ in range(threshold):
        breaker.before_call()
        breaker.record_failure()
    return breaker


def test_stays_closed_below_the_threshold(clock: Clock) -> None:
    breaker = CircuitBreaker(3, 30.0, clock=clock)
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure()
    breaker.before_call()
    assert breaker.state == "closed"
    assert breaker.failures == 2


def test_a_success_resets_the_count(clock: Clock) -> None:
    breaker = CircuitBreaker(3, 30.0, clock=clock)
    for outcome in ["fail", "fail", "ok", "fail", "fail"]:
        breaker.before_call()
        breaker.record_success() if outcome == "ok" else breaker.record_failure()
    assert breaker.state == "closed"
    breaker.before_call()


def test_opens_after_threshold_consecutive_failures(clock: Clock) -> None:
    breaker = tripped(clock)
    assert breaker.state == "open"
    clock.now += 2.5
    with pytest.raises(CircuitOpenError) as caught:
        breaker.before_call(method="GET", url="https://api.example.com/v1/items")
    assert str(caught.value) == (
        "GET https://api.example.com/v1/items: the circuit breaker is open after "
        "3 consecutive failures; not retrying for 27.5s"
    )
    assert isinstance(caught.value, HTTPError)
    assert caught.value.method == "GET"


def test_message_without_a_request(clock: Clock) -> None:
    breaker = tripped(clock, threshold=10, cooldown=30.0)
    with pytest.raises(
        CircuitOpenError,
        match=r"^the circuit breaker is open after 10 consecutive failures; not retrying for 30.0s$",
    ):
        breaker.before_call()


def test_half_open_lets_exactly_one_trial_through(clock: Clock) -> None:
    breaker = tripped(clock)
    clock.now += 30.0
    assert breaker.state == "half-open"
    breaker.before_call()  # the trial
    with pytest.raises(CircuitOpenError, match="a trial request is under way"):
        breaker.before_call()
    with pytest.raises(CircuitOpenError):
        breaker.before_call()


def test_a_successful_trial_closes_the_circuit(clock: Clock) -> None:
    breaker = tripped(clock)
    clock.now += 30.0
    breaker.before_call()
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.failures == 0
    for _ in range(5):
        breaker.before_call()


def test_a_failed_trial_reopens_the_circuit(clock: Clock) -> None:
    breaker = tripped(clock)
    clock.now += 31.0
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError, match=r"4 consecutive failures; not retrying for 30.0s"):
        breaker.before_call()
    clock.now += 30.0
    breaker.before_call()  # another trial after another cooldown


def test_a_lost_trial_does_not_shut_the_circuit_for_good(clock: Clock) -> None:
    breaker = tripped(clock)
    clock.now += 30.0
    breaker.before_call()  # a trial whose caller never reports back
    clock.now += 30.0
    breaker.before_call()  # another one is allowed


def test_only_one_trial_among_many_threads(clock: Clock) -> None:
    breaker = tripped(clock)
    clock.now += 30.0
    barrier = threading.Barrier(16)

    def attempt(_: int) -> bool:
        barrier.wait()
        try:
            breaker.before_call()
        except CircuitOpenError:
            return False
        return True

    with ThreadPoolExecutor(16) as pool:
        allowed = list(pool.map(attempt, range(16)))
    assert allowed.count(True) == 1


def test_concurrent_failures_are_all_counted(clock: Clock) -> None:
    breaker = CircuitBreaker(1000, 30.0, clock=clock)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: breaker.record_failure(), range(999)))
    assert (breaker.failures, breaker.state) == (999, "closed")
    breaker.record_failure()
    assert (breaker.failures, breaker.state) == (1000, "open")


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="threshold"):
        CircuitBreaker(0, 1.0)
    with pytest.raises(ValueError, match="cooldown"):
        CircuitBreaker(1, -1.0)
