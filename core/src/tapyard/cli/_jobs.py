"""``tapyard jobs``: define, inspect, change and run scheduled sync jobs."""

from __future__ import annotations

import contextlib
from typing import Any

import typer

from tapyard.cli._output import console, print_json

group = typer.Typer(
    help="Scheduled sync jobs: add, list, show, edit, pause, resume, rm, run, apply.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

SPREAD_HELP = (
    "Spread each scheduled run over the workers: 'streams' (a unit per stream), 'partitions' "
    "(a unit per partition), or 'none' (default). Needs a PostgreSQL destination."
)
VAULT_HELP = "Vault URL or path where --creds is looked up (default: $TAPYARD_VAULT, else the data directory's)."
_OPTION_FIELDS = (
    "connector", "creds", "streams", "to", "cron", "timezone", "overlap", "catchup", "catchup_window",
    "retries", "backoff", "backoff_max", "timeout", "jitter", "on_failure", "spread",
)


def _options(values: dict[str, Any]) -> dict[str, Any]:
    """The definition fields given on the command line (None: not given)."""
    out: dict[str, Any] = {}
    for key in _OPTION_FIELDS:
        value = values.get(key)
        if value is None or value == []:
            continue
        if key == "streams":
            value = [s.strip() for s in str(value).split(",")]
        if key == "timeout" and str(value).lower() in ("none", "0", "off"):
            value = None
        out[key] = value
    return out


def _load_config(config: str | None) -> dict[str, Any] | None:
    if config is None:
        return None
    from tapyard.base import load_config

    return dict(load_config(config))


def _cp() -> Any:
    from tapyard.jobs import ControlPlane

    return _guarded(ControlPlane)


def _guarded(factory: Any) -> Any:
    """The control plane, with a database that cannot be reached said in one line."""
    import sqlalchemy as sa

    from tapyard import ConfigError

    try:
        return factory()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    except sa.exc.OperationalError as exc:
        reason = str(exc.orig).splitlines()[0][:200] if exc.orig is not None else "cannot connect"
        raise ConfigError(f"cannot open the control plane database: {reason}") from None
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"the control plane database needs {exc.name}: pip install 'tapyard[postgres]'"
        ) from None


def _defined(name: str, options: dict[str, Any], config: dict[str, Any] | None) -> dict[str, Any]:
    raw: dict[str, Any] = {"name": name, **options}
    if config is not None:
        raw["config"] = config
    return raw


