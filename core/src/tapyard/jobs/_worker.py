"""One run of a job, in its own process (``python -m tapyard.jobs._worker RUN TOKEN``)
or in the foreground (``tapyard jobs run``).

The run holds its lease by heartbeats: every ``heartbeat`` seconds it renews
``runs.heartbeat_at``, fenced by its token. When the renewal finds the run
taken from it (marked abandoned, or its token moved on), the process leaves at
once without recording anything: a run that lost its lease can neither start
nor commit an outcome. When it finds ``cancelling`` (``tapyard runs cancel``),
it stops as Ctrl-C would. At its deadline it is interrupted the same way (the
sync engine rolls back the transaction under way; what it committed stays,
with the state to resume from) and is marked ``timed_out``; one that has not
stopped 4 seconds later is recorded as timed out and ended by force.

Every log line of the run is one JSON object with the run id, job, connector
and (where known) stream, scrubbed of secrets, written to the control plane
(``tapyard runs logs``) and, for a scheduler's runs, to standard error.
"""

from __future__ import annotations

import _thread
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa

from tapyard.base import TraceIdFilter, tracing_enabled
from tapyard.jobs import _db as db
from tapyard.jobs._store import ControlPlane, Job, Run

__all__ = ["HARD_STOP_SECONDS", "execute"]

log = logging.getLogger("tapyard.jobs")

#: seconds after its deadline at which a run that did not stop is ended by force
HARD_STOP_SECONDS = 4.0
#: exit codes of a worker
EXIT_LOST = 75
EXIT_TIMED_OUT = 124


def _redact(text: str) -> str:
    from tapyard_credentials import redact

    return redact(text)


class RunLog(logging.Handler):
    """Log records of a run as JSON lines, buffered for the control plane."""

    def __init__(self, run: Run, job: Job, echo: bool) -> None:
        super().__init__(logging.INFO)
        self.base = {"run_id": run.id, "job": job.name, "connector": job.spec.connector}
        self.echo = echo
        self.pending: list[tuple[float, str, str]] = []
        self.guard = threading.Lock()

    def line(self, level: str, message: str, **fields: Any) -> None:
        now = time.time()
        data = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z",
            "level": level,
            **self.base,
            "stream": fields.pop("stream", None),
            "message": _redact(message)[:2000],
            **fields,
        }
        text = _redact(json.dumps(data, default=str))
        with self.guard:
            self.pending.append((now, level, text))
        if self.echo:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(text + "\n")
                sys.stderr.flush()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("httpx", "httpcore")) and record.levelno < logging.WARNING:
            return  # one line per request would drown the run's log (the run counts them)
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        ids: dict[str, str] = {}
        if tracing_enabled():  # the trace this line belongs to, to find its spans
            TraceIdFilter().filter(record)
            trace_id, span_id = getattr(record, "trace_id", ""), getattr(record, "span_id", "")
            ids = {"trace_id": trace_id, "span_id": span_id} if trace_id else {}
        self.line(
            record.levelname.lower(), message, logger=record.name, stream=getattr(record, "stream", None), **ids
        )

    def take(self) -> list[tuple[float, str, str]]:
        with self.guard:
            out, self.pending = self.pending, []
        return out


