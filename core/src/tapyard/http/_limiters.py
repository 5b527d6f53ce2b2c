"""The ``Limiter`` protocol, and the stores a run takes its limiters from.

A run never builds a rate limiter itself: it asks the :class:`LimiterStore` it
is handed for the limiter of its key (connector + credential), and every run
that asks the same store for the same key shares one budget. Two stores:

- :class:`MemoryLimiterStore`: one :class:`~tapyard.RateLimiter` per key, in
  this process (the token bucket that learns from rate-limit headers, unchanged).
  Threads and runs of one process that share the store share the limiter.
- :class:`SqliteLimiterStore`: a budget per key in a SQLite file (by default
  ``limits.db`` in the data directory), so that runs in *different processes*
  share it too. Each process keeps its own learning limiter for its threads
  and, before every request, reserves a slot in the file's budget (under
  SQLite's write lock: ``BEGIN IMMEDIATE``), which spaces the grants of every
  process together:

  * the static rate and burst (a generic cell rate algorithm: over any window
    of W seconds at most ``rate * W + burst`` grants, whichever process asks);
  * the spacing one process learned from the server's headers (a credential's
    quota is spent by all of them: the server's "remaining" already counts
    every process);
  * a hold after a 429 (``Retry-After``, a vendor's throttling signal): one
    throttled process holds back every other.

  ``concurrency`` stays per process. Clocks are the wall clock
  (``time.time``), the one every process on a machine shares.

A store is an object handed to a run (``RunContext.limiters``), never a
process global: a worker running many syncs hands them one store; a fleet of
processes on one machine points theirs at one file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from tapyard.http._ratelimit import (
    RateLimiter,
    RateLimitSettings,
    RateLimitWaitTooLong,
    _precise_sleep,
)

__all__ = [
    "Budget",
    "BudgetLimiterStore",
    "Limiter",
    "LimiterStore",
    "MemoryLimiterStore",
    "Scope",
    "SharedLimiter",
    "SqliteBudget",
    "SqliteLimiterStore",
    "default_limiter_store",
    "limiter_key",
    "limiters_of",
]

#: ``"credential"``: shared wherever the store reaches; ``"process"``: kept in
#: this process (a credential with no name, which no other process can name)
Scope = Literal["credential", "process"]


@runtime_checkable
class Limiter(Protocol):
    """What the HTTP engine and the SDK-call path ask of a rate limiter.

    :class:`~tapyard.RateLimiter` is one; :class:`SharedLimiter` another.
    Every method is safe to call from several threads.
    """

    #: the longest wait slept rather than raising :class:`RateLimitWaitTooLong`
    max_wait: float | None

    def acquire(self) -> float:
        """Block until a request may go; return the seconds waited.

        Raises :class:`RateLimitWaitTooLong` rather than wait past ``max_wait``.
        """
        ...

    def sent(self) -> None:
        """The request granted to this thread has just gone out (optional)."""
        ...

    def wait_time(self) -> float:
        """Seconds the next :meth:`acquire` would wait now."""
        ...

    def learn(self, headers: Mapping[str, str], status: int | None = None) -> None:
        """Learn the pace from a response's rate-limit headers (``status``: its code)."""
        ...

    def throttled(self, retry_after: str | None) -> float | None:
        """Account for a 429 (``Retry-After`` as sent); return what the caller sleeps."""
        ...

    def penalize(self, seconds: float) -> None:
        """Grant nothing to anyone sharing the limiter for ``seconds``."""
        ...

    def in_flight(self) -> contextlib.AbstractContextManager[None]:
        """Hold one of the ``concurrency`` slots for the duration of a request."""
        ...


@runtime_checkable
class LimiterStore(Protocol):
    """Where a run gets its limiter: one per key, shared by every run asking the same store."""

    def limiter(self, key: str, settings: RateLimitSettings, *, scope: Scope = "credential") -> Limiter:
        """The limiter of ``key`` with the run's ``settings`` applied (the latest run's
        settings win; what was learned from the server is kept)."""
        ...

    def close(self) -> None:
        """Release what the store holds open (files, connections)."""
        ...


def limiter_key(connector: str, credential: str | None, fallback: str) -> tuple[str, Scope]:
    """The key of a run's limiter and its scope.

    A named credential (stored in the vault) is one budget wherever it is used;
    one with no name is known only to this process, and is keyed by
    ``fallback`` (the base URL) within it.
    """
    if credential:
        return f"{connector}|{credential}", "credential"
    return f"{connector}|{fallback}", "process"


class MemoryLimiterStore:
    """One :class:`~tapyard.RateLimiter` per key, in this process. Thread-safe."""

    def __init__(self) -> None:
        self._limiters: dict[str, RateLimiter] = {}
        self._lock = threading.Lock()

    def limiter(self, key: str, settings: RateLimitSettings, *, scope: Scope = "credential") -> RateLimiter:
        with self._lock:
            limiter = self._limiters.get(key)
            if limiter is None:
                limiter = self._limiters[key] = RateLimiter(
                    settings.rate,
                    settings.burst,
                    concurrency=settings.concurrency,
                    learn=settings.learn,
                    max_wait=settings.max_wait,
                )
            else:
                limiter.configure(settings)
            return limiter

    def close(self) -> None:
        with self._lock:
            self._limiters.clear()