@group.command("add")
def add(
    name: str = typer.Argument(..., help="The job's name."),
    connector: str = typer.Option(..., "--connector", metavar="NAME", help="The connector to run."),
    cron: str = typer.Option(..., "--cron", metavar="EXPR", help="Five-field cron expression, e.g. '*/15 * * * *'."),
    creds: str | None = typer.Option(None, "--creds", metavar="CRED", help="A vault credential the connector may use."),
    config: str | None = typer.Option(None, "--config", "-c", metavar="FILE", help="Connector configuration: a JSON or YAML file, or inline JSON."),
    streams: str | None = typer.Option(None, "--streams", "-s", metavar="NAMES", help="Comma-separated stream names (default: all)."),
    to: str | None = typer.Option(None, "--to", metavar="URL", help="Destination URL (default: tapyard.db in the data directory)."),
    timezone: str | None = typer.Option(None, "--timezone", metavar="TZ", help="IANA time zone of the schedule (default UTC)."),
    overlap: str | None = typer.Option(None, "--overlap", metavar="POLICY", help="When a tick comes while a run is on: skip (default), buffer-one, cancel-other, allow."),
    catchup: str | None = typer.Option(None, "--catchup", metavar="POLICY", help="Ticks missed while no scheduler ran: none, latest (default), all."),
    catchup_window: str | None = typer.Option(None, "--catchup-window", metavar="DUR", help="How far back missed ticks are caught up (default 1h)."),
    retries: int | None = typer.Option(None, "--retries", metavar="N", min=0, max=100, help="Retries of a failed, timed-out or abandoned run (default 2)."),
    backoff: str | None = typer.Option(None, "--backoff", metavar="DUR", help="First retry delay; doubles each attempt, with full jitter (default 30s)."),
    backoff_max: str | None = typer.Option(None, "--backoff-max", metavar="DUR", help="Longest retry delay (default 1h)."),
    timeout: str | None = typer.Option(None, "--timeout", metavar="DUR", help="Stop a run after this long (default 1h; 'none' for no limit)."),
    jitter: str | None = typer.Option(None, "--jitter", metavar="DUR", help="Start each run up to this long after its tick (spreads load)."),
    on_failure: list[str] | None = typer.Option(None, "--on-failure", metavar="TARGET", help="webhook:URL or command:CMD to alert; repeatable."),
    spread: str | None = typer.Option(None, "--spread", metavar="HOW", help=SPREAD_HELP),
    vault: str | None = typer.Option(None, "--vault", metavar="URL", help=VAULT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the stored definition as JSON."),
) -> None:
    """Add a job. A bad cron expression, time zone, connector, config or credential is refused."""
    from tapyard.jobs import check_job

    options = _options(locals())
    spec = check_job(_defined(name, options, _load_config(config)), vault_url=vault)
    _cp().put_job(spec, create=True)
    if as_json:
        print_json(spec.to_json())
    else:
        console.print(f"added job {name}: {spec.cron} ({spec.timezone})")


@group.command("edit")
def edit(
    name: str = typer.Argument(..., help="The job to change."),
    connector: str | None = typer.Option(None, "--connector", metavar="NAME", help="The connector to run."),
    cron: str | None = typer.Option(None, "--cron", metavar="EXPR", help="Five-field cron expression."),
    creds: str | None = typer.Option(None, "--creds", metavar="CRED", help="A vault credential ('' for none)."),
    config: str | None = typer.Option(None, "--config", "-c", metavar="FILE", help="Connector configuration (replaces the stored one)."),
    streams: str | None = typer.Option(None, "--streams", "-s", metavar="NAMES", help="Comma-separated stream names."),
    to: str | None = typer.Option(None, "--to", metavar="URL", help="Destination URL."),
    timezone: str | None = typer.Option(None, "--timezone", metavar="TZ", help="IANA time zone of the schedule."),
    overlap: str | None = typer.Option(None, "--overlap", metavar="POLICY", help="skip, buffer-one, cancel-other or allow."),
    catchup: str | None = typer.Option(None, "--catchup", metavar="POLICY", help="none, latest or all."),
    catchup_window: str | None = typer.Option(None, "--catchup-window", metavar="DUR", help="How far back missed ticks are caught up."),
    retries: int | None = typer.Option(None, "--retries", metavar="N", min=0, max=100, help="Retries of a failed run."),
    backoff: str | None = typer.Option(None, "--backoff", metavar="DUR", help="First retry delay."),
    backoff_max: str | None = typer.Option(None, "--backoff-max", metavar="DUR", help="Longest retry delay."),
    timeout: str | None = typer.Option(None, "--timeout", metavar="DUR", help="Stop a run after this long ('none': no limit)."),
    jitter: str | None = typer.Option(None, "--jitter", metavar="DUR", help="Start each run up to this long after its tick."),
    on_failure: list[str] | None = typer.Option(None, "--on-failure", metavar="TARGET", help="Alert targets (replace the stored ones)."),
    spread: str | None = typer.Option(None, "--spread", metavar="HOW", help=SPREAD_HELP),
    vault: str | None = typer.Option(None, "--vault", metavar="URL", help=VAULT_HELP),
) -> None:
    """Change some fields of a job; the others stay. Checked as `add` checks."""
    from tapyard.jobs import check_job

    cp = _cp()
    current = cp.job(name).spec.to_json()
    options = _options(locals())
    if creds == "":
        options["creds"] = None
    given = _load_config(config)
    if given is not None:
        current["config"] = given
    spec = check_job({**current, **options}, vault_url=vault)
    outcome = cp.put_job(spec, create=False)
    console.print(f"job {name} {'unchanged' if outcome == 'unchanged' else 'changed'}")


def _describe(job: Any, next_at: float | None) -> dict[str, Any]:
    from tapyard.jobs import iso

    return {**job.spec.to_json(), "paused": job.paused, "next_run_at": iso(next_at)}


def _next_fire(job: Any) -> float | None:
    from tapyard.jobs import Schedule, clock

    if job.paused:
        return None
    return Schedule(job.spec.cron, job.spec.timezone).next_after(clock().now()).timestamp()


@group.command("list")
def list_jobs(as_json: bool = typer.Option(False, "--json", help="Print the jobs as JSON.")) -> None:
    """List the jobs with their schedules and next fire times."""
    jobs = _cp().jobs()
    rows = [_describe(j, _next_fire(j)) for j in jobs]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no jobs; add one with tapyard jobs add")
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table("job", "connector", "schedule", "to", "next run (UTC)", "state", box=None, pad_edge=False)
    for r in rows:
        table.add_row(
            escape(r["name"]), escape(r["connector"]), escape(f"{r['cron']} {r['timezone']}"), escape(r["to"] or "(default)"),
            (r["next_run_at"] or "-").replace("T", " ")[:19], "paused" if r["paused"] else "active",
        )
    console.print(table)


@group.command("show")
def show(
    name: str = typer.Argument(..., help="The job."),
    as_json: bool = typer.Option(False, "--json", help="Print the definition as JSON."),
) -> None:
    """Show a job's definition, state and next fire time."""
    from tapyard.jobs import format_duration

    job = _cp().job(name)
    data = _describe(job, _next_fire(job))
    if as_json:
        print_json(data)
        return
    from rich.markup import escape

    for key, value in data.items():
        if key in ("catchup_window", "backoff", "backoff_max", "timeout", "jitter"):
            value = format_duration(value)
        console.print(f"{key:>15}: {escape(str(value))}")


@group.command("pause")
def pause(name: str = typer.Argument(..., help="The job.")) -> None:
    """Stop firing a job (runs under way go on)."""
    changed = _cp().set_paused(name, True)
    console.print(f"job {name} {'paused' if changed else 'was already paused'}")


@group.command("resume")
def resume(name: str = typer.Argument(..., help="The job.")) -> None:
    """Fire a paused job again, from now on (ticks missed while paused are not caught up)."""
    changed = _cp().set_paused(name, False)
    console.print(f"job {name} {'resumed' if changed else 'was not paused'}")


@group.command("rm")
def remove(name: str = typer.Argument(..., help="The job.")) -> None:
    """Remove a job (its queued runs are cancelled; its run history stays)."""
    _cp().remove_job(name)
    console.print(f"removed job {name}")


@group.command("run")
def run_now(
    name: str = typer.Argument(..., help="The job."),
    as_json: bool = typer.Option(False, "--json", help="Print the run as JSON when it ends."),
    heartbeat: float = typer.Option(15.0, "--heartbeat", metavar="SECONDS", min=0.2, help="Heartbeat interval of the run."),
) -> None:
    """Run a job now, in the foreground, with the progress display; recorded like a scheduled run."""
    import os
    import socket

    from tapyard import TapyardError
    from tapyard.cli._run import _Progress
    from tapyard.jobs import execute, start

    cp = _cp()
    job = cp.job(name)
    run = cp.new_run(job, trigger="manual", owner=f"cli:{socket.gethostname()}:{os.getpid()}")
    running = start(cp, run, os.getpid())
    if running is None:
        raise TapyardError(f"run {run.id} was taken over before it started")
    progress = _Progress(job.spec.streams)

    def lost() -> None:
        raise TapyardError(f"run {run.id} lost its lease (marked abandoned by a scheduler); nothing recorded")

    with progress:
        final = execute(cp, running, heartbeat=heartbeat, progress=progress, on_lost=lost)
    if as_json:
        print_json(final.to_json())
    else:
        _run_summary(final)
    if final.status == "interrupted":
        from tapyard.cli._signals import interrupted

        raise interrupted(f"interrupted; run {final.id} recorded as interrupted, {final.records:,} records committed")
    if final.status != "ok":
        raise TapyardError(f"run {final.id} {final.status}: {final.error or ''}".rstrip(": "))


def _run_summary(run: Any) -> None:
    from rich.markup import escape

    seconds = f"{run.seconds:.2f}s" if run.seconds is not None else "-"
    console.print(
        f"run {run.id} of {escape(run.job)}: {run.status}, {run.records:,} records, "
        f"{run.dead_letters:,} dead letters, {run.requests:,} requests in {seconds}"
    )


@group.command("apply")
def apply(
    file: str = typer.Argument(..., metavar="FILE", help="A YAML or TOML file with the job definitions."),
    prune: bool = typer.Option(False, "--prune", help="Remove jobs the file does not define."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the changes without making them."),
    vault: str | None = typer.Option(None, "--vault", metavar="URL", help=VAULT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the changes as JSON."),
) -> None:
    """Make the stored jobs match a definitions file: shows the diff, then applies it.

    Every definition is checked first; one bad definition changes nothing.
    Applying the same file twice changes nothing the second time.
    """
    from tapyard import ConfigError
    from tapyard.jobs import check_job, load_definitions

    try:
        raws = load_definitions(file)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    with contextlib.ExitStack() as stack:
        opened = None
        if any(r.get("creds") for r in raws):
            import tapyard

            opened = stack.enter_context(tapyard.open_vault(vault))
        specs = [check_job(raw, vault=opened) for raw in raws]
    cp = _cp()
    before = {j.name: j.spec.to_json() for j in cp.jobs()}
    outcome = cp.apply(specs, prune=prune, dry_run=dry_run)
    after = {s.name: s.to_json() for s in specs}
    changes = {
        name: {k: [before[name].get(k), after[name].get(k)] for k in after[name] if before[name].get(k) != after[name].get(k)}
        for name in outcome["changed"]
    }
    if as_json:
        print_json({**outcome, "changes": changes, "dry_run": dry_run})
        return
    from rich.markup import escape

    for name in outcome["created"]:
        console.print(f"[green]+ {escape(name)}[/]")
    for name in outcome["changed"]:
        console.print(f"[yellow]~ {escape(name)}[/]")
        for key, (old, new) in changes[name].items():
            console.print(f"    {escape(key)}: {escape(repr(old))} -> {escape(repr(new))}")
    for name in outcome["removed"]:
        console.print(f"[red]- {escape(name)}[/]")
    kept = [n for n in before if n not in after and not prune]
    verb = "would apply" if dry_run else "applied"
    if not (outcome["created"] or outcome["changed"] or outcome["removed"]):
        console.print(f"no changes ({len(outcome['unchanged'])} jobs as defined)")
    else:
        console.print(
            f"{verb}: {len(outcome['created'])} created, {len(outcome['changed'])} changed, "
            f"{len(outcome['removed'])} removed, {len(outcome['unchanged'])} unchanged"
        )
    if kept:
        console.print(f"{len(kept)} stored jobs are not in the file (kept; --prune removes them)")
