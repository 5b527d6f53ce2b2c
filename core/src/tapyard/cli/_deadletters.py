"""``tapyard deadletters``: list, show, replay and purge the records a sync kept aside.

Each command reads the destination given by ``--to`` (and the connector given
by ``--connector``), or those of a job (``--job``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from tapyard.cli._context import current
from tapyard.cli._output import console, print_json

if TYPE_CHECKING:
    from tapyard.destinations import StoredDeadLetter

group = typer.Typer(
    help="Records that did not fit their stream's schema or destination: list, show, replay, purge.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

TO_HELP = "The destination the sync wrote to (default: tapyard.db in the data directory)."
JOB_HELP = "A job: its destination and connector (instead of --to and --connector)."


def _where(to: str | None, connector: str | None, job: str | None) -> tuple[str, str | None, dict[str, object] | None]:
    """(destination URL, connector name or None, job config or None) from the options."""
    from tapyard.destinations import default_destination_url

    if job is None:
        return to or default_destination_url(), connector, None
    from tapyard import ConfigError
    from tapyard.cli._jobs import _cp

    if to or connector:
        raise ConfigError("--job names the destination and the connector: leave out --to and --connector")
    spec = _cp().job(job).spec
    return spec.to or default_destination_url(), spec.connector, dict(spec.config)


def _letter_json(d: StoredDeadLetter) -> dict[str, object]:
    return {
        "id": d.id, "connector": d.state_key, "stream": d.stream, "error": d.error,
        "created_at": d.created_at, "replayed_at": d.replayed_at, "raw": d.raw,
    }


@group.command("list")
def list_dead_letters(
    to: str | None = typer.Option(None, "--to", metavar="URL", help=TO_HELP),
    connector: str | None = typer.Option(
        None, "--connector", metavar="NAME", help="Only this connector's dead letters (its state key)."
    ),
    streams: str | None = typer.Option(
        None, "--streams", "-s", metavar="NAMES", help="Comma-separated stream names."
    ),
    replayed: bool = typer.Option(False, "--replayed", help="Include dead letters already replayed."),
    job: str | None = typer.Option(None, "--job", metavar="NAME", help=JOB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print them, raw payloads included, as JSON."),
) -> None:
    """List dead letters: which stream, when, and why."""
    from tapyard.destinations import open_destination

    url, connector, _ = _where(to, connector, job)
    names = [s.strip() for s in streams.split(",") if s.strip()] if streams else None
    with open_destination(url, current().plugins) as destination:
        letters = destination.dead_letters(connector, names, replayed=replayed)
    if as_json:
        print_json([_letter_json(d) for d in letters])
        return
    if not letters:
        console.print("no dead letters")
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table("id", "connector", "stream", "created", "replayed", "error", box=None, pad_edge=False)
    for d in letters:
        error = d.error if len(d.error) <= 120 else d.error[:117] + "..."
        table.add_row(
            str(d.id), escape(d.state_key), escape(d.stream), d.created_at[:19], (d.replayed_at or "-")[:19],
            escape(error),
        )
    console.print(table)


@group.command("show")
def show(
    letter_id: int = typer.Argument(..., metavar="ID", help="The dead letter."),
    to: str | None = typer.Option(None, "--to", metavar="URL", help=TO_HELP),
    job: str | None = typer.Option(None, "--job", metavar="NAME", help=JOB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print it as JSON."),
) -> None:
    """Show one dead letter: its stream, its error and its raw payload."""
    import json

    from tapyard.base import TapyardError
    from tapyard.destinations import open_destination

    url, _, _ = _where(to, None, job)
    with open_destination(url, current().plugins) as destination:
        found = [d for d in destination.dead_letters(None, None, replayed=True) if d.id == letter_id]
    if not found:
        raise TapyardError(f"no dead letter with id {letter_id} in {url[:120]}; see tapyard deadletters list")
    letter = found[0]
    if as_json:
        print_json(_letter_json(letter))
        return
    from rich.markup import escape

    for key in ("id", "connector", "stream", "created_at", "replayed_at", "error"):
        console.print(f"{key:>11}: {escape(str(_letter_json(letter)[key]))}")
    try:
        raw = json.dumps(json.loads(letter.raw), indent=2)
    except ValueError:
        raw = letter.raw
    console.print(escape(raw))


@group.command("purge")
def purge(
    to: str | None = typer.Option(None, "--to", metavar="URL", help=TO_HELP),
    connector: str | None = typer.Option(None, "--connector", metavar="NAME", help="Only this connector's dead letters."),
    streams: str | None = typer.Option(None, "--streams", "-s", metavar="NAMES", help="Comma-separated stream names."),
    job: str | None = typer.Option(None, "--job", metavar="NAME", help=JOB_HELP),
    replayed_only: bool = typer.Option(False, "--replayed-only", help="Only dead letters already replayed."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
    as_json: bool = typer.Option(False, "--json", help="Print what was purged as JSON."),
) -> None:
    """Delete dead letters for good (their raw payloads are lost): says how many, and asks unless --yes."""
    import sys

    from tapyard.base import ConfigError
    from tapyard.destinations import open_destination

    url, connector, _ = _where(to, connector, job)
    names = [s.strip() for s in streams.split(",") if s.strip()] if streams else None
    with open_destination(url, current().plugins) as destination:
        letters = destination.dead_letters(connector, names, replayed=True)
        if replayed_only:
            letters = [d for d in letters if d.replayed_at]
        if not letters:
            if as_json:
                print_json({"purged": 0})
            else:
                console.print("no dead letters to purge")
            return
        pending = sum(1 for d in letters if not d.replayed_at)
        what = f"purge {len(letters):,} dead letters ({pending:,} never replayed)"
        if not yes:
            if not sys.stdin or not sys.stdin.isatty():
                raise ConfigError(f"{what}: confirm with --yes (no terminal to ask on)")
            if not typer.confirm(f"{what}?", default=False):
                console.print("nothing purged")
                raise typer.Exit(1)
        purged = destination.purge_dead_letters([d.id for d in letters])
    if as_json:
        print_json({"purged": purged})
    else:
        console.print(f"purged {purged:,} dead letters")


@group.command("replay")
def replay(
    name: str | None = typer.Argument(None, help="The connector whose dead letters to replay (or --job)."),
    config: str | None = typer.Option(
        None, "--config", "-c", help="Connector configuration: a JSON or YAML file, or inline JSON."
    ),
    to: str | None = typer.Option(None, "--to", metavar="URL", help=TO_HELP),
    streams: str | None = typer.Option(
        None, "--streams", "-s", metavar="NAMES", help="Comma-separated stream names (default: all)."
    ),
    job: str | None = typer.Option(None, "--job", metavar="NAME", help=JOB_HELP + " Its config is used too."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """Validate dead letters against the streams' schemas as they are now, and write those that fit.

    Exits non-zero when some records still do not fit; they stay dead letters.
    """
    from tapyard.base import ConfigError, TapyardError, load_config
    from tapyard.cli._context import current
    from tapyard.engine import replay_dead_letters

    if job is not None:
        if name is not None or config is not None:
            raise ConfigError("--job names the connector and its config: leave out NAME and --config")
        to, name, raw = _where(to, None, job)
        raw = {k: v for k, v in (raw or {}).items() if k not in ("rate_limit", "policies")}
    elif name is None:
        raise ConfigError("name the connector whose dead letters to replay, or give --job")
    else:
        raw = load_config(config)
    assert name is not None
    plugins = current().plugins
    connector = plugins.get_connector(name)
    cfg = connector.parse_config(raw)
    names = [s.strip() for s in streams.split(",") if s.strip()] if streams else None
    results = replay_dead_letters(connector, cfg, to=to, streams=names, plugins=plugins)
    if as_json:
        print_json(
            [
                {"stream": r.stream, "replayed": r.replayed, "still_dead": r.still_dead, "reasons": r.reasons}
                for r in results
            ]
        )
    elif not results:
        console.print(f"no dead letters of {name} to replay")
    else:
        from rich.markup import escape

        for r in results:
            line = f"{escape(r.stream)}: {r.replayed:,} replayed, {r.still_dead:,} still dead"
            if r.reasons:
                line += f" ({escape(r.reasons[0][:200])})"
            console.print(line)
    still = sum(r.still_dead for r in results)
    if still:
        raise TapyardError(
            f"{still:,} dead letters still do not fit their stream's schema; "
            f"see tapyard deadletters list --connector {name}"
        )