class Budget(Protocol):
    """A shared budget of grants, by key (a SQLite file, a Redis server).

    Times are wall-clock seconds (``time.time``), which every process shares.
    """

    def reserve(
        self,
        key: str,
        *,
        rate: float | None,
        burst: float,
        spacing: float,
        max_wait: float | None,
    ) -> float:
        """Reserve the next grant of ``key``; return the wall time it may go at.

        The grant is the earliest moment the static bucket (``rate`` per second,
        ``burst``), ``spacing`` seconds after the last grant of anyone, and any
        hold allow. Raises :class:`RateLimitWaitTooLong` (reserving nothing)
        when that is more than ``max_wait`` seconds away.
        """
        ...

    def peek(self, key: str, *, rate: float | None, burst: float, spacing: float) -> float:
        """The seconds a :meth:`reserve` would wait now (reserving nothing)."""
        ...

    def hold(self, key: str, until: float, reason: str) -> None:
        """Grant nothing for ``key`` before the wall time ``until``."""
        ...

    def close(self) -> None: ...


def _grant_at(
    now: float,
    tat: float,
    last: float,
    hold: float,
    rate: float | None,
    burst: float,
    spacing: float,
) -> tuple[float, float]:
    """When the next grant may go, and the bucket's theoretical arrival time after it.

    The static bucket is a generic cell rate algorithm: ``tat`` is when the
    bucket would be empty again at the rate; a grant may go ``(burst - 1)``
    intervals before it.
    """
    at = max(now, last + spacing, hold)
    if rate:
        interval = 1.0 / rate
        at = max(at, tat - (max(1.0, burst) - 1.0) * interval)
        tat = max(tat, at) + interval
    return at, tat


_SCHEMA = """
CREATE TABLE IF NOT EXISTS budget (
    key TEXT PRIMARY KEY,
    tat REAL NOT NULL DEFAULT 0,
    last REAL NOT NULL DEFAULT 0,
    hold REAL NOT NULL DEFAULT 0,
    why TEXT NOT NULL DEFAULT ''
)
"""


class SqliteBudget:
    """A :class:`Budget` in a SQLite file: one row per key, changed under SQLite's
    write lock (``BEGIN IMMEDIATE``), so that processes on one machine share it.

    The file holds no secret (keys name a connector and a credential's name).
    """

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._open()
        with self._transaction():
            self._db.execute(_SCHEMA)

    def _open(self) -> None:
        # One connection, used under the lock by every thread of this process;
        # a forked child (a worker of a fork server) opens its own.
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 30000")
        with contextlib.suppress(sqlite3.OperationalError):
            # WAL lets readers (peek) go on beside a writer; losing the last
            # grants to a power cut costs nothing, so no fsync per grant.
            self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = OFF")

    def _connection(self) -> sqlite3.Connection:
        if self._pid != os.getpid():
            self._open()  # never use a connection across fork
        return self._db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._connection()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _row(self, db: sqlite3.Connection, key: str) -> tuple[float, float, float, str]:
        row = db.execute("SELECT tat, last, hold, why FROM budget WHERE key = ?", (key,)).fetchone()
        if row is None:
            return 0.0, 0.0, 0.0, ""
        return float(row[0]), float(row[1]), float(row[2]), str(row[3])

    def reserve(
        self, key: str, *, rate: float | None, burst: float, spacing: float, max_wait: float | None
    ) -> float:
        with self._transaction() as db:
            now = self._clock()
            tat, last, hold, why = self._row(db, key)
            at, tat = _grant_at(now, tat, last, hold, rate, burst, spacing)
            if max_wait is not None and at - now > max_wait:
                reason = why if at <= hold else "the rate limit shared with other processes"
                raise RateLimitWaitTooLong(at - now, max_wait, reason)
            db.execute(
                "INSERT INTO budget (key, tat, last) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET tat = excluded.tat, last = max(last, excluded.last)",
                (key, tat, at),
            )
            return at

    def peek(self, key: str, *, rate: float | None, burst: float, spacing: float) -> float:
        self._connection()
        with self._lock:
            row = self._db.execute("SELECT tat, last, hold FROM budget WHERE key = ?", (key,)).fetchone()
        now = self._clock()
        if row is None:
            return 0.0
        at, _ = _grant_at(now, float(row[0]), float(row[1]), float(row[2]), rate, burst, spacing)
        return max(0.0, at - now)

    def hold(self, key: str, until: float, reason: str) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO budget (key, hold, why) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                "why = CASE WHEN excluded.hold > hold THEN excluded.why ELSE why END, "
                "hold = max(hold, excluded.hold)",
                (key, until, reason),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()