class _Watch:
    """The run's heartbeat and deadline, kept by a thread beside the sync."""

    def __init__(self, cp: ControlPlane, run: Run, runlog: RunLog, heartbeat: float, on_lost: Callable[[], None]) -> None:
        self.cp, self.run, self.runlog, self.heartbeat = cp, run, runlog, heartbeat
        self.on_lost = on_lost
        self.reason: str | None = None  # timed_out | cancelled, once the run was asked to stop
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"tapyard-run-{run.id}", daemon=True)

    def _interrupt(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            _thread.interrupt_main(signal.SIGINT)

    def _beat(self) -> None:
        self.cp.add_logs(self.run.id, self.runlog.take())
        with self.cp.engine.begin() as conn:
            renewed = conn.execute(
                db.runs.update()
                .where(db.runs.c.id == self.run.id, db.runs.c.token == self.run.token, db.runs.c.status == "running")
                .values(heartbeat_at=time.time())
            ).rowcount
            if renewed:
                return
            status = conn.execute(sa.select(db.runs.c.status, db.runs.c.token).where(db.runs.c.id == self.run.id)).first()
        if status is not None and status.status == "cancelling" and status.token == self.run.token:
            self._interrupt("cancelled")
        else:
            self.on_lost()

    def _loop(self) -> None:
        next_beat = time.time() + self.heartbeat
        deadline = self.run.deadline
        while not self.stop.wait(min(0.25, self.heartbeat)):
            now = time.time()
            if deadline is not None and now >= deadline:
                self._interrupt("timed_out")
                if now >= deadline + HARD_STOP_SECONDS:
                    self.runlog.line("error", "the run did not stop within 4 s of its deadline; ending it")
                    self.cp.add_logs(self.run.id, self.runlog.take())
                    self.cp.finish(self.run, "timed_out", error=_timeout_error(self.run), spec=None)
                    os._exit(EXIT_TIMED_OUT)
            if now >= next_beat:
                next_beat = now + self.heartbeat
                try:
                    self._beat()
                except sa.exc.SQLAlchemyError as exc:
                    self.runlog.line("warning", f"heartbeat failed: {type(exc).__name__}")

    def __enter__(self) -> _Watch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


def _timeout_error(run: Run) -> str:
    limit = (run.deadline or 0) - (run.started_at or run.deadline or 0)
    from tapyard.jobs._spec import format_duration

    return f"timed out after {format_duration(limit)}; what it committed is kept and the next run resumes from it"


def start(cp: ControlPlane, run: Run, pid: int) -> Run | None:
    """Move a claimed run (``starting``, with ``run.token``) to ``running``; None when
    the lease was lost before it could start (fenced)."""
    now = time.time()
    job = cp.job(run.job)
    deadline = None if job.spec.timeout is None else now + job.spec.timeout
    if run.parent_id is not None:  # a unit has its run's time, not a timeout of its own
        deadline = cp.run(run.parent_id).deadline
    with cp.engine.begin() as conn:
        done = conn.execute(
            db.runs.update()
            .where(db.runs.c.id == run.id, db.runs.c.token == run.token, db.runs.c.status == "starting")
            .values(status="running", started_at=now, heartbeat_at=now, pid=pid, deadline=deadline)
        ).rowcount
    return cp.run(run.id) if done else None


def _figures(results: dict[str, Any], http: dict[str, int]) -> dict[str, Any]:
    streams = [
        {
            "name": r.name, "status": r.status, "records": r.records, "dead_letters": r.dead_letters,
            "inserted": r.inserted, "updated": r.updated, "deleted": r.deleted, "pages": r.pages,
            "seconds": round(r.seconds, 3), "error": _redact(r.error)[:500] if r.error else None,
        }
        for r in results.values()
    ]
    return {
        "records": sum(s["records"] for s in streams),
        "dead_letters": sum(s["dead_letters"] for s in streams),
        "requests": int(http.get("requests", 0)),
        "http_retries": int(http.get("retries", 0)),
        "streams": json.dumps(streams),
        "http": json.dumps({k: int(v) for k, v in http.items()}),
    }


@contextlib.contextmanager
def _logging_to(handler: RunLog) -> Iterator[None]:
    root = logging.getLogger()
    previous = root.level
    # The run's log takes INFO; the handlers already there keep showing what they showed.
    raised = [h for h in root.handlers if h.level == logging.NOTSET]
    for other in raised:
        other.setLevel(previous)
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        for other in raised:
            other.setLevel(logging.NOTSET)


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGINT handled by Python while the run goes on: a timeout or a cancel stops the
    run by raising it in the main thread (as Ctrl-C would; the sync engine holds it
    while it commits), which does nothing when the process inherited SIGINT ignored
    (started in the background by a shell, or by nohup)."""
    main = threading.current_thread() is threading.main_thread()
    if not main or callable(signal.getsignal(signal.SIGINT)):
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def execute(
    cp: ControlPlane,
    run: Run,
    *,
    heartbeat: float = 15.0,
    progress: Callable[[str, Any], None] | None = None,
    echo: bool = False,
    on_lost: Callable[[], None] | None = None,
    spread: bool = False,
) -> Run:
    """Run ``run`` (already ``running``, with its token) to its end and record the
    outcome; the run as recorded. ``progress`` sees the engine's events too.

    With ``spread`` (a scheduler's run) and a job that asks for it, the run is
    split instead: its units (streams or partitions) are queued as runs of their
    own for the scheduler to hand out, and the run is left ``running`` until the
    last of them ends (:meth:`ControlPlane.settle`). A unit (``run.unit``) reads
    only its streams or partitions and commits their state alone."""
    import tapyard

    job = cp.job(run.job)
    spec = job.spec
    runlog = RunLog(run, job, echo)
    results: dict[str, Any] = {}
    http: dict[str, int] = {}

    def lost() -> None:
        runlog.line("error", "the run lost its lease (another scheduler took it over); stopping without recording")
        with contextlib.suppress(Exception):
            cp.add_logs(run.id, runlog.take())
        if on_lost is not None:
            on_lost()
        os._exit(EXIT_LOST)

    def seen(event: str, result: Any) -> None:
        results[result.name] = result
        if event == "done":
            runlog.line(
                "info", f"stream {result.name} {result.status}: {result.records} records, {result.dead_letters} dead letters",
                stream=result.name, event="stream_done", records=result.records, status=result.status,
            )
        if progress is not None:
            progress(event, result)

    status, error = "failed", None
    credential_failed = False
    unit = json.loads(run.unit) if run.unit else None
    planned: list[dict[str, list[str]]] | None = None
    watch = _Watch(cp, run, runlog, heartbeat, lost)
    with _logging_to(runlog), _interruptible(), watch:
        runlog.line("info", f"run {run.id} of job {job.name} started (attempt {run.attempt}, {run.trigger})", event="start")
        try:
            with contextlib.ExitStack() as stack:
                credentials = None
                if spec.creds:
                    connector = tapyard.get_connector(spec.connector)
                    vault = stack.enter_context(tapyard.open_vault())
                    credentials = tapyard.load_credentials(vault, spec.creds, connector, actor=f"job:{job.name}")
                if unit is None and spread and spec.spread != "none":
                    planned = _plan(spec, credentials)
                    raise _Split
                result = tapyard.sync(
                    spec.connector, dict(spec.config), to=spec.to,
                    streams=unit["streams"] if unit else spec.streams,
                    partitions=unit.get("partitions") if unit else None,
                    credentials=credentials, progress=seen, wait=30.0,
                )
                http = dict(result.http)
                results = {s.name: s for s in result.streams}
            failed = [s for s in result.streams if s.status != "ok"]
            credential_failed = any(s.credential_refused for s in failed)
            if failed:
                first = failed[0]
                more = f" (and {len(failed) - 1} more streams)" if len(failed) > 1 else ""
                error = f"stream {first.name!r} {first.status}: {first.error or 'cancelled'}{more}"
            else:
                status = "ok"
        except _Split:
            pass
        except KeyboardInterrupt:
            if watch.reason == "timed_out":
                status, error = "timed_out", _timeout_error(run)
            elif watch.reason == "cancelled":
                status, error = "cancelled", "cancelled by tapyard runs cancel"
            else:
                status, error = "interrupted", "interrupted (SIGINT or SIGTERM); the next attempt resumes from what was committed"
        except tapyard.AuthenticationError as exc:
            error, credential_failed = str(exc), True
        except tapyard.TapyardError as exc:
            error = str(exc)
        except Exception as exc:
            if _vault_error(exc):
                error, credential_failed = str(exc), True
            else:
                error = f"unexpected {type(exc).__name__}: {exc}"
                log.debug("run %s failed", run.id, exc_info=True)
        watch.stop.set()
        if planned is not None:
            return _split(cp, run, runlog, planned, on_lost)
        error = _redact(error)[:2000] if error else None
        runlog.line("info" if status == "ok" else "error", f"run {run.id} ended {status}" + (f": {error}" if error else ""), event="end", status=status)
    cp.add_logs(run.id, runlog.take())
    retry = cp.finish(run, status, error=error, figures=_figures(results, http), spec=spec)
    if retry is None:
        os._exit(EXIT_LOST) if on_lost is None else on_lost()
    final = cp.run(run.id)
    if status != "ok":
        from tapyard.jobs._alerts import alert_failure

        alert_failure(cp, job, final, retry_id=retry or None, credential=credential_failed)
    return final


class _Split(Exception):
    """The run was split into units (it syncs nothing itself)."""


def _plan(spec: Any, credentials: Any) -> list[dict[str, list[str]]]:
    """The units of a spread job's run (its destination's tables made ready for them)."""
    from tapyard.engine import plan_units
    from tapyard.jobs._checks import spread_refusal

    refused = spread_refusal(spec)
    if refused:
        from tapyard.base import ConfigError

        raise ConfigError(refused)
    return plan_units(
        spec.connector, dict(spec.config), by=spec.spread, to=spec.to, streams=spec.streams,
        credentials=credentials, wait=30.0,
    )


def _split(
    cp: ControlPlane, run: Run, runlog: RunLog, units: list[dict[str, list[str]]], on_lost: Callable[[], None] | None
) -> Run:
    """Queue ``units`` as the run's units (fenced by its token); the run as recorded."""
    what = "partitions" if any("partitions" in u for u in units) else "streams"
    runlog.line(
        "info", f"run {run.id} split into {len(units)} units ({what}); each is a run of its own, "
        "and this run ends when the last of them does", event="split", units=len(units),
    )
    cp.add_logs(run.id, runlog.take())
    if not cp.split(run, units):
        os._exit(EXIT_LOST) if on_lost is None else on_lost()
    return cp.run(run.id)


def _vault_error(exc: BaseException) -> bool:
    module = sys.modules.get("tapyard_credentials._exceptions")
    return module is not None and isinstance(exc, module.VaultError)


def _on_term(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_claimed(run_id: int, token: int, heartbeat: float, url: str | None = None) -> int:
    """Start and execute a claimed run in this process; the exit code (0 ok, 124 timed
    out, 75 lease lost, 1 otherwise)."""
    signal.signal(signal.SIGTERM, _on_term)
    cp = ControlPlane(url)
    claimed = cp.run(run_id)
    if claimed.token != token:
        return EXIT_LOST
    running = start(cp, claimed, os.getpid())
    if running is None:
        return EXIT_LOST
    final = execute(cp, running, heartbeat=heartbeat, echo=True, spread=True)
    if final.units is not None and final.status == "running":
        return 0  # split: its units run on
    return {"ok": 0, "timed_out": EXIT_TIMED_OUT}.get(final.status, 1)


def forked(run_id: int, token: int, heartbeat: float, url: str, environ: dict[str, str], echo: bool) -> None:
    """The entry point of a run forked from the scheduler's warm fork server: the
    scheduler's environment as it is now, a session of its own, then :func:`run_claimed`."""
    os.setsid()
    os.environ.clear()
    os.environ.update(environ)
    if not echo:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    from tapyard.jobs import _db

    _db.dispose_engines()  # nothing pooled crosses a fork
    code = run_claimed(run_id, token, heartbeat, url)
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    """``python -m tapyard.jobs._worker RUN_ID TOKEN HEARTBEAT``: start and execute a claimed run."""
    args = sys.argv[1:] if argv is None else argv
    return run_claimed(int(args[0]), int(args[1]), float(args[2]))


if __name__ == "__main__":
    sys.exit(main())
