"""``tapyard state``: see, reset or set a stream's committed state in its destination.

The destination owns the state (committed with the records it covers); these
commands read and write it there. Changes are guarded: the command shows what
it will change and asks, unless ``--yes``; it refuses while a run of the job is
under way.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from tapyard.cli._context import current
from tapyard.cli._output import console, print_json

group = typer.Typer(help="Streams' committed state in a destination: show, reset, set.", no_args_is_help=True, rich_markup_mode=None)

TARGET_HELP = "A job name, or a destination URL (then --connector names whose state)."
CONNECTOR_HELP = "With a destination URL: the connector (state key) whose state it is."


def _target(target: str, connector: str | None) -> tuple[str, str, str | None]:
    """(destination URL, state key, job name or None) for ``target``."""
    import tapyard

    if "://" in target or target.startswith(("jsonl:", "sqlite:")):
        if not connector:
            raise tapyard.ConfigError("with a destination URL, give --connector NAME (whose state to use)")
        return target, connector, None
    from tapyard.cli._jobs import _cp

    job = _cp().job(target)
    url = job.spec.to
    if url is None:
        from tapyard.destinations import default_destination_url

        url = default_destination_url()
    return url, connector or job.spec.connector, job.name


def _names(states: dict[str, Any], stream: str) -> list[str]:
    """The state names of ``stream``: its own and its partitions'."""
    return [n for n in states if n == stream or n.startswith(stream + "|")]


@group.command("show")
def show(
    target: str = typer.Argument(..., metavar="JOB|URL", help=TARGET_HELP),
    stream: str | None = typer.Argument(None, metavar="[STREAM]", help="One stream (default: all)."),
    connector: str | None = typer.Option(None, "--connector", metavar="NAME", help=CONNECTOR_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the states as JSON."),
) -> None:
    """Show the committed state of a job's (or a destination's) streams."""
    import tapyard

    url, key, _ = _target(target, connector)
    with tapyard.open_destination(url, current().plugins) as destination:
        states = destination.load_state(key)
    if stream is not None:
        states = {n: states[n] for n in _names(states, stream)}
    data = {name: state.to_json() for name, state in sorted(states.items())}
    if as_json:
        print_json(data)
        return
    if not data:
        console.print("no state saved" + (f" for stream {stream}" if stream else ""))
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table("stream", "cursor", "resume point", "pending", box=None, pad_edge=False)
    for name, state in data.items():
        table.add_row(
            escape(name), escape(json.dumps(state["cursor"], default=str)),
            "yes" if state.get("resume") else "-", escape(json.dumps(state.get("pending"), default=str)),
        )
    console.print(table)


def _guard(job: str | None, url: str) -> None:
    if job is None:
        return
    from tapyard import TapyardError
    from tapyard.cli._jobs import _cp

    active = _cp().runs(job=job, statuses=("starting", "running", "cancelling"), limit=1)
    if active:
        raise TapyardError(f"run {active[0].id} of job {job} is under way; cancel it (tapyard runs cancel) or wait")


def _write(url: str, key: str, changes: dict[str, Any], yes: bool, what: str) -> None:
    import tapyard

    if not yes:
        import sys

        if not sys.stdin or not sys.stdin.isatty():
            raise tapyard.ConfigError(f"{what}: confirm with --yes (no terminal to ask on)")
        if not typer.confirm(f"{what}?", default=False):
            console.print("nothing changed")
            raise typer.Exit(1)
    with tapyard.open_destination(url, current().plugins) as destination:
        destination.write(
            key,
            [tapyard.Batch(stream=name.partition("|")[0], state=state, state_name=name, pages=0) for name, state in changes.items()],
        )


@group.command("reset")
def reset(
    target: str = typer.Argument(..., metavar="JOB|URL", help=TARGET_HELP),
    stream: str = typer.Argument(..., metavar="STREAM", help="The stream whose state to clear (its partitions too)."),
    connector: str | None = typer.Option(None, "--connector", metavar="NAME", help=CONNECTOR_HELP),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
) -> None:
    """Clear a stream's state: its next run reads everything again (rows stay)."""
    import tapyard

    url, key, job = _target(target, connector)
    _guard(job, url)
    with tapyard.open_destination(url, current().plugins) as destination:
        states = destination.load_state(key)
    names = _names(states, stream)
    if not names:
        console.print(f"stream {stream} has no saved state; nothing to reset")
        return
    for name in names:
        console.print(f"{name}: cursor {json.dumps(states[name].cursor, default=str)} -> (none)")
    _write(url, key, {n: tapyard.StreamState() for n in names}, yes, f"reset the state of {len(names)} stream(s)")
    console.print(f"state of {stream} reset; its next run reads everything again")


@group.command("set")
def set_state(
    target: str = typer.Argument(..., metavar="JOB|URL", help=TARGET_HELP),
    stream: str = typer.Argument(..., metavar="STREAM", help="The stream."),
    cursor: str = typer.Option(..., "--cursor", metavar="JSON", help="The new cursor, as JSON (a quoted string, a number)."),
    connector: str | None = typer.Option(None, "--connector", metavar="NAME", help=CONNECTOR_HELP),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
) -> None:
    """Set a stream's cursor: its next run reads records after it (any resume point is dropped)."""
    import tapyard

    try:
        value = json.loads(cursor)
    except json.JSONDecodeError:
        value = cursor  # a bare word or timestamp: taken as a string
    if isinstance(value, dict | list):
        raise tapyard.ConfigError("--cursor must be a string or a number, not an object or a list")
    url, key, job = _target(target, connector)
    _guard(job, url)
    with tapyard.open_destination(url, current().plugins) as destination:
        states = destination.load_state(key)
    old = states.get(stream)
    console.print(f"{stream}: cursor {json.dumps(old.cursor if old else None, default=str)} -> {json.dumps(value, default=str)}")
    _write(url, key, {stream: tapyard.StreamState(cursor=value)}, yes, f"set the cursor of {stream}")
    console.print(f"cursor of {stream} set")
