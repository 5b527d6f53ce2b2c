"""``tapyard connectors``: what is installed."""

from __future__ import annotations

import warnings
from typing import Any

import typer

from tapyard.cli._output import console, err_console, print_json
from tapyard.cli._typer import Command, Group

group = typer.Typer(help="List and inspect installed connectors.", no_args_is_help=True, cls=Group)


@group.command("list", cls=Command)
def list_connectors(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    check: bool = typer.Option(
        False, "--check", help="Import every connector and check it against its manifest."
    ),
) -> None:
    """List the installed connectors.

    The list is read from the connectors' manifests, without importing them;
    --check imports each one and fails when it differs from its manifest.
    """
    from tapyard._plugins import connector_listing

    connectors = _checked() if check else connector_listing()
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


def _checked() -> list[dict[str, Any]]:
    """Every connector loaded, after comparing each with its manifest."""
    from tapyard._exceptions import PluginError
    from tapyard._manifest import manifest_differences
    from tapyard._plugins import (
        collect_connectors,
        describe_connector,
        installed_manifests,
        replay_manifest_warnings,
    )

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manifests, without = installed_manifests()
    replay_manifest_warnings(caught, everything=False)
    loaded = collect_connectors()
    problems = []
    for name, connector in sorted(loaded.items()):
        manifest = manifests.get(name)
        if manifest is None:
            if not without:
                problems.append(f"{name}: registered, but in no manifest")
            continue
        problems += [f"{name}: {d}" for d in manifest_differences(manifest, describe_connector(connector))]
    problems += [f"{name}: in {manifests[name].path}, but not registered" for name in sorted(set(manifests) - set(loaded))]
    if problems:
        raise PluginError(
            f"{len(problems)} manifest mismatch{'es' if len(problems) > 1 else ''}: {'; '.join(problems)}; "
            "make the manifest say what the connector registers"
        )
    for plugin in without:
        err_console.print(f"note: plugin {plugin!r} has no manifest, so listing it imports it")
    return [describe_connector(c) for _, c in sorted(loaded.items())]


@group.command("info")
def info(
    name: str = typer.Argument(..., help="Connector name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a connector's version, streams, auth kinds and configuration fields."""
    from tapyard._plugins import describe_connector, get_connector

    connector = get_connector(name)
    details = describe_connector(connector)
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
