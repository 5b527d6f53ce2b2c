"""A circuit breaker: stop calling a vendor API that keeps failing.

After ``threshold`` consecutive failures the circuit *opens* and every call is
refused with :class:`~tapyard.base._exceptions.CircuitOpenError` for ``cooldown``
seconds. Then it is *half-open*: exactly one trial call goes through while the
others are still refused. The trial's success closes the circuit; its failure
opens it again for another cooldown.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

from tapyard.base import CircuitOpenError

__all__ = ["CircuitBreaker"]

State = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    """Counts consecutive failures and refuses calls while the circuit is open. Thread-safe.

    Call :meth:`before_call` before each call, then exactly one of
    :meth:`record_success` or :meth:`record_failure` after it.
    """

    def __init__(
        self,
        threshold: int,
        cooldown: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold < 1:
            raise ValueError(f"threshold must be at least 1, not {threshold!r}")
        if cooldown < 0:
            raise ValueError(f"cooldown must not be negative, not {cooldown!r}")
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_started: float | None = None
        self._cause = ""

    @property
    def state(self) -> State:
        """``"closed"``, ``"open"`` (refusing) or ``"half-open"`` (a trial may go, or is going)."""
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if self._clock() - self._opened_at < self._cooldown:
                return "open"
            return "half-open"

    @property
    def failures(self) -> int:
        """Consecutive failures recorded since the last success."""
        with self._lock:
            return self._failures

    def before_call(self, *, method: str = "", url: str = "") -> None:
        """Return if a call may go now; raise :class:`CircuitOpenError` if not.

        ``method`` and ``url`` (already redacted) only name the call in the error.
        """
        with self._lock:
            if self._opened_at is None:
                return
            now = self._clock()
            left = self._opened_at + self._cooldown - now
            if left <= 0:
                # A trial that never reported back (its caller crashed) must not
                # keep the circuit shut for good: after a cooldown, try again.
                lost = (
                    self._trial_started is not None and now - self._trial_started >= self._cooldown
                )
                if self._trial_started is None or lost:
                    self._trial_started = now
                    return
                reason = "a trial request is under way; not retrying until it succeeds"
            else:
                reason = f"not retrying for {left:.1f}s"
            what = f"{method} {url}: ".lstrip() if method or url else ""
            cause = f" (the last: {self._cause})" if self._cause else ""
            raise CircuitOpenError(
                f"{what}the circuit breaker is open after {self._failures} consecutive failures{cause}; {reason}",
                method=method,
                url=url,
            )

    def record_success(self) -> None:
        """A call worked: close the circuit and forget past failures."""
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_started = None
            self._cause = ""

    def record_failure(self, cause: str = "") -> None:
        """A call failed: count it, and open (or re-open) the circuit at the threshold.

        ``cause`` (one line, already redacted, no response body) says why; the
        error of a refused call quotes the last one, so that the user sees
        "connection refused", not only that the circuit is open.
        """
        with self._lock:
            self._failures += 1
            self._cause = " ".join(cause.split())[:300]
            if self._trial_started is not None or self._failures >= self._threshold:
                self._opened_at = self._clock()
                self._trial_started = None
