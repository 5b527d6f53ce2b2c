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

  A grant is taken when it may go *now* (a process asks again after the wait it
  is told, rather than reserving a moment ahead): a process descheduled
  between its grant and the wire then delays the next grant (which waits for
  the send to be reported, up to ``_HANDOFF_TIMEOUT``) instead of arriving
  just before it, and the spacing runs from the last *send*. The spacing is
  the asking process's, or the last one a grant was taken with when it has
  none yet (a process that has just started is spaced by what the others
  learned) or when its own is a probe (a coarse server's spacing still being
  narrowed in on) and a process whose spacing is settled took a grant in the
  last second; less the asking process's usual delay from a grant to the wire. Processes told
  to wait are queued (a ticket each): the first is told the grant's moment,
  the next a spacing later, and so on, so that about one asks at each grant's
  moment instead of every waiting process at once (their asks and wake-ups
  took the CPU the granted request needed to reach the wire).

  ``concurrency`` is a cap per credential across every process sharing the
  store: each in-flight request holds a leased slot in the budget, renewed
  while its process lives and free again ``_SLOT_LEASE`` seconds after a
  process that died holding it. Clocks are the wall clock (``time.time``),
  the one every process on a machine shares.

A store is an object handed to a run (``RunContext.limiters``), never a
process global (``tapyard.http._stores`` picks the one of a run handed none): a worker running many syncs hands them one store; a fleet of
processes on one machine points theirs at one file.
"""

from __future__ import annotations

import collections
import contextlib
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from tapyard.http._ratelimit import (
    _LAG_MAX_SHARE,
    _LAG_MIN_SAMPLES,
    _LAG_WINDOW,
    _PROBE_POLL,
    _PROBE_TIMEOUT,
    RateLimiter,
    RateLimitSettings,
    RateLimitWaitTooLong,
    _precise_sleep,
)

__all__ = [
    "Ask",
    "Budget",
    "BudgetLimiterStore",
    "Limiter",
    "LimiterStore",
    "MemoryLimiterStore",
    "Scope",
    "SharedLimiter",
    "SqliteBudget",
    "SqliteLimiterStore",
    "limiter_key",
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


@dataclass(frozen=True, slots=True)
class Ask:
    """What a caller of :meth:`Budget.take` knows: the static ``rate`` (``None``:
    none) and ``burst``, the ``spacing`` it learned (0: nothing yet), the longest
    wait it accepts, whether it will report its send (:meth:`Budget.sent`), and
    how much ``ahead`` of the spacing to grant (its usual delay from a grant to
    the wire, so that its request reaches the wire a spacing after the last),
    whether it has learned from a response yet (``answered``), its place
    in the queue of callers waiting for a grant (``ticket``: the one an
    earlier :meth:`Budget.take` handed it, 0 on a first ask), and whether its
    ``spacing`` is settled (what the server said, or close to a spacing it was
    seen to keep) rather than a probe narrowing in on a coarse server's
    spacing from afar."""

    rate: float | None
    burst: float
    spacing: float
    max_wait: float | None
    reports: bool = False
    ahead: float = 0.0
    answered: bool = True
    ticket: int = 0
    settled: bool = True


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

    def take(self, key: str, ask: Ask) -> tuple[float, str, float]:
        """Take a grant of ``key`` if one may go now: ``(0, token, since)``, ``since`` the
        seconds from the last grant or send of anyone (-1: none yet); else ``(seconds, "", ticket)``,
        the wait before asking again (taking nothing) and the caller's place in the queue
        of waiting callers, to ask again with (``ask.ticket``). ``ask`` says what the
        caller knows (see :class:`Ask`).

        A grant may go once the static bucket, the spacing after the last grant
        or send of anyone, and any hold allow it, and once the grant
        before it has been reported sent (:meth:`sent`), or
        ``_HANDOFF_TIMEOUT`` seconds after it was taken: a process that was
        slow to send its request (descheduled between its grant and the wire)
        then delays the next one instead of arriving just before it.
        The spacing is ``ask.spacing``, or, when the caller has learned none
        yet, the last one a caller who had took a grant with: a process that
        has just started is spaced by what the others learned. A caller whose
        spacing is a probe (``ask.settled`` false: a coarse server's spacing
        still being narrowed in on) is spaced by the one a settled caller took
        a grant with, while one did in the last ``_SETTLED_FRESH`` seconds:
        the fleet's pace is one thing, the server's, and a process whose own
        probe is wider would otherwise never be granted (the settled
        processes' grants always come first) and, when they stop, start its
        narrowing-in over at the wide end (see ``_fleet_spacing``). With no static
        rate, until a caller that has learned from a response asks, a grant
        waits (up to ``_PROBE_TIMEOUT`` after the last) for one to come: a
        fleet does not open with a burst against a quota nobody knows. Raises
        :class:`RateLimitWaitTooLong` (taking nothing) when the wait is more
        than ``ask.max_wait`` seconds.

        Callers told to wait are queued (a ticket each, in the order they first
        asked): the first is told the grant's moment, the k-th k - 1 spacings
        after it. Of N processes waiting for one credential, about one asks at
        each grant's moment, rather than all N at once, whose asks and wake-ups
        would delay the granted request on its way to the wire (on the CPU it
        needs). The order only says when to ask: a grant still goes to whoever
        asks once it may go, so a waiter that died or was late costs at most
        one spacing.
        """
        ...

    def sent(self, key: str, token: str) -> None:
        """The request of the grant ``token`` has just gone out: the next grant is
        spaced from now."""
        ...

    def peek(self, key: str, *, rate: float | None, burst: float, spacing: float) -> float:
        """The seconds a :meth:`reserve` would wait now (reserving nothing)."""
        ...

    def enter(self, key: str, holder: str, limit: int, lease: float) -> float:
        """Take one of ``limit`` in-flight slots of ``key`` for ``holder``, for ``lease``
        seconds: 0 when taken, else the seconds to wait before asking again (at
        most until the soonest lease ends). A slot whose lease ended (its
        process died without leaving) is free again."""
        ...

    def renew(self, key: str, holders: list[str], lease: float) -> None:
        """Extend the leases of ``holders`` to ``lease`` seconds from now."""
        ...

    def leave(self, key: str, holder: str) -> None:
        """Give ``holder``'s slot back."""
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


#: how long the spacing a settled caller took a grant with stays the fleet's
#: (see ``Budget.take``): a process granted less often than this has left
_SETTLED_FRESH = 1.0
#: how long a shared grant waits for the grant before it to be reported sent,
#: and how often it asks again meanwhile
_HANDOFF_TIMEOUT = 0.25
_HANDOFF_POLL = 0.001
#: a grant whose moment is less than this away is taken now
_GRANT_EPSILON = 1e-6
#: an in-flight slot's lease, how often a live holder renews it, and the
#: shortest and longest pause between two asks for a slot
_SLOT_LEASE = 10.0
_SLOT_RENEW = 2.0
_SLOT_POLL = 0.002
_SLOT_POLL_MAX = 0.05


def _take_at(
    now: float,
    tat: float,
    last: float,
    hold: float,
    unsent: float,
    rate: float | None,
    burst: float,
    spacing: float,
    probing: bool,
) -> tuple[float, float, bool]:
    """When a grant taken now-or-later may go, the bucket's arrival time after it,
    and whether the wait is only for another process (its send, its first
    response). ``spacing`` is the caller's or the fleet's, less the caller's
    lead; ``probing``: nobody who asked had learned from a response yet."""
    at, tat = _grant_at(now, tat, last, hold, rate, burst, spacing)
    handoff = False
    if unsent > 0 and now < unsent + _HANDOFF_TIMEOUT and at < now + _HANDOFF_POLL:
        at, handoff = min(now + _HANDOFF_POLL, unsent + _HANDOFF_TIMEOUT), True
    if probing and not rate and last > 0 and now < last + _PROBE_TIMEOUT and at < now + _PROBE_POLL:
        at, handoff = min(now + _PROBE_POLL, last + _PROBE_TIMEOUT), True
    return at, tat, handoff


def _fleet_spacing(ask: Ask, learned: float, settled: float, now: float) -> tuple[float, float]:
    """The spacing a caller's grant is taken with, and the one the budget keeps after
    it (0: keep the last), given the last one kept (``learned``) and when a settled
    caller last took a grant (``settled``): while one did in the last
    ``_SETTLED_FRESH`` seconds, a caller whose own spacing is a probe is spaced by
    that one and keeps nothing (see ``Budget.take``)."""
    if not ask.settled and settled > now - _SETTLED_FRESH:
        return learned, 0.0
    return ask.spacing or learned, ask.spacing


def _queued(
    now: float, at: float, ticket: int, queue: tuple[int, int, float], step: float
) -> tuple[float, int, tuple[int, int, float]]:
    """When a caller told to wait asks again, its ticket, and the queue after it.

    ``queue`` is ``(tickets, served, until)``: the last ticket handed out, the
    highest ticket granted so far, and the latest moment told to a caller.
    ``ticket`` is the caller's (0: a first ask, which takes the next). The
    ticket ``served + k`` is k-th in line: ``k - 1`` steps after ``at``. A
    grant taken by a caller with no ticket (one that asked when a grant could
    go at once) moves nobody on; one whose turn passed (it came late) is first
    in line with the next. Once every moment told has passed, the tickets
    still out belong to nobody waiting (their callers died, or gave up): a
    first ask is then first in line.
    """
    tickets, served, until = queue
    if ticket <= 0:
        if until < now:
            tickets = served
        ticket = tickets = max(tickets, served) + 1
    wake = at + max(0, ticket - served - 1) * step
    return wake, ticket, (tickets, served, max(until, wake))


_SCHEMA = """
CREATE TABLE IF NOT EXISTS budget (
    key TEXT PRIMARY KEY,
    tat REAL NOT NULL DEFAULT 0,
    last REAL NOT NULL DEFAULT 0,
    hold REAL NOT NULL DEFAULT 0,
    why TEXT NOT NULL DEFAULT '',
    unsent REAL NOT NULL DEFAULT 0,
    spacing REAL NOT NULL DEFAULT 0,
    known INTEGER NOT NULL DEFAULT 0,
    tickets INTEGER NOT NULL DEFAULT 0,
    served INTEGER NOT NULL DEFAULT 0,
    until REAL NOT NULL DEFAULT 0,
    settled REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS slots (
    key TEXT NOT NULL,
    holder TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (key, holder)
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
        with self._transaction() as db:
            for statement in _SCHEMA.split(";"):
                db.execute(statement)
            columns = {row[1] for row in db.execute("PRAGMA table_info(budget)")}
            for column in ("unsent", "spacing", "known", "tickets", "served", "until", "settled"):  # a file written before these were kept
                if column not in columns:
                    db.execute(f"ALTER TABLE budget ADD COLUMN {column} REAL NOT NULL DEFAULT 0")

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

    def take(self, key: str, ask: Ask) -> tuple[float, str, float]:
        with self._transaction() as db:
            now = self._clock()
            tat, last, hold, why = self._row(db, key)
            row = db.execute(
                "SELECT unsent, spacing, known, tickets, served, until, settled FROM budget WHERE key = ?", (key,)
            ).fetchone()
            unsent, learned, known = (float(row[0]), float(row[1]), bool(row[2])) if row else (0.0, 0.0, False)
            queue = (int(row[3]), int(row[4]), float(row[5])) if row else (0, 0, 0.0)
            spacing, keep = _fleet_spacing(ask, learned, float(row[6]) if row else 0.0, now)
            spaced = max(0.0, spacing - ask.ahead)
            probing = not (known or ask.answered)
            at, tat, handoff = _take_at(now, tat, last, hold, unsent, ask.rate, ask.burst, spaced, probing)
            if at - now > _GRANT_EPSILON:
                if not handoff and ask.max_wait is not None and at - now > ask.max_wait:
                    reason = why if at <= hold else "the rate limit shared with other processes"
                    raise RateLimitWaitTooLong(at - now, ask.max_wait, reason)
                ticket = ask.ticket
                if not handoff:
                    step = max(spaced, 1.0 / ask.rate if ask.rate else 0.0)
                    at, ticket, queue = _queued(now, at, ask.ticket, queue, step)
                    db.execute(
                        "INSERT INTO budget (key, tickets, until) VALUES (?, ?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET tickets = excluded.tickets, until = excluded.until",
                        (key, queue[0], queue[2]),
                    )
                return at - now, "", float(ticket)
            token = repr(now)
            db.execute(
                "INSERT INTO budget (key, tat, last, unsent, spacing, known, served, settled) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET tat = excluded.tat, last = max(last, excluded.last), "
                "served = max(served, excluded.served), "
                "unsent = excluded.unsent, known = max(known, excluded.known), "
                "spacing = CASE WHEN excluded.spacing > 0 THEN excluded.spacing ELSE spacing END, "
                "settled = max(settled, excluded.settled)",
                (key, tat, now, now if ask.reports else 0.0, keep, int(ask.answered), ask.ticket,
                 now if keep > 0 and ask.settled else 0.0),
            )
            return 0.0, token, now - last if last > 0 else -1.0

    def sent(self, key: str, token: str) -> None:
        with self._transaction() as db:
            now = self._clock()
            db.execute(
                "UPDATE budget SET last = max(last, ?), "
                "unsent = CASE WHEN unsent = ? THEN 0 ELSE unsent END WHERE key = ?",
                (now, float(token), key),
            )

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

    def enter(self, key: str, holder: str, limit: int, lease: float) -> float:
        with self._transaction() as db:
            now = self._clock()
            db.execute("DELETE FROM slots WHERE key = ? AND expires <= ?", (key, now))
            held, soonest = db.execute(
                "SELECT count(*), min(expires) FROM slots WHERE key = ?", (key,)
            ).fetchone()
            if held >= limit:
                return max(_GRANT_EPSILON, float(soonest) - now)
            db.execute("INSERT OR REPLACE INTO slots VALUES (?, ?, ?)", (key, holder, now + lease))
            return 0.0

    def renew(self, key: str, holders: list[str], lease: float) -> None:
        with self._transaction() as db:
            until = self._clock() + lease
            db.executemany(
                "UPDATE slots SET expires = ? WHERE key = ? AND holder = ?", [(until, key, h) for h in holders]
            )

    def leave(self, key: str, holder: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM slots WHERE key = ? AND holder = ?", (key, holder))

    def close(self) -> None:
        with self._lock:
            self._db.close()


class SharedLimiter:
    """A :class:`~tapyard.RateLimiter` for this process's threads whose grants also
    come from a shared :class:`Budget` (see the module docstring).

    ``local`` does what it always does (learns the pace from headers, paces
    this process's threads, bounds ``concurrency`` among them); each of its
    grants then waits for a grant of the budget, taken with the spacing
    ``local`` has learned, and each request in flight holds one of the
    credential's ``concurrency`` slots in the budget. A 429's wait and a
    penalty are held in the budget for everyone.
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
        # the token of each thread's last grant, until its send is reported
        self._grants = threading.local()
        # how late requests reach the wire after the moment the budget meant
        # for their grant: the smallest of the last few
        self._lags: collections.deque[float] = collections.deque(maxlen=_LAG_WINDOW)
        self._lag = 0.0
        self._lags_lock = threading.Lock()
        # the in-flight slots this process holds in the budget, and their renewer
        self._holders: set[str] = set()
        self._holders_lock = threading.Lock()
        self._renewer: threading.Thread | None = None

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
        asked: float | None = None  # when this thread asked at the moment it was told to
        ticket = 0  # its place in the budget's queue of waiting callers
        while True:
            spacing = self.local.spacing
            cap = None if self.local.max_wait is None else max(0.0, self.local.max_wait - waited)
            ask = Ask(self.local.rate, self.local.burst, spacing, cap, self.local.reports_sends,
                      min(self._lag, _LAG_MAX_SHARE * spacing), not self.local.probing, ticket, self.local.settled)
            wait, token, since = self.budget.take(self.key, ask)
            if token:
                self._grants.token, self._grants.asked = token, asked
                self._grants.since, self._grants.granted = since, time.monotonic()
                return waited
            ticket = int(since)
            self._sleep(wait)
            waited += wait
            asked = time.monotonic()

    def sent(self) -> None:
        self.local.sent()
        token = getattr(self._grants, "token", None)
        if token:
            self._grants.token = None
            # what the server's spacing between requests is learned from
            if self._grants.since >= 0:
                self.local.sent_after(self._grants.since + time.monotonic() - self._grants.granted)
            asked = getattr(self._grants, "asked", None)
            if asked is not None:
                # from the moment the budget meant to grant to the wire: the next
                # grant of this process asks that much earlier
                with self._lags_lock:
                    self._lags.append(time.monotonic() - asked)
                    if len(self._lags) >= _LAG_MIN_SAMPLES:
                        self._lag = min(self._lags)
            self.budget.sent(self.key, token)

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
        elif wait is not None and (spacing := self.local.spacing) > 0:
            # The limiter paces the retry itself (a coarse Retry-After): the
            # refused request had a slot, so every process skips one, and the
            # server sees no more requests than it allows, 429s included.
            self.budget.hold(self.key, self._clock() + spacing, "the server's 429")
        return wait

    def penalize(self, seconds: float) -> None:
        self.local.penalize(seconds)
        if seconds > 0:
            self.budget.hold(self.key, self._clock() + seconds, "the server's Retry-After")

    @contextlib.contextmanager
    def in_flight(self) -> Iterator[None]:
        """Hold one of the ``concurrency`` slots of this process, then one of the
        credential's slots in the budget (every process together holds at most
        ``concurrency``), for the duration of a request. A slot in the budget is
        leased: held while this process renews it, free again ``_SLOT_LEASE``
        seconds after a process that died holding it."""
        with self.local.in_flight():
            limit = self.local.concurrency
            if not limit:
                yield
                return
            holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
            pause = _SLOT_POLL
            while (wait := self.budget.enter(self.key, holder, limit, _SLOT_LEASE)) > 0:
                self._sleep(min(wait, pause))
                pause = min(_SLOT_POLL_MAX, pause * 2.0)
            with self._holders_lock:
                self._holders.add(holder)
                if self._renewer is None or not self._renewer.is_alive():
                    self._renewer = threading.Thread(target=self._renew, name="tapyard-slots", daemon=True)
                    self._renewer.start()
            try:
                yield
            finally:
                with self._holders_lock:
                    self._holders.discard(holder)
                self.budget.leave(self.key, holder)

    def _renew(self) -> None:
        """Renew this process's leases while it holds any (a daemon thread: it dies
        with the process, and so its leases end)."""
        while True:
            time.sleep(_SLOT_RENEW)
            with self._holders_lock:
                holders = sorted(self._holders)
                if not holders:
                    self._renewer = None
                    return
            with contextlib.suppress(Exception):  # the next round tries again
                self.budget.renew(self.key, holders, _SLOT_LEASE)


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