class SharedLimiter:
    """A :class:`~tapyard.RateLimiter` for this process's threads whose grants also
    come from a shared :class:`Budget` (see the module docstring).

    ``local`` does what it always does (learns the pace from headers, paces
    this process's threads, bounds ``concurrency``); each of its grants then
    waits for a slot in the budget, reserved with the spacing ``local`` has
    learned. A 429's wait and a penalty are held in the budget for everyone.
    """

    def __init__(
        self,
        key: str,
        local: RateLimiter,
        budget: Budget,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = _precise_sleep,
    ) -> None:
        self.key = key
        self.local = local
        self.budget = budget
        self._clock = clock
        self._sleep = sleep

    @property
    def max_wait(self) -> float | None:
        return self.local.max_wait

    @max_wait.setter
    def max_wait(self, value: float | None) -> None:
        self.local.max_wait = value

    @property
    def rate(self) -> float | None:
        return self.local.rate

    def configure(self, settings: RateLimitSettings) -> None:
        """Apply a run's settings to the local limiter (and so to its reservations)."""
        self.local.configure(settings)

    def acquire(self) -> float:
        waited = self.local.acquire()
        at = self.budget.reserve(
            self.key,
            rate=self.local.rate,
            burst=self.local.burst,
            spacing=self.local.spacing,
            max_wait=None if self.local.max_wait is None else max(0.0, self.local.max_wait - waited),
        )
        wait = at - self._clock()
        if wait > 0:
            self._sleep(wait)
            waited += wait
        return waited

    def sent(self) -> None:
        self.local.sent()

    def wait_time(self) -> float:
        shared = self.budget.peek(
            self.key, rate=self.local.rate, burst=self.local.burst, spacing=self.local.spacing
        )
        return max(self.local.wait_time(), shared)

    def learn(self, headers: Mapping[str, str], status: int | None = None) -> None:
        self.local.learn(headers, status=status)

    def throttled(self, retry_after: str | None) -> float | None:
        wait = self.local.throttled(retry_after)
        if wait:
            self.budget.hold(self.key, self._clock() + wait, "the server's 429 Retry-After")
        return wait

    def penalize(self, seconds: float) -> None:
        self.local.penalize(seconds)
        if seconds > 0:
            self.budget.hold(self.key, self._clock() + seconds, "the server's Retry-After")

    def in_flight(self) -> contextlib.AbstractContextManager[None]:
        return self.local.in_flight()


class BudgetLimiterStore:
    """Limiters whose grants also come from a shared :class:`Budget`, made on first
    use by ``budget`` (see :class:`SqliteLimiterStore`, ``RedisLimiterStore``).

    One :class:`SharedLimiter` per key in this process, so that its threads share
    one learning limiter; a key of scope ``"process"`` gets a plain in-process one.
    """

    def __init__(self, budget: Callable[[], Budget]) -> None:
        self._make_budget = budget
        self._budget: Budget | None = None
        self._memory = MemoryLimiterStore()
        self._shared: dict[str, SharedLimiter] = {}
        self._lock = threading.Lock()

    def limiter(self, key: str, settings: RateLimitSettings, *, scope: Scope = "credential") -> Limiter:
        if scope == "process":
            return self._memory.limiter(key, settings)
        with self._lock:
            if self._budget is None:
                self._budget = self._make_budget()
            shared = self._shared.get(key)
            if shared is None:
                local = self._memory.limiter(key, settings)
                shared = self._shared[key] = SharedLimiter(key, local, self._budget)
            else:
                shared.configure(settings)
            return shared

    def close(self) -> None:
        with self._lock:
            if self._budget is not None:
                self._budget.close()
                self._budget = None
            self._shared.clear()
        self._memory.close()


class SqliteLimiterStore(BudgetLimiterStore):
    """Limiters whose budgets live in a SQLite file, shared by every process using it.

    ``path`` defaults to ``limits.db`` in the data directory (``$TAPYARD_HOME``).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        if path is None:
            from tapyard_credentials import data_dir

            path = data_dir() / "limits.db"
        self.path = Path(path)
        super().__init__(lambda: SqliteBudget(self.path))


_FALLBACK: dict[Path, SqliteLimiterStore] = {}
_FALLBACK_LOCK = threading.Lock()


def default_limiter_store() -> LimiterStore:
    """The store of a run handed none: the SQLite file of the data directory
    (``limits.db`` in ``$TAPYARD_HOME``), one object per file in this process.
    Every process using that data directory shares a named credential's budget."""
    from tapyard_credentials import data_dir

    path = data_dir() / "limits.db"
    with _FALLBACK_LOCK:
        store = _FALLBACK.get(path)
        if store is None:
            store = _FALLBACK[path] = SqliteLimiterStore(path)
        return store


def limiters_of(context: object) -> LimiterStore:
    """The limiter store a run was handed (``context.limiters``), else :func:`default_limiter_store`."""
    store = getattr(context, "limiters", None)
    if store is not None:
        return store  # type: ignore[no-any-return]
    return default_limiter_store()
