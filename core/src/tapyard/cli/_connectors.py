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
    from tapyard.cli._context import current

    connectors = _checked() if check else current().plugins.connector_listing()
    if as_json:
        print_json(connectors)
        return
    if not connectors:
        console.print(
            "No connectors installed. Install one; from a checkout of tapyard: pip install ./connectors/sample"
        )
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
    from tapyard.base import PluginError, manifest_differences
    from tapyard.cli._context import current
    from tapyard.plugins import describe_connector, replay_manifest_warnings

    plugins = current().plugins
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manifests, without = plugins.installed_manifests()
    replay_manifest_warnings(caught, everything=False)
    loaded = plugins.connectors()
    problems = []
    for name, connector in sorted(loaded.items()):
        manifest = manifests.get(name)
        if manifest is None:
            if not without:
                problems.append(f"{name}: registered, but in no manifest")
            continue
        problems += [f"{name}: {d}" for d in manifest_differences(manifest, describe_connector(connector))]
    problems += [f"{name}: in {manifests[name].path}, but not registered" for name in sorted(set(manifests) - set(loaded))]
    from tapyard.base import ManifestError
    from tapyard.base.manifest import load_manifest

    for path in sorted({m.path for m in manifests.values()}):
        try:
            load_manifest(path)  # the whole contract (permissions, stream modes, ...), not only what lists
        except ManifestError as exc:
            problems.append(str(exc))
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
    """Show a connector's version, who registered it and its auth kinds, its streams,
    credential fields and configuration fields."""
    from tapyard.cli._context import current
    from tapyard.plugins import describe_connector

    plugins = current().plugins
    connector = plugins.get_connector(name)
    details = describe_connector(connector)
    ownership = plugins.ownership()
    owner = ownership.owner("connector", connector.name)
    details["registered_by"] = owner.to_json() if owner is not None else None
    details["auth_strategies"] = {
        kind: (found.to_json() if (found := ownership.owner("auth_strategy", kind)) is not None else None)
        for kind in connector.auth_kinds
        if kind != "none"
    }
    details["paginators"] = _paginators(connector, plugins, ownership)
    details["stream_config"] = {s: list(f) for s, f in connector.stream_config.items()}
    details["credentials"] = _credential_fields(connector, plugins.auth_strategies())
    details["permissions"] = _permissions(connector, plugins)
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
    needs = details["stream_config"]
    streams = [f"{s} (needs {' and '.join(needs[s])})" if s in needs else s for s in details["streams"]]
    console.print(f"streams: {', '.join(streams) or '(discovered from config)'}")
    if owner is not None:
        console.print(f"registered by {owner.describe()}", markup=False)
    console.print(
        "auth: "
        + ", ".join(
            kind + (f" (from {_short(details['auth_strategies'][kind])})" if details["auth_strategies"].get(kind) else "")
            for kind in details["auth_kinds"]
        ),
        markup=False,
    )
    if details["paginators"]:
        console.print(
            "paginators: "
            + ", ".join(f"{s}: {p['kind']} (from {_short(p)})" for s, p in details["paginators"].items()),
            markup=False,
        )
    allowed = details["permissions"]
    if allowed is None:
        console.print("permissions: not declared (no manifest with [connector.permissions]): nothing is enforced")
    else:
        console.print(
            f"permissions: hosts {', '.join(allowed['hosts'])}; reads files: {'yes' if allowed['files'] else 'no'}; "
            f"reads environment variables: {'yes' if allowed['environment'] else 'no'}; "
            f"credential kinds: {', '.join(allowed['credentials']) or 'none'}"
        )
    for kind, fields in details["credentials"].items():
        shown = ", ".join(
            f["name"] + ("" if f["required"] else "?") + (" (secret)" if f["secret"] else "") for f in fields
        )
        console.print(f"  {kind}: {shown or '(no fields)'}")
    if details["credentials"]:
        console.print("  (? = optional; store them with: tapyard creds add NAME --connector " f"{details['name']} --kind KIND)")
    if details["config"]:
        from rich.table import Table

        table = Table("config field", "type", "default", "description", box=None, pad_edge=False)
        for f in details["config"]:
            default = "(required)" if f["required"] else repr(f["default"])
            table.add_row(f["name"], str(f["type"]), default, f["description"])
        console.print(table)


def _short(owner: dict[str, Any]) -> str:
    """An owner as a listing names it: its distribution, else its plugin's name."""
    return str(owner.get("distribution") or f"plugin {owner.get('plugin')!r}")


