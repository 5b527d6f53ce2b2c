"""``tapyard connectors``: what is installed."""

from __future__ import annotations

from typing import Any

import typer

from tapyard.cli._output import console, print_json

group = typer.Typer(help="List and inspect installed connectors.", no_args_is_help=True)


def _describe(connector: Any) -> dict[str, Any]:
    return {
        "name": connector.name,
        "version": connector.version,
        "distribution": connector.distribution,
        "description": connector.description,
        "streams": connector.stream_names(),
        "auth_kinds": list(connector.auth_kinds),
    }


@group.command("list")
def list_connectors(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the installed connectors."""
    from tapyard._plugins import collect_connectors

    connectors = [_describe(c) for _, c in sorted(collect_connectors().items())]
    if as_json:
        print_json(connectors)
        return
    if not connectors:
        console.print("No connectors installed. Install one, e.g. pip install tapyard-sample")
        return
    from rich.table import Table

    table = Table("name", "version", "streams", "auth", "description", box=None, pad_edge=False)
    for c in connectors:
        table.add_row(
            c["name"], c["version"], ", ".join(c["streams"]), ", ".join(c["auth_kinds"]), c["description"]
        )
    console.print(table)


@group.command("info")
def info(
    name: str = typer.Argument(..., help="Connector name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a connector's version, streams, auth kinds and configuration fields."""
    from tapyard._plugins import get_connector

    connector = get_connector(name)
    details = _describe(connector)
    schema = connector.config_model.model_json_schema()
    required = set(schema.get("required", ()))
    details["config"] = [
        {
            "name": field,
            "type": spec.get("type") or (spec.get("anyOf") and "/".join(
                str(o.get("type")) for o in spec["anyOf"]
            )),
            "default": spec.get("default"),
            "required": field in required,
            "description": spec.get("description", ""),
        }
        for field, spec in schema.get("properties", {}).items()
    ]
    if as_json:
        print_json(details)
        return
    console.print(f"[bold]{details['name']}[/bold] {details['version']} ({details['distribution']})")
    if details["description"]:
        console.print(details["description"])
    console.print(f"streams: {', '.join(details['streams']) or '(discovered from config)'}")
    console.print(f"auth: {', '.join(details['auth_kinds'])}")
    if details["config"]:
        from rich.table import Table

        table = Table("config field", "type", "default", "description", box=None, pad_edge=False)
        for f in details["config"]:
            default = "(required)" if f["required"] else repr(f["default"])
            table.add_row(f["name"], str(f["type"]), default, f["description"])
        console.print(table)
