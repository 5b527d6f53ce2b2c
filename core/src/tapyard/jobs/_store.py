"""Reading and changing the control plane: jobs, runs, logs (what the CLI and the
scheduler share). Every change that must not race is one transaction with a
compare-and-set on the run's fencing token."""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from tapyard import TapyardError
from tapyard.jobs import _db as db
from tapyard.jobs._clock import clock
from tapyard.jobs._spec import JobSpec

__all__ = ["ACTIVE", "FINISHED", "ControlPlane", "Job", "JobNotFound", "Run", "RunNotFound"]

#: statuses of a run that has not ended
ACTIVE = ("queued", "starting", "running", "cancelling")
#: statuses of a run that has ended
FINISHED = ("ok", "failed", "timed_out", "abandoned", "cancelled", "interrupted")
#: ended runs that a retry may follow
RETRYABLE = ("failed", "timed_out", "abandoned", "interrupted")


class JobNotFound(TapyardError):
    """No job by that name (message safe to show)."""


class RunNotFound(TapyardError):
    """No run by that id (message safe to show)."""


class JobExists(TapyardError):
    """A job by that name exists already (message safe to show)."""


@dataclasses.dataclass(frozen=True)
class Job:
    """A job as the control plane holds it."""

    spec: JobSpec
    paused: bool
    created_at: float
    updated_at: float
    since: float

    @property
    def name(self) -> str:
        return self.spec.name


@dataclasses.dataclass(frozen=True)
class Run:
    """One attempt at running a job: a row of ``runs``."""

    id: int
    job: str
    tick_id: int | None
    scheduled_at: int | None
    attempt: int
    trigger: str
    status: str
    credential: str | None
    created_at: float
    not_before: float
    started_at: float | None
    ended_at: float | None
    claimed_at: float | None
    heartbeat_at: float | None
    deadline: float | None
    owner: str | None
    token: int
    pid: int | None
    records: int
    dead_letters: int
    requests: int
    http_retries: int
    streams: str | None
    http: str | None
    error: str | None
    retry_of: int | None
    #: a unit of a spread run: its parent run, and what it reads (JSON: ``streams``
    #: and, for a partition, ``partitions``, their state names)
    parent_id: int | None = None
    unit: str | None = None
    #: a spread run (the parent) once split: how many units it has
    units: int | None = None

    @classmethod
    def from_row(cls, row: Any) -> Run:
        return cls(**{f.name: getattr(row, f.name) for f in dataclasses.fields(cls)})

    @property
    def stream_figures(self) -> list[dict[str, Any]]:
        return list(json.loads(self.streams)) if self.streams else []

    @property
    def seconds(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.ended_at or time.time()) - self.started_at

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["streams"] = self.stream_figures
        data["http"] = json.loads(self.http) if self.http else {}
        data["unit"] = json.loads(self.unit) if self.unit else None
        data.pop("token")
        data["seconds"] = None if self.seconds is None else round(self.seconds, 3)
        for key in ("created_at", "not_before", "claimed_at", "started_at", "ended_at", "heartbeat_at", "deadline"):
            data[key] = iso(data[key])
        data["scheduled_at"] = iso(self.scheduled_at)
        return data


