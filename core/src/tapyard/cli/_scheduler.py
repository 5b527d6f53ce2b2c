"""``tapyard scheduler run`` and ``tapyard status``."""

from __future__ import annotations

import time
from typing import Any

import typer

from tapyard.cli._output import console, print_json

group = typer.Typer(help="The scheduler: fires jobs on their schedules and runs them.", no_args_is_help=True, rich_markup_mode=None)


@group.command("run")
def run(
    once: bool = typer.Option(False, "--once", help="One pass (create due ticks, start what is due, reap), wait for the runs it started, and exit."),
    max_runs: int = typer.Option(8, "--max-runs", metavar="N", min=1, max=10_000, help="Runs this scheduler runs at once."),
    per_credential: int = typer.Option(2, "--per-credential", metavar="N", min=0, help="Runs of one credential at once, over every scheduler (0: no limit)."),
    heartbeat: float = typer.Option(15.0, "--heartbeat", metavar="SECONDS", min=0.2, help="Heartbeat interval of runs; a run silent for two is abandoned."),
    poll: float = typer.Option(1.0, "--poll", metavar="SECONDS", min=0.01, max=60, help="How often the control plane is read."),
    drain: float = typer.Option(60.0, "--drain", metavar="SECONDS", min=0, help="On SIGTERM, how long runs may finish before they are interrupted."),
    metrics_port: int | None = typer.Option(None, "--metrics-port", metavar="PORT", min=0, max=65535, help="Serve Prometheus metrics on this port."),
    metrics_host: str = typer.Option("127.0.0.1", "--metrics-host", metavar="ADDR", help="Address the metrics server binds."),
    executor: str = typer.Option(
        None, "--executor", metavar="local|celery",
        help="Where runs run: local processes, or Celery workers (tapyard worker) through TAPYARD_BROKER_URL. Default: TAPYARD_EXECUTOR, else local.",
    ),
    start_allowance: float = typer.Option(
        30.0, "--start-allowance", metavar="SECONDS", min=0, envvar="TAPYARD_START_ALLOWANCE",
        help="How long a claimed run's process may take to start before it is abandoned; with Celery, how often the message of a run no worker took yet is sent again.",
    ),
    queue_timeout: float = typer.Option(
        600.0, "--queue-timeout", metavar="SECONDS", min=0, envvar="TAPYARD_QUEUE_TIMEOUT",
        help="Celery: a run that waited this long in the queue while no worker took any run ends timed_out (0: never). Waiting for busy workers does not count.",
    ),
) -> None:
    """Run the scheduler in the foreground until SIGTERM or Ctrl-C (then drain)."""
    import os

    from tapyard import ConfigError
    from tapyard.cli._jobs import _cp
    from tapyard.jobs import Scheduler

    executor = executor or os.environ.get("TAPYARD_EXECUTOR") or "local"
    if executor not in ("local", "celery"):
        raise ConfigError(f"unknown executor {executor[:40]!r}; use local or celery")
    if executor == "celery":
        from tapyard.jobs import celery_app

        celery_app()  # the broker and Celery are there before any run is claimed
    cp = _cp()
    scheduler = Scheduler(
        cp, max_runs=max_runs, per_credential=per_credential, heartbeat=heartbeat, poll=poll, drain=drain,
        executor=executor, start_allowance=start_allowance, queue_timeout=queue_timeout,
    )
    if metrics_port is not None:
        from tapyard import ConfigError
        from tapyard.jobs import serve

        try:
            port = serve(cp, scheduler, metrics_port, metrics_host)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {metrics_host[:60]}:{metrics_port}: {exc.strerror or exc}; "
                "pick another --metrics-port"
            ) from None
        if not once:
            console.print(f"metrics on http://{metrics_host}:{port}/metrics")
    if once:
        done = scheduler.once()
        try:
            scheduler.wait()
        except KeyboardInterrupt:
            scheduler.drain()
            from tapyard.cli._signals import interrupted

            raise interrupted("interrupted; the runs this pass started were stopped and will be retried") from None
        console.print(f"{done['ticks']} ticks, {done['started']} runs started")
        return
    import logging

    logging.getLogger("tapyard.scheduler").info("scheduler %s started", scheduler.id)
    scheduler.loop()
    from tapyard.cli._signals import _received, interrupted

    if _received:
        raise interrupted("scheduler stopped; its runs were drained")


