"""``tapyard deadletters``: list the records a sync kept aside, and replay them."""

from __future__ import annotations

import typer

from tapyard.cli._output import console, print_json

group = typer.Typer(
    help="Records that did not fit their stream's schema or destination: list and replay them.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

TO_HELP = "The destination the sync wrote to (default: tapyard.db in the data directory)."


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
    as_json: bool = typer.Option(False, "--json", help="Print them, raw payloads included, as JSON."),
) -> None:
    """List dead letters: which stream, when, and why."""
    from tapyard._destinations import default_destination_url, open_destination

    names = [s.strip() for s in streams.split(",") if s.strip()] if streams else None
    with open_destination(to or default_destination_url()) as destination:
        letters = destination.dead_letters(connector, names, replayed=replayed)
    if as_json:
        print_json(
            [
                {
                    "id": d.id,
                    "connector": d.state_key,
                    "stream": d.stream,
                    "error": d.error,
                    "created_at": d.created_at,
                    "replayed_at": d.replayed_at,
                    "raw": d.raw,
                }
                for d in letters
            ]
        )
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


@group.command("replay")
def replay(
    name: str = typer.Argument(..., help="The connector whose dead letters to replay."),
    config: str | None = typer.Option(
        None, "--config", "-c", help="Connector configuration: a JSON or YAML file, or inline JSON."
    ),
    to: str | None = typer.Option(None, "--to", metavar="URL", help=TO_HELP),
    streams: str | None = typer.Option(
        None, "--streams", "-s", metavar="NAMES", help="Comma-separated stream names (default: all)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """Validate dead letters against the streams' schemas as they are now, and write those that fit.

    Exits non-zero when some records still do not fit; they stay dead letters.
    """
    from tapyard._config import load_config
    from tapyard._exceptions import TapyardError
    from tapyard._plugins import get_connector
    from tapyard._replay import replay_dead_letters

    connector = get_connector(name)
    cfg = connector.parse_config(load_config(config))
    names = [s.strip() for s in streams.split(",") if s.strip()] if streams else None
    results = replay_dead_letters(connector, cfg, to=to, streams=names)
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