def iso(epoch: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC (None stays None)."""
    if epoch is None:
        return None
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds")


def backoff_delay(spec: JobSpec, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1``: full jitter over an exponential
    backoff (``backoff * 2**(attempt-1)``, at most ``backoff_max``)."""
    ceiling = min(spec.backoff_max, spec.backoff * (2 ** max(0, attempt - 1)))
    return (rng or random).uniform(0, ceiling)


class ControlPlane:
    """The control plane at ``url`` (default: ``TAPYARD_DATABASE_URL``, else
    ``control.db`` in the data directory), migrated on open."""

    def __init__(self, url: str | None = None) -> None:
        self.engine = db.engine_for(url)

    @property
    def url(self) -> str:
        """The database URL, any password hidden (for display)."""
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def url_with_password(self) -> str:
        """The database URL as given (for a child process)."""
        return self.engine.url.render_as_string(hide_password=False)

    # --- jobs ---------------------------------------------------------------------

    def jobs(self) -> list[Job]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(db.jobs).order_by(db.jobs.c.name)).all()
        return [_job(r) for r in rows]

    def job(self, name: str) -> Job:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(db.jobs).where(db.jobs.c.name == name)).first()
        if row is None:
            raise JobNotFound(f"no job named {name[:80]!r}; see tapyard jobs list")
        return _job(row)

    def put_job(self, spec: JobSpec, *, create: bool | None = None) -> str:
        """Store ``spec``: ``created``, ``changed`` or ``unchanged``. ``create=True``
        refuses an existing name, ``False`` a missing one."""
        now = clock().timestamp()
        with self.engine.begin() as conn:
            return self._put(conn, spec, now, create)

    def _put(self, conn: sa.Connection, spec: JobSpec, now: float, create: bool | None) -> str:
        row = conn.execute(sa.select(db.jobs.c.spec).where(db.jobs.c.name == spec.name)).first()
        if row is None:
            if create is False:
                raise JobNotFound(f"no job named {spec.name!r}; add it with tapyard jobs add")
            conn.execute(
                db.jobs.insert().values(
                    name=spec.name, spec=spec.canonical(), paused=False, created_at=now, updated_at=now, since=now
                )
            )
            return "created"
        if create:
            raise JobExists(f"job {spec.name!r} exists; change it with tapyard jobs edit, or remove it first")
        if JobSpec.model_validate_json(row.spec).canonical() == spec.canonical():
            return "unchanged"
        conn.execute(
            db.jobs.update().where(db.jobs.c.name == spec.name).values(spec=spec.canonical(), updated_at=now)
        )
        return "changed"

    def apply(self, specs: Sequence[JobSpec], *, prune: bool, dry_run: bool = False) -> dict[str, list[str]]:
        """Make the stored jobs match ``specs`` in one transaction; what was created,
        changed, unchanged and (with ``prune``) removed."""
        now = clock().timestamp()
        out: dict[str, list[str]] = {"created": [], "changed": [], "unchanged": [], "removed": []}
        with self.engine.connect() as conn, conn.begin() as tx:
            for spec in specs:
                out[self._put(conn, spec, now, None)].append(spec.name)
            if prune:
                wanted = {s.name for s in specs}
                names = conn.execute(sa.select(db.jobs.c.name)).scalars().all()
                for name in sorted(set(names) - wanted):
                    conn.execute(db.jobs.delete().where(db.jobs.c.name == name))
                    out["removed"].append(name)
            if dry_run:
                tx.rollback()
        return out

    def remove_job(self, name: str) -> None:
        with self.engine.begin() as conn:
            if not conn.execute(db.jobs.delete().where(db.jobs.c.name == name)).rowcount:
                raise JobNotFound(f"no job named {name[:80]!r}; see tapyard jobs list")
            conn.execute(
                db.runs.update()
                .where(db.runs.c.job == name, db.runs.c.status == "queued")
                .values(status="cancelled", ended_at=time.time(), error="the job was removed")
            )

    def set_paused(self, name: str, paused: bool) -> bool:
        """Pause or resume; whether anything changed. Resuming does not catch up the
        ticks that fell while paused."""
        now = clock().timestamp()
        values: dict[str, Any] = {"paused": paused, "updated_at": now}
        if not paused:
            values["since"] = now
        with self.engine.begin() as conn:
            current = conn.execute(sa.select(db.jobs.c.paused).where(db.jobs.c.name == name)).first()
            if current is None:
                raise JobNotFound(f"no job named {name[:80]!r}; see tapyard jobs list")
            if bool(current.paused) == paused:
                return False
            conn.execute(db.jobs.update().where(db.jobs.c.name == name).values(**values))
        return True

    # --- runs ---------------------------------------------------------------------

    def runs(
        self,
        *,
        job: str | None = None,
        statuses: Iterable[str] | None = None,
        since: float | None = None,
        limit: int = 50,
    ) -> list[Run]:
        query = sa.select(db.runs).order_by(db.runs.c.id.desc()).limit(limit)
        if job is not None:
            query = query.where(db.runs.c.job == job)
        if statuses:
            query = query.where(db.runs.c.status.in_(list(statuses)))
        if since is not None:
            query = query.where(db.runs.c.created_at >= since)
        with self.engine.connect() as conn:
            return [Run.from_row(r) for r in conn.execute(query).all()]

    def run(self, run_id: int) -> Run:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(db.runs).where(db.runs.c.id == run_id)).first()
        if row is None:
            raise RunNotFound(f"no run with id {run_id}; see tapyard runs list")
        return Run.from_row(row)

    def new_run(self, job: Job, *, trigger: str, owner: str) -> Run:
        """A run of ``job`` started now by ``owner`` (``jobs run``): created as ``starting``
        with a fresh token, as a scheduler's claim would leave it."""
        now = time.time()
        with self.engine.begin() as conn:
            run_id = conn.execute(
                db.runs.insert().values(
                    job=job.name, attempt=1, trigger=trigger, status="starting", credential=job.spec.creds,
                    created_at=now, not_before=now, claimed_at=now, heartbeat_at=now, owner=owner, token=1,
                    records=0, dead_letters=0, requests=0, http_retries=0,
                    deadline=None if job.spec.timeout is None else now + job.spec.timeout,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        return self.run(int(run_id))

    def cancel(self, run_id: int) -> str:
        """Cancel a run: one not started yet (queued, or claimed and ``starting``: its
        process or Celery worker has not taken it) at once, a running one by asking it
        to stop (it sees ``cancelling`` at its next heartbeat). The status it now has."""
        now = time.time()
        with self.engine.begin() as conn:
            # locked: a worker starting it now waits, then finds it cancelled (fenced)
            row = conn.execute(
                sa.select(db.runs.c.status, db.runs.c.token).where(db.runs.c.id == run_id).with_for_update()
            ).first()
            if row is None:
                raise RunNotFound(f"no run with id {run_id}; see tapyard runs list")
            if row.status in ("queued", "starting"):
                # a worker that takes it later cannot start it: its start needs status starting
                conn.execute(
                    db.runs.update().where(db.runs.c.id == run_id, db.runs.c.status == row.status)
                    .values(status="cancelled", ended_at=now, error="cancelled before it started",
                            token=row.token + 1 if row.status == "starting" else row.token)
                )
                return "cancelled"
            if row.status == "running":
                conn.execute(
                    db.runs.update().where(db.runs.c.id == run_id, db.runs.c.status == row.status)
                    .values(status="cancelling")
                )
                # a spread run's units stop with it: those not started yet at once, the
                # others at their next heartbeat; the last to end settles the run
                conn.execute(
                    db.runs.update().where(db.runs.c.parent_id == run_id, db.runs.c.status.in_(("queued", "starting")))
                    .values(status="cancelled", ended_at=now, error="its run was cancelled", token=db.runs.c.token + 1)
                )
                conn.execute(
                    db.runs.update().where(db.runs.c.parent_id == run_id, db.runs.c.status == "running")
                    .values(status="cancelling")
                )
                self._settle(conn, run_id)
                return str(conn.execute(sa.select(db.runs.c.status).where(db.runs.c.id == run_id)).scalar())
            return str(row.status)

    def finish(
        self,
        run: Run,
        status: str,
        *,
        error: str | None = None,
        figures: dict[str, Any] | None = None,
        spec: JobSpec | None = None,
        expect: Sequence[str] = ACTIVE,
    ) -> int | None:
        """Record that ``run`` (as read, with its token) ended with ``status``; queue a
        retry when the job allows one. Fenced: nothing happens, and None is returned,
        when another party changed the run since (its token moved on, or its status
        is no longer one of ``expect``).
        Returns the retry's id, 0 when no retry follows, None when fenced out.

        A unit of a spread run is retried alone (a unit that timed out met its
        run's deadline and is not); when it ends for good and none of its run's
        units is left, the run ends in the same transaction (:meth:`settle`)."""
        now = time.time()
        values: dict[str, Any] = {"status": status, "ended_at": now, "error": error, "token": run.token + 1}
        values.update(figures or {})
        with self.engine.begin() as conn:
            done = conn.execute(
                db.runs.update()
                .where(db.runs.c.id == run.id, db.runs.c.token == run.token, db.runs.c.status.in_(list(expect)))
                .values(**values)
            ).rowcount
            if not done:
                return None
            retry = 0
            # a unit that timed out met its run's deadline: a retry would too
            timed_out_unit = run.parent_id is not None and status == "timed_out"
            if spec is not None and status in RETRYABLE and run.attempt <= spec.retries and not timed_out_unit:
                retry = int(conn.execute(
                    db.runs.insert().values(
                        job=run.job, tick_id=run.tick_id, scheduled_at=run.scheduled_at, attempt=run.attempt + 1,
                        trigger="retry", status="queued", credential=run.credential, created_at=now,
                        not_before=now + backoff_delay(spec, run.attempt), token=0, records=0, dead_letters=0,
                        requests=0, http_retries=0, retry_of=run.id, parent_id=run.parent_id, unit=run.unit,
                    )
                ).inserted_primary_key[0])  # type: ignore[index]
            if run.parent_id is not None and not retry:
                self._settle(conn, run.parent_id)
            return retry

    # --- spread runs ----------------------------------------------------------------

    def split(self, run: Run, units: Sequence[Mapping[str, Any]]) -> bool:
        """Split the running ``run`` (as read, with its token) into ``units``: each a
        queued run of the same job naming ``run`` as its parent, claimed and leased
        like any run. Fenced: False, and nothing queued, when the run was taken
        from its owner since."""
        now = time.time()
        with self.engine.begin() as conn:
            done = conn.execute(
                db.runs.update()
                .where(db.runs.c.id == run.id, db.runs.c.token == run.token, db.runs.c.status == "running")
                .values(units=len(units), heartbeat_at=now)
            ).rowcount
            if not done:
                return False
            if units:
                conn.execute(db.runs.insert(), [
                    {
                        "job": run.job, "tick_id": run.tick_id, "scheduled_at": run.scheduled_at, "attempt": 1,
                        "trigger": "unit", "status": "queued", "credential": run.credential, "created_at": now,
                        "not_before": now, "token": 0, "records": 0, "dead_letters": 0, "requests": 0,
                        "http_retries": 0, "parent_id": run.id, "deadline": run.deadline, "unit": json.dumps(dict(unit), sort_keys=True),
                    }
                    for unit in units
                ])
            else:
                self._settle(conn, run.id)
        return True

    def settle(self, parent_id: int) -> bool:
        """End the spread run ``parent_id`` if none of its units is left to run: its
        status and figures are its units'. Whether it ended now."""
        with self.engine.begin() as conn:
            return self._settle(conn, parent_id)

    def _settle(self, conn: sa.Connection, parent_id: int) -> bool:
        query = sa.select(db.runs).where(db.runs.c.id == parent_id)
        if self.engine.dialect.name == "postgresql":
            query = query.with_for_update()  # the last two units to end settle once
        row = conn.execute(query).first()
        if row is None or row.status not in ACTIVE or row.units is None:
            return False
        units = [Run.from_row(r) for r in conn.execute(
            sa.select(db.runs).where(db.runs.c.parent_id == parent_id).order_by(db.runs.c.id)
        ).all()]
        if any(u.status in ACTIVE for u in units):
            return False
        last: dict[str, Run] = {}
        for unit in units:  # a unit's latest attempt says how it ended
            last[unit.unit or ""] = unit
        ended = list(last.values())
        status, error = _outcome(row.status, ended)
        figures = _aggregate(ended)
        conn.execute(
            db.runs.update()
            .where(db.runs.c.id == parent_id, db.runs.c.token == row.token, db.runs.c.status.in_(ACTIVE))
            .values(status=status, ended_at=time.time(), error=error, token=row.token + 1, **figures)
        )
        return True

    # --- logs ---------------------------------------------------------------------

    def add_logs(self, run_id: int, lines: Sequence[tuple[float, str, str]]) -> None:
        if not lines:
            return
        with self.engine.begin() as conn:
            conn.execute(
                db.logs.insert(), [{"run_id": run_id, "at": at, "level": level, "line": line} for at, level, line in lines]
            )

    def logs(self, run_id: int, after: int = 0) -> list[tuple[int, str]]:
        """Log lines of ``run_id`` with ids past ``after``: (id, JSON line)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(db.logs.c.id, db.logs.c.line)
                .where(db.logs.c.run_id == run_id, db.logs.c.id > after)
                .order_by(db.logs.c.id)
            ).all()
        return [(int(r.id), str(r.line)) for r in rows]

    def last_runs(self) -> dict[str, Run]:
        """Each job's newest run that has ended."""
        latest = (
            sa.select(db.runs.c.job, sa.func.max(db.runs.c.id).label("id"))
            .where(db.runs.c.status.in_(FINISHED), db.runs.c.parent_id.is_(None))
            .group_by(db.runs.c.job)
            .subquery()
        )
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(db.runs).join(latest, latest.c.id == db.runs.c.id)).all()
        return {r.job: Run.from_row(r) for r in rows}

    def live_schedulers(self) -> list[dict[str, Any]]:
        now = time.time()
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(db.leases).where(db.leases.c.name.like("scheduler:%"), db.leases.c.expires_at > now)
            ).all()
        return [{"id": r.owner, "since": iso(r.acquired_at), "info": json.loads(r.info or "{}")} for r in rows]