def _paginators(connector: Any, plugins: Any, ownership: Any) -> dict[str, dict[str, Any]]:
    """Each stream's paginator kind (for the default configuration) and who registered it;
    empty when the streams need configuration to be known."""
    from tapyard.sources import streams_of

    try:
        streams = streams_of(connector, connector.config_model(), plugins)
    except Exception:
        return {}
    found = {}
    for stream in streams:
        kind = getattr(getattr(stream, "paginator", None), "kind", None)
        owner = ownership.owner("paginator", kind) if isinstance(kind, str) else None
        if owner is not None:
            found[stream.name] = {"kind": kind, **owner.to_json()}
    return found


def _permissions(connector: Any, plugins: Any) -> dict[str, Any] | None:
    """What the connector's installed manifest lets it do (None: it declares nothing)."""
    from tapyard.base import ManifestError
    from tapyard.base.manifest import load_manifest

    path = plugins.connector_manifest_path(connector)
    if path is None:
        return None
    try:
        spec = load_manifest(path).get(connector.name)
    except ManifestError:
        return None
    if spec is None or spec.permissions is None:
        return None
    return {**spec.permissions.model_dump(), "credentials": spec.credential_kinds(), "manifest": path}


def _credential_fields(connector: Any, strategies: Any) -> dict[str, list[dict[str, Any]]]:
    """Each auth kind's credential fields: name, required, secret (``kind`` itself left out)."""
    from tapyard.auth import TOKEN_FIELDS
    from tapyard.base import TapyardError

    kinds: dict[str, list[dict[str, Any]]] = {}
    for kind in connector.auth_kinds:
        if kind == "none":
            continue
        try:
            model = connector.credential_model(kind, strategies)
        except TapyardError:
            kinds[kind] = []
            continue
        kinds[kind] = [
            {
                "name": name,
                "required": field.is_required(),
                "secret": "SecretStr" in repr(field.annotation),
                "description": field.description or "",
            }
            for name, field in model.model_fields.items()
            # what `creds add` asks for: not the pinned kind, the name, or tokens obtained later
            if name not in ("kind", "name") and not (name in TOKEN_FIELDS and not field.is_required())
        ]
    return kinds


@group.command("manifest-schema")
def manifest_schema() -> None:
    """Print the JSON Schema of tapyard-manifest.toml (for editors and CI checks)."""
    from tapyard.base.manifest import manifest_json_schema

    print_json(manifest_json_schema())


@group.command("new", cls=Command)
def new(
    name: str = typer.Argument(..., help="The connector's name: lowercase letters, digits and _ (the vendor)."),
    directory: str | None = typer.Option(None, "--dir", metavar="D", help="Where to write it (default: ./NAME)."),
    kind: str = typer.Option("rest", "--kind", help="rest (a declarative REST connector) or sdk (a Source you write)."),
    auth: str = typer.Option("bearer", "--auth", help="The credential kind: bearer, api_key, basic or none."),
    paginator: str = typer.Option("cursor", "--paginator", help="cursor, page_number, offset or next_url."),
    publisher: str | None = typer.Option(None, "--publisher", help="Your registry namespace (default: NAME)."),
) -> None:
    """Write a complete connector package: installable, with a manifest, tests, a cassette and a README.

    Its tests and the conformance kit pass straight away:
    pip install ./NAME && tapyard connectors test ./NAME
    """
    from pathlib import Path

    from tapyard.marketplace.scaffold import scaffold

    target = Path(directory) if directory else Path(name)
    written = scaffold(name, target, kind=kind, auth=auth, paginator=paginator, publisher=publisher)
    shown = str(target) if target.is_absolute() or str(target).startswith(".") else f"./{target}"
    console.print(f"wrote {len(written)} files to {shown}/")
    console.print(f"next: pip install -e {shown} && tapyard connectors test {shown}")


@group.command("test", cls=Command)
def test(
    target: str = typer.Argument(..., help="A connector project directory, a wheel, an sdist, or an installed connector's name."),
    connector: str | None = typer.Option(None, "--connector", help="Only this connector of a package that has several."),
    as_json: bool = typer.Option(False, "--json", help="Print the reports as JSON (a list, one per connector)."),
) -> None:
    """Run the conformance kit: the checks the registry runs before it lists a connector.

    Exits 0 when no check failed; the report says what to change for each failure.
    """
    from tapyard.marketplace.kit import run_kits

    try:
        import vcr  # noqa: F401
    except ImportError:
        from tapyard.base import ConfigError

        raise ConfigError("the conformance kit replays cassettes with vcrpy: pip install 'tapyard[testing]'") from None
    reports = run_kits(target, connector)
    if as_json:
        print_json([r.to_json() for r in reports])
    else:
        for report in reports:
            console.print(report.render(), markup=False, highlight=False)
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


@group.command("outdated", cls=Command)
def outdated(
    registry: str | None = typer.Option(None, "--registry", metavar="URL", help="Registry URL or mirror folder."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List installed connector packages that have a newer release in the registry."""
    from tapyard.cli._market import outdated as run

    run(registry=registry, as_json=as_json)
