"""The scheduler: fires jobs on their cron schedules and runs them, alone or beside
other schedulers sharing one control plane.

Exactly one run per (job, scheduled time): every scheduler computes the same
due ticks, and each tick is created by an insert that a unique key on (job,
scheduled_at) lets only one of them win; the winner queues the run in the same
transaction. A queued run is claimed by a compare-and-set that moves it to
``starting`` and increments its fencing token; the worker process it starts
must present that token to move it to ``running``, to renew its heartbeat and
to record its outcome. A run whose heartbeat stops (its process was killed, its
machine lost power) is marked ``abandoned`` by any scheduler once its heartbeat
is 1.5 intervals old (it is looked at every loop, so within two intervals of
the last beat), its token moves on (the lost process can no longer record
anything), and a retry is queued when the job allows one; the retry resumes
from the state the destination committed.

With the Celery executor a claimed run (or a unit of a spread run: the same
path) is a message in the broker until a worker takes it, and it stays
``starting`` while it waits there: every worker busy is no sign of a lost one.
Such a run is never marked abandoned; its message is sent again now and then
(a worker that died holding it took it along; the copy taken second finds the
run started and does nothing, fenced by its token), and it ends only by its
deadline (a unit has its run's) or by the queue timeout: ``queue_timeout``
seconds during which no worker took it and no worker started, ran or ended
any run of the control plane (no worker serving the queue at all), as
Airflow's ``task_queued_timeout`` and Dagster's ``start_timeout_seconds`` do.

Schedule times come from :mod:`tapyard.jobs._clock` (a test clock may replace
the system's); leases, heartbeats, backoff and timeouts are real time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import heapq
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa

from tapyard.jobs import _db as db
from tapyard.jobs._clock import Clock, clock
from tapyard.jobs._cron import Schedule
from tapyard.jobs._store import ControlPlane, Job, JobNotFound, Run

__all__ = ["Scheduler"]

log = logging.getLogger("tapyard.scheduler")

#: how long past its deadline a run may still be running before the scheduler ends it
TIMEOUT_GRACE = 5.0
#: seconds a claimed run's worker may take to start before it counts as lost (a local
#: run) or before its message is sent again (a run waiting for a Celery worker)
STARTUP_ALLOWANCE = 30.0
#: seconds a run may wait in the Celery queue while no worker shows any sign of work
#: before it ends ``timed_out`` (Airflow's ``scheduler.task_queued_timeout`` is 600 s too)
QUEUE_TIMEOUT = 600.0


#: upper bounds of the lag histogram's buckets, seconds
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class LagHistogram:
    """Cumulative counts of tick-to-start lags (seconds), as Prometheus keeps a histogram."""

    def __init__(self) -> None:
        self.counts = [0] * len(LAG_BUCKETS)
        self.total = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.total += 1
        self.sum += seconds
        for i, bound in enumerate(LAG_BUCKETS):
            if seconds <= bound:
                self.counts[i] += 1


@dataclass
class _Planned:
    job: Job
    schedule: Schedule
    last: float  # clock epoch seconds of the last tick considered
    due: float = 0.0


class _Process(Protocol):
    pid: int

    def poll(self) -> int | None: ...
    def kill(self) -> None: ...
    def send_signal(self, signum: int) -> None: ...
    def wait(self, timeout: float | None = None) -> int: ...


def _forkserver_available() -> bool:
    import multiprocessing

    return "forkserver" in multiprocessing.get_all_start_methods() and not os.environ.get("TAPYARD_WORKER_SPAWN")


_context: Any = None


def _fork_context() -> Any:
    """multiprocessing's fork server, warmed with the sync engine and the installed
    connectors: a run then starts in milliseconds instead of loading Python and its
    imports (about a second) after its tick. Plugins installed after the scheduler
    started need a scheduler restart."""
    global _context
    if _context is None:
        import multiprocessing

        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["tapyard.jobs._preload"])
        _context = context
    return _context


class _Forked:
    """A run's process forked from the warm fork server, shaped like ``subprocess.Popen``."""

    def __init__(self, run: Run, heartbeat: float, url: str, echo: bool) -> None:
        from tapyard.jobs._worker import forked

        self.process = _fork_context().Process(
            target=forked, args=(run.id, run.token, heartbeat, url, dict(os.environ), echo), name=f"tapyard-run-{run.id}",
        )
        self.process.start()
        self.pid = int(self.process.pid)

    def poll(self) -> int | None:
        code = self.process.exitcode
        if code is not None:
            self.process.join(0)
        return None if code is None else int(code)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def send_signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def wait(self, timeout: float | None = None) -> int:
        self.process.join(timeout)
        return int(self.process.exitcode or 0)