def _outcome(parent_status: str, units: Sequence[Run]) -> tuple[str, str | None]:
    """A spread run's status and error from how its units (their last attempts) ended."""
    if parent_status == "cancelling":
        return "cancelled", "cancelled by tapyard runs cancel"
    bad = [u for u in units if u.status != "ok"]
    if not bad:
        return "ok", None
    statuses = {u.status for u in bad}
    status = "timed_out" if "timed_out" in statuses else "cancelled" if statuses == {"cancelled"} else "failed"
    first = bad[0]
    what = ", ".join(json.loads(first.unit or "{}").get("partitions") or json.loads(first.unit or "{}").get("streams") or [])
    return status, f"{len(bad)} of {len(units)} units did not end ok; unit run {first.id} ({what[:200]}) {first.status}: {(first.error or '')[:1500]}"


def _aggregate(units: Sequence[Run]) -> dict[str, Any]:
    """A spread run's figures: its units' (their last attempts) added up, one entry per stream."""
    streams: dict[str, dict[str, Any]] = {}
    rank = {"ok": 0, "cancelled": 1, "failed": 2}
    for unit in units:
        for figures in unit.stream_figures:
            name = str(figures.get("name"))
            into = streams.get(name)
            if into is None:
                streams[name] = dict(figures)
                continue
            for key in ("records", "dead_letters", "inserted", "updated", "deleted", "pages", "seconds"):
                a, b = into.get(key), figures.get(key)
                into[key] = None if a is None or b is None else a + b
            if rank.get(str(figures.get("status")), 2) > rank.get(str(into.get("status")), 2):
                into["status"], into["error"] = figures.get("status"), figures.get("error")
    http: dict[str, int] = {}
    for unit in units:
        for key, value in (json.loads(unit.http) if unit.http else {}).items():
            http[key] = http.get(key, 0) + int(value)
    return {
        "records": sum(u.records for u in units),
        "dead_letters": sum(u.dead_letters for u in units),
        "requests": sum(u.requests for u in units),
        "http_retries": sum(u.http_retries for u in units),
        "streams": json.dumps(list(streams.values())),
        "http": json.dumps(http),
    }


def _job(row: Any) -> Job:
    return Job(
        spec=JobSpec.model_validate_json(row.spec),
        paused=bool(row.paused),
        created_at=row.created_at,
        updated_at=row.updated_at,
        since=row.since,
    )