def _health(job: Any, last: Any, next_at: float | None, interval: float | None, now: float) -> str:
    if job.paused:
        return "paused"
    if last is None:
        return "never run"
    if last.status != "ok":
        return f"failing ({last.status})"
    if interval and last.ended_at and now - last.ended_at > 2 * interval:
        return "stale"
    return "ok"



def status(as_json: bool = typer.Option(False, "--json", help="Print the status as JSON.")) -> None:
    """Every job's last run, next fire time and health; live schedulers; stale jobs
    (no good run for more than twice their interval)."""


    from tapyard.cli._jobs import _cp
    from tapyard.jobs import Schedule, clock, iso

    cp = _cp()
    now_clock = clock().now()
    now = time.time()
    last = cp.last_runs()
    running = {r.job: r for r in cp.runs(statuses=("running", "starting", "cancelling"), limit=10_000)}
    rows = []
    for job in cp.jobs():
        schedule = Schedule(job.spec.cron, job.spec.timezone)
        first = schedule.next_after(now_clock)
        second = schedule.next_after(first)
        interval = (second - first).total_seconds()
        next_at = None if job.paused else first.timestamp()
        previous = last.get(job.name)
        rows.append({
            "job": job.name,
            "schedule": f"{job.spec.cron} {job.spec.timezone}",
            "paused": job.paused,
            "last_run": None if previous is None else {
                "id": previous.id, "status": previous.status, "ended_at": iso(previous.ended_at),
                "error": previous.error,
            },
            "running": running[job.name].id if job.name in running else None,
            # starting: claimed, not taken by its process or a worker yet (with Celery: in the queue)
            "running_status": running[job.name].status if job.name in running else None,
            "next_run_at": iso(next_at),
            "health": _health(job, previous, next_at, interval, now),
        })
    schedulers = cp.live_schedulers()
    if as_json:
        print_json({"jobs": rows, "schedulers": schedulers, "control_plane": cp.url, "at": now_clock.isoformat(timespec="seconds")})
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table("job", "schedule", "last run", "next run (UTC)", "health", box=None, pad_edge=False)
    for r in rows:
        lr = r["last_run"]
        shown = "-" if lr is None else f"{lr['id']} {lr['status']} {(lr['ended_at'] or '')[:19].replace('T', ' ')}"
        if r["running"]:
            doing = "waiting for a worker" if r["running_status"] == "starting" else r["running_status"]
            shown += f" (run {r['running']} {doing})"
        table.add_row(escape(r["job"]), escape(r["schedule"]), shown, (r["next_run_at"] or "-")[:19].replace("T", " "), r["health"])
    if rows:
        console.print(table)
    else:
        console.print("no jobs")
    console.print(f"{len(schedulers)} scheduler(s) running" + (": " + ", ".join(escape(s["id"]) for s in schedulers) if schedulers else ""))


def worker(
    concurrency: int = typer.Option(2, "--concurrency", metavar="N", min=1, max=256, help="Runs this worker runs at once."),
    broker: str | None = typer.Option(None, "--broker", metavar="URL", help="The Celery broker (default: TAPYARD_BROKER_URL)."),
) -> None:
    """Run a Celery worker that takes runs from schedulers started with --executor celery
    (the control plane from TAPYARD_DATABASE_URL; the broker from TAPYARD_BROKER_URL)."""
    from tapyard.jobs import worker as run_worker

    run_worker(concurrency, broker)
