"""``tapyard runs``: the history of job runs, their logs, and cancelling one."""

from __future__ import annotations

import time

import typer

from tapyard.cli._output import console, print_json

group = typer.Typer(help="Runs of jobs: list, show, logs, cancel.", no_args_is_help=True, rich_markup_mode=None)


def _since(value: str | None) -> float | None:
    """Epoch seconds from a duration back from now (``2h``) or an ISO 8601 time."""
    if value is None:
        return None
    import datetime as dt

    from tapyard import ConfigError
    from tapyard.jobs import parse_duration

    try:
        return time.time() - parse_duration(value)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--since {value[:40]!r} is neither a duration (2h, 3d) nor an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def _short(text: str | None, limit: int = 100) -> str:
    if not text:
        return ""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


@group.command("list")
def list_runs(
    job: str | None = typer.Option(None, "--job", metavar="NAME", help="Only this job's runs."),
    status: list[str] | None = typer.Option(None, "--status", metavar="STATUS", help="Only runs with this status (queued, starting, running, cancelling, ok, failed, timed_out, abandoned, cancelled, interrupted); repeatable."),
    since: str | None = typer.Option(None, "--since", metavar="WHEN", help="Only runs created since: a duration back (2h) or an ISO time."),
    limit: int = typer.Option(50, "--limit", metavar="N", min=1, max=100_000, help="At most this many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print the runs as JSON."),
) -> None:
    """List runs, newest first."""
    from tapyard.cli._jobs import _cp

    runs = _cp().runs(job=job, statuses=status, since=_since(since), limit=limit)
    if as_json:
        print_json([r.to_json() for r in runs])
        return
    if not runs:
        console.print("no runs")
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table("id", "job", "scheduled (UTC)", "attempt", "status", "records", "seconds", "error", box=None, pad_edge=False)
    for r in runs:
        data = r.to_json()
        table.add_row(
            str(r.id), escape(r.job), (data["scheduled_at"] or r.trigger)[:19].replace("T", " "), str(r.attempt),
            r.status, f"{r.records:,}", "-" if r.seconds is None else f"{r.seconds:.1f}", escape(_short(r.error, 80)),
        )
    console.print(table)


@group.command("show")
def show(
    run_id: int = typer.Argument(..., metavar="ID", help="The run."),
    as_json: bool = typer.Option(False, "--json", help="Print the run as JSON."),
) -> None:
    """Show a run: status, times, per-stream figures, error in one line."""
    from tapyard.cli._jobs import _cp

    run = _cp().run(run_id)
    data = run.to_json()
    if as_json:
        print_json(data)
        return
    from rich.markup import escape
    from rich.table import Table

    for key in ("id", "job", "status", "trigger", "attempt", "scheduled_at", "started_at", "ended_at", "seconds",
                "records", "dead_letters", "requests", "http_retries", "owner", "retry_of", "parent_id", "units"):
        if data.get(key) is not None:
            console.print(f"{key:>13}: {escape(str(data[key]))}")
    if run.status == "starting" and run.claimed_at is not None:  # claimed; no process or worker took it yet
        console.print(f"{'waiting':>13}: {time.time() - run.claimed_at:.0f} s for a worker to take it (claimed {data['claimed_at']})")
    if data.get("unit"):  # a unit of a spread run: what it reads
        what = data["unit"].get("partitions") or data["unit"].get("streams") or []
        console.print(f"{'unit':>13}: {escape(_short(', '.join(map(str, what)), 300))}")
    if run.error:
        console.print(f"{'error':>13}: {escape(_short(run.error, 300))}")
    streams = data["streams"]
    if streams:
        table = Table("stream", "status", "records", "inserted", "updated", "deleted", "dead letters", "seconds", box=None, pad_edge=False)
        for s in streams:
            table.add_row(
                escape(s["name"]), s["status"], f"{s['records']:,}", str(s.get("inserted", "-")), str(s.get("updated", "-")),
                str(s.get("deleted", 0)), str(s["dead_letters"]), str(s["seconds"]),
            )
        console.print(table)


@group.command("logs")
def logs(
    run_id: int = typer.Argument(..., metavar="ID", help="The run."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines until the run ends."),
    interval: float = typer.Option(0.5, "--interval", metavar="SECONDS", min=0.05, help="How often --follow looks for new lines."),
) -> None:
    """Print a run's log: JSON lines, each with the run id, job, connector and stream."""
    import sys

    from tapyard.cli._jobs import _cp
    from tapyard.jobs import ACTIVE

    cp = _cp()
    cp.run(run_id)
    after = 0
    while True:
        lines = cp.logs(run_id, after)
        for line_id, line in lines:
            sys.stdout.write(line + "\n")
            after = line_id
        sys.stdout.flush()
        if not follow:
            return
        if not lines and cp.run(run_id).status not in ACTIVE:
            # one more look: the last lines are written just before the outcome
            for line_id, line in cp.logs(run_id, after):
                sys.stdout.write(line + "\n")
                after = line_id
            sys.stdout.flush()
            return
        time.sleep(interval)


@group.command("cancel")
def cancel(run_id: int = typer.Argument(..., metavar="ID", help="The run.")) -> None:
    """Cancel a run: a queued one at once, a running one at its next heartbeat."""
    from tapyard import TapyardError
    from tapyard.cli._jobs import _cp

    status = _cp().cancel(run_id)
    if status == "cancelled":
        console.print(f"run {run_id} cancelled")
    elif status == "cancelling":
        console.print(f"run {run_id} asked to stop; it stops at its next heartbeat and is marked cancelled")
    else:
        raise TapyardError(f"run {run_id} already ended ({status})")