@dataclass
class _Child:
    run: Run
    process: _Process
    started: float = field(default_factory=time.time)


def _jitter(job: str, instant: int, spread: float) -> float:
    """A delay in [0, spread) fixed by (job, instant): the same for every scheduler."""
    if spread <= 0:
        return 0.0
    digest = hashlib.sha256(f"{job}\0{instant}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * spread


def _insert_tick(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(db.ticks)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(db.ticks)


class Scheduler:
    """One scheduler. ``loop()`` runs until stopped; ``once()`` does one pass."""

    def __init__(
        self,
        cp: ControlPlane,
        *,
        max_runs: int = 8,
        per_credential: int = 2,
        heartbeat: float = 15.0,
        poll: float = 1.0,
        grace: float = 60.0,
        drain: float = 60.0,
        the_clock: Clock | None = None,
        echo: bool = True,
        executor: str = "local",
        start_allowance: float | None = None,
        queue_timeout: float | None = None,
    ) -> None:
        self.cp = cp
        # None: the module's STARTUP_ALLOWANCE and QUEUE_TIMEOUT, read when used
        self._start_allowance = start_allowance
        self._queue_timeout = queue_timeout
        #: "local" (a process of this machine) or "celery" (a worker anywhere: tapyard.jobs._celery)
        self.executor = executor
        self.engine = cp.engine
        self.max_runs = max_runs
        self.per_credential = per_credential
        self.heartbeat = heartbeat
        self.poll = poll
        self.grace = grace
        self.drain_seconds = drain
        self.clock = the_clock or clock()
        self.echo = echo
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.children: dict[int, _Child] = {}
        self.plans: dict[str, _Planned] = {}
        self.heap: list[tuple[float, str]] = []
        self.jobs_version: tuple[Any, ...] | None = None
        self.draining = False
        self.lease_renewed = 0.0
        self.next_queued: float | None = None
        self.lag = LagHistogram()  # tick-to-start lag of the runs this scheduler started

    @property
    def start_allowance(self) -> float:
        """Seconds a claimed run's process or worker may take to beat first (see STARTUP_ALLOWANCE)."""
        return STARTUP_ALLOWANCE if self._start_allowance is None else self._start_allowance

    @property
    def queue_timeout(self) -> float:
        """Seconds a run waits for a Celery worker with none at work before it ends (0: never)."""
        return QUEUE_TIMEOUT if self._queue_timeout is None else self._queue_timeout

    # --- jobs and ticks -----------------------------------------------------------

    def _refresh_jobs(self, conn: sa.Connection) -> None:
        # (the schedule clock may stand still in tests: updated_at alone could miss a change)
        version = tuple(
            conn.execute(
                sa.select(
                    sa.func.count(), sa.func.max(db.jobs.c.updated_at), sa.func.sum(db.jobs.c.since),
                    sa.func.sum(sa.func.length(db.jobs.c.spec)), sa.func.sum(sa.cast(db.jobs.c.paused, sa.Integer)),
                ).select_from(db.jobs)
            ).one()
        )
        if version == self.jobs_version:
            return
        self.jobs_version = version
        last_ticks = dict(
            conn.execute(sa.select(db.ticks.c.job, sa.func.max(db.ticks.c.scheduled_at)).group_by(db.ticks.c.job)).all()
        )
        rows = conn.execute(sa.select(db.jobs)).all()
        from tapyard.jobs._store import _job

        plans: dict[str, _Planned] = {}
        for row in rows:
            job = _job(row)
            old = self.plans.get(job.name)
            last = max(job.since, float(last_ticks.get(job.name) or 0), old.last if old else 0.0)
            try:
                schedule = Schedule(job.spec.cron, job.spec.timezone)
            except ValueError:
                continue  # refused at add/apply; a definition edited by hand is skipped
            plan = _Planned(job, schedule, last)
            plan.due = schedule.next_after(dt.datetime.fromtimestamp(last, dt.UTC)).timestamp()
            plans[job.name] = plan
        self.plans = plans
        self.heap = [(p.due, name) for name, p in plans.items()]
        heapq.heapify(self.heap)

    def _due_ticks(self, now: float) -> list[tuple[_Planned, list[int]]]:
        """Per job whose next tick has come, the ticks to create by its catch-up policy."""
        out = []
        while self.heap and self.heap[0][0] <= now:
            _, name = heapq.heappop(self.heap)
            plan = self.plans.get(name)
            if plan is None:
                continue
            spec = plan.job.spec
            window = max(spec.catchup_window, self.grace) if spec.catchup != "none" else self.grace
            start = max(plan.last, now - window - 60.0)
            due = [
                int(t.timestamp())
                for t in plan.schedule.between(dt.datetime.fromtimestamp(start, dt.UTC), dt.datetime.fromtimestamp(now, dt.UTC))
            ]
            fresh = [t for t in due if now - t <= window]
            if spec.catchup == "latest":
                fresh = fresh[-1:]
            plan.last = max(plan.last, float(due[-1])) if due else max(plan.last, now)
            plan.due = plan.schedule.next_after(dt.datetime.fromtimestamp(plan.last, dt.UTC)).timestamp()
            heapq.heappush(self.heap, (plan.due, name))
            if fresh and not plan.job.paused:
                out.append((plan, fresh))
        return out

    def _create_ticks(self, conn: sa.Connection, due: list[tuple[_Planned, list[int]]], now: float) -> int:
        created = 0
        real = time.time()
        insert = _insert_tick(self.engine.dialect.name)
        for plan, instants in due:
            spec = plan.job.spec
            for instant in instants:
                tick_id = conn.execute(
                    insert.values(job=spec.name, scheduled_at=instant, created_at=real, status="pending", scheduler=self.id)
                    .on_conflict_do_nothing(index_elements=["job", "scheduled_at"])
                    .returning(db.ticks.c.id)
                ).scalar()
                if tick_id is None:
                    continue  # another scheduler created it
                created += 1
                active = conn.execute(
                    sa.select(db.runs.c.id, db.runs.c.status).where(
                        db.runs.c.job == spec.name, db.runs.c.status.in_(("queued", "starting", "running", "cancelling"))
                    )
                ).all()
                if (spec.overlap == "skip" and active) or (
                    spec.overlap == "buffer-one" and any(r.status == "queued" for r in active)
                ):
                    conn.execute(db.ticks.update().where(db.ticks.c.id == tick_id).values(status="skipped"))
                    continue
                if spec.overlap == "cancel-other" and active:
                    conn.execute(
                        db.runs.update().where(db.runs.c.job == spec.name, db.runs.c.status == "queued")
                        .values(status="cancelled", ended_at=real, error="cancelled by a newer tick (overlap cancel-other)")
                    )
                    conn.execute(
                        db.runs.update().where(db.runs.c.job == spec.name, db.runs.c.status.in_(("starting", "running")))
                        .values(status="cancelling")
                    )
                wait = max(0.0, instant + _jitter(spec.name, instant, spec.jitter) - now)
                run_id = conn.execute(
                    db.runs.insert().values(
                        job=spec.name, tick_id=tick_id, scheduled_at=instant, attempt=1, trigger="schedule",
                        status="queued", credential=spec.creds, created_at=real,
                        not_before=real + self.clock.real_seconds(wait), token=0, records=0, dead_letters=0,
                        requests=0, http_retries=0,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
                conn.execute(db.ticks.update().where(db.ticks.c.id == tick_id).values(status="run", run_id=run_id))
        return created

    # --- claims and children ------------------------------------------------------

    def _claim(self) -> list[Run]:
        capacity = self.max_runs - len(self.children)
        if capacity <= 0 or self.draining:
            return []
        now = time.time()
        with self.engine.connect() as conn:
            queued = conn.execute(
                sa.select(db.runs).where(db.runs.c.status == "queued", db.runs.c.not_before <= now)
                .order_by(db.runs.c.not_before, db.runs.c.id).limit(capacity * 4 + 16)
            ).all()
        claimed: list[Run] = []
        for row in queued:
            if len(claimed) >= capacity:
                break
            run = Run.from_row(row)
            plan = self.plans.get(run.job)
            if plan is None:
                if run.job not in self._job_names():
                    self._cancel_orphan(run)
                continue
            if plan.job.paused:
                continue
            got = self._try_claim(run, plan.job)
            if got is not None:
                claimed.append(got)
        return claimed

    def _job_names(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(db.jobs.c.name)).scalars().all())

    def _cancel_orphan(self, run: Run) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                db.runs.update().where(db.runs.c.id == run.id, db.runs.c.status == "queued")
                .values(status="cancelled", ended_at=time.time(), error="the job was removed")
            )

    def _try_claim(self, run: Run, job: Job) -> Run | None:
        spec = job.spec
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                # serialize claims of one job (overlap) and of one credential (limit)
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"tapyard-job:{run.job}"})
                if run.credential:
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"tapyard-cred:{run.credential}"})
            # a unit belongs to a run already under way: the job's overlap policy is its run's
            if spec.overlap != "allow" and run.parent_id is None:
                busy = conn.execute(
                    sa.select(sa.func.count()).select_from(db.runs).where(
                        db.runs.c.job == run.job, db.runs.c.status.in_(("starting", "running", "cancelling"))
                    )
                ).scalar()
                if busy:
                    return None
            if run.credential and self.per_credential > 0:
                using = conn.execute(
                    sa.select(sa.func.count()).select_from(db.runs).where(
                        db.runs.c.credential == run.credential, db.runs.c.status.in_(("starting", "running", "cancelling")),
                        db.runs.c.units.is_(None),  # a split run waits for its units and calls no vendor
                    )
                ).scalar()
                if (using or 0) >= self.per_credential:
                    return None
            now = time.time()
            done = conn.execute(
                db.runs.update()
                .where(db.runs.c.id == run.id, db.runs.c.status == "queued", db.runs.c.token == run.token)
                .values(status="starting", owner=self.id, token=run.token + 1, heartbeat_at=now, claimed_at=now)
            ).rowcount
            if not done:
                return None
        return self.cp.run(run.id)

    def _launch(self, run: Run) -> None:
        if self.executor == "celery":
            # the worker that takes it heartbeats into the control plane; a silent
            # one is reaped by any scheduler, like a local run
            self._send(run)
            self.lag.observe(max(0.0, time.time() - run.not_before))
            return
        url = self.engine.url.render_as_string(hide_password=False)
        process: _Process
        if _forkserver_available():
            process = _Forked(run, self.heartbeat, url, self.echo)
        else:
            env = dict(os.environ)
            env["TAPYARD_DATABASE_URL"] = url
            process = subprocess.Popen(
                [sys.executable, "-m", "tapyard.jobs._worker", str(run.id), str(run.token), str(self.heartbeat)],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=None if self.echo else subprocess.DEVNULL, start_new_session=True,
            )
        self.children[run.id] = _Child(run, process)
        self.lag.observe(max(0.0, time.time() - run.not_before))

    def _collect_children(self) -> None:
        for run_id, child in list(self.children.items()):
            code = child.process.poll()
            if code is None:
                continue
            del self.children[run_id]
            current = self.cp.run(run_id)
            if current.units is not None:
                continue  # split: its process is done, its units run on
            if current.status in ("starting", "running", "cancelling") and current.token == child.run.token:
                # the worker ended without recording an outcome (killed, crashed)
                how = f"signal {-code}" if code < 0 else f"exit code {code}"
                self._abandon(current, f"its process ended ({how}) without recording an outcome")

    # --- abandoned and timed-out runs ---------------------------------------------

    def _abandon(self, run: Run, why: str, status: str = "abandoned") -> None:
        if run.status == "cancelling":
            status, why = "cancelled", "cancelled; " + why
        job = self._job(run.job)
        # fenced on the status read too: a run a worker started meanwhile is not ended for its wait
        retry = self.cp.finish(run, status, error=why, spec=job.spec if job else None, expect=(run.status,))
        if retry is None:
            return
        log.warning("run %s of job %s %s: %s", run.id, run.job, status, why)
        if job is not None:
            from tapyard.jobs._alerts import alert_failure

            alert_failure(self.cp, job, self.cp.run(run.id), retry_id=retry or None)

    def _job(self, name: str) -> Job | None:
        plan = self.plans.get(name)
        if plan is not None:
            return plan.job
        with contextlib.suppress(JobNotFound):
            return self.cp.job(name)
        return None

    def _reap(self) -> None:
        now = time.time()
        silent = now - 1.5 * self.heartbeat
        # a worker has until its first beat to start Python and its connector
        unstarted = silent - self.start_allowance
        in_broker = self.executor == "celery"
        stale = [
            sa.and_(db.runs.c.status != "starting", db.runs.c.heartbeat_at < silent),
            sa.and_(db.runs.c.status == "starting", db.runs.c.heartbeat_at < unstarted),
            sa.and_(db.runs.c.deadline.is_not(None), db.runs.c.deadline < now - TIMEOUT_GRACE),
        ]
        if in_broker and self.queue_timeout > 0:
            # past the queue timeout a waiting run is looked at every pass: is any worker at work?
            stale.append(sa.and_(db.runs.c.status == "starting", db.runs.c.claimed_at < now - self.queue_timeout))
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(db.runs).where(
                    db.runs.c.status.in_(("starting", "running", "cancelling")),
                    db.runs.c.units.is_(None),  # a split run lives by its units (below)
                    sa.or_(*stale),
                )
            ).all()
        seen: list[float] = []  # when a worker was last seen at work, read once a pass
        for row in rows:
            run = Run.from_row(row)
            if in_broker and run.status == "starting":
                self._waiting(run, now, unstarted, seen)
                continue
            child = self.children.get(run.id)
            if run.deadline is not None and run.deadline < now - TIMEOUT_GRACE and (run.heartbeat_at or 0) >= silent:
                if child is not None:
                    child.process.kill()
                self._abandon(run, f"timed out; its process did not stop within {TIMEOUT_GRACE:.0f} s", "timed_out")
                continue
            if child is not None and child.process.poll() is None:
                child.process.kill()
            age = now - (run.heartbeat_at or run.created_at)
            self._abandon(run, f"no heartbeat for {age:.0f} s (its process died or hangs)")
        self._settle_split()

    def _waiting(self, run: Run, now: float, unstarted: float, seen: list[float]) -> None:
        """A run (a whole run or a unit of a spread run alike) sent to Celery that no
        worker has taken yet. It waits in the broker for as long as the workers are
        busy, which is no sign of a lost worker: it is not abandoned. It ends at its
        deadline (a unit's is its run's), or once it waited ``queue_timeout`` seconds
        while no worker took it or any other run (none serves the queue), both
        ``timed_out`` and retried as the job allows; until then its message is sent
        again once its last sending is ``start_allowance`` old (:meth:`_send_again`)."""
        claimed = run.claimed_at or run.created_at
        waited = now - claimed
        if run.deadline is not None and run.deadline < now:
            self._abandon(
                run, f"timed out before a worker took it: it waited {waited:.0f} s in the Celery queue and its "
                "run's deadline passed; start more tapyard workers (or raise --concurrency) or give the job more time",
                "timed_out",
            )
            return
        if self.queue_timeout > 0 and waited >= self.queue_timeout:
            if not seen:
                seen.append(self._worker_seen(now - self.queue_timeout))
            idle = now - max(claimed, seen[0])
            if idle >= self.queue_timeout:
                self._abandon(
                    run, f"waited {waited:.0f} s in the Celery queue with no worker taking it (no worker started, ran "
                    f"or ended any run for {idle:.0f} s); start tapyard worker processes on the broker in "
                    "TAPYARD_BROKER_URL, or raise the scheduler's --queue-timeout",
                    "timed_out",
                )
                return
        if (run.heartbeat_at or 0) < unstarted:
            self._send_again(run)

    def _worker_seen(self, since: float) -> float:
        """When a worker was last seen at work (0 when not since ``since``): the newest
        heartbeat of a run under way, or end of one that a worker started."""
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.select(sa.func.max(sa.func.coalesce(db.runs.c.ended_at, db.runs.c.heartbeat_at))).where(
                    db.runs.c.started_at.is_not(None),
                    db.runs.c.units.is_(None),  # a split run's own beat is its first worker's, long gone
                    sa.or_(db.runs.c.status.in_(("running", "cancelling")), db.runs.c.ended_at >= since),
                )
            ).scalar()
        return float(value or 0.0)

    def _send_again(self, run: Run) -> None:
        """Send the message of a run still waiting for a Celery worker again: a worker
        that died holding it took it along. The copy a worker takes second finds the run
        started and does nothing (the token fences it). Its ``heartbeat_at`` says when
        it was last sent."""
        with self.engine.begin() as conn:
            renewed = conn.execute(
                db.runs.update()
                .where(db.runs.c.id == run.id, db.runs.c.token == run.token, db.runs.c.status == "starting")
                .values(heartbeat_at=time.time())
            ).rowcount
        if renewed:
            self._send(run)

    def _send(self, run: Run) -> None:
        """Hand a claimed run to the Celery broker. A broker that cannot be reached does
        not stop the scheduler: the run waits as one whose message was lost, and is sent
        again at its next turn (:meth:`_waiting`)."""
        from tapyard.jobs._celery import send

        try:
            send(run.id, run.token, self.heartbeat)
        except Exception as exc:  # kombu's OperationalError, or whatever the transport raises
            import re

            said = re.sub(r"://[^@/\s]*@", "://***@", " ".join(str(exc).split()))[:200]  # no broker password
            log.warning(
                "run %s could not be sent to the broker (%s: %s); sent again in %.0f s",
                run.id, type(exc).__name__, said, 1.5 * self.heartbeat + self.start_allowance,
            )

    def _settle_split(self) -> None:
        """End the split runs none of whose units is left: the last unit to end does
        it, in the transaction that records its end; this catches a unit ended in
        another way (cancelled while queued, its job removed)."""
        unit = db.runs.alias("unit")
        with self.engine.connect() as conn:
            ids = conn.execute(
                sa.select(db.runs.c.id).where(
                    db.runs.c.status.in_(("starting", "running", "cancelling")),
                    db.runs.c.units.is_not(None),
                    ~sa.exists().where(
                        unit.c.parent_id == db.runs.c.id,
                        unit.c.status.in_(("queued", "starting", "running", "cancelling")),
                    ),
                )
            ).scalars().all()
        for parent_id in ids:
            self.cp.settle(int(parent_id))

    # --- the loop -----------------------------------------------------------------

    def _renew_lease(self) -> None:
        now = time.time()
        if now - self.lease_renewed < self.heartbeat / 3:
            return
        self.lease_renewed = now
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "running": len(self.children)})
        name = f"scheduler:{self.id}"
        with self.engine.begin() as conn:
            done = conn.execute(
                db.leases.update().where(db.leases.c.name == name)
                .values(expires_at=now + 3 * self.heartbeat, token=db.leases.c.token + 1, info=info)
            ).rowcount
            if not done:
                conn.execute(
                    db.leases.insert().values(name=name, owner=self.id, token=1, acquired_at=now,
                                              expires_at=now + 3 * self.heartbeat, info=info)
                )
            conn.execute(db.leases.delete().where(db.leases.c.expires_at < now - 86400))

    def once(self) -> dict[str, int]:
        """One pass: refresh jobs, create due ticks, reap, claim and start runs."""
        now = self.clock.timestamp()
        with self.engine.connect() as conn:
            self._refresh_jobs(conn)
        created = 0
        if not self.draining:
            due = self._due_ticks(now)
            if due:
                with self.engine.begin() as conn:
                    created = self._create_ticks(conn, due, now)
        self._collect_children()
        self._reap()
        started = self._claim()
        for run in started:
            self._launch(run)
        self._renew_lease()
        with self.engine.connect() as conn:
            # the next queued run that comes due (jitter, backoff): woken for it, not a poll later
            self.next_queued = conn.execute(
                sa.select(sa.func.min(db.runs.c.not_before)).where(
                    db.runs.c.status == "queued", db.runs.c.not_before > time.time()
                )
            ).scalar()
        return {"ticks": created, "started": len(started), "running": len(self.children)}

    def sleep_seconds(self) -> float:
        """Real seconds until the next thing to do (at most ``poll``)."""
        wait = self.poll
        if self.heap:
            wait = min(wait, self.clock.real_seconds(self.heap[0][0] - self.clock.timestamp()))
        if self.next_queued is not None:
            wait = min(wait, self.next_queued - time.time())
        return max(0.01, wait)

    def loop(self, stop: Callable[[], bool] = lambda: False) -> None:
        """Run until ``stop()`` or an interrupt (SIGTERM, Ctrl-C), then drain."""
        try:
            if _forkserver_available():
                # warm the fork server now, not at the first tick
                from multiprocessing import forkserver

                _fork_context()
                forkserver.ensure_running()
            while not stop():
                self.once()
                time.sleep(self.sleep_seconds())
        except KeyboardInterrupt:
            pass
        self.drain()

    def wait(self) -> None:
        """Wait for the runs this scheduler started to end, recording any that died."""
        while self.children:
            self._collect_children()
            time.sleep(0.1)

    def drain(self) -> None:
        """Stop taking work; let this scheduler's runs finish for up to ``drain`` seconds,
        then interrupt them (they checkpoint and are retried), then end them."""
        self.draining = True
        deadline = time.time() + self.drain_seconds
        while self.children and time.time() < deadline:
            self._collect_children()
            self._renew_lease()
            time.sleep(0.2)
        for child in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        stop_by = time.time() + 4.0
        while self.children and time.time() < stop_by:
            self._collect_children()
            time.sleep(0.1)
        for child in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                child.process.kill()
            child.process.wait()
        self._collect_children()
        with self.engine.begin() as conn:
            conn.execute(db.leases.delete().where(db.leases.c.name == f"scheduler:{self.id}"))
