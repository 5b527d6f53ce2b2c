"""The marketplace commands: ``publish``, ``search``, ``install``, ``upgrade``, ``uninstall``,
``connectors outdated`` and the ``registry`` group (serve, mirror, register, key, token, use, yank).

Searching and installing need no login. The registry server itself is a
separate distribution (``tapyard-registry``); ``tapyard registry serve`` runs
it in its own process and the core never imports it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer

from tapyard.cli._output import console, err_console, print_json
from tapyard.cli._typer import Command, Group

REGISTRY_HELP = "Registry URL or mirror folder (default: $TAPYARD_REGISTRY, else `tapyard registry use`, else http://127.0.0.1:8765/)."

registry_group = typer.Typer(help="Run, mirror and publish to a connector registry.", no_args_is_help=True, cls=Group)
token_group = typer.Typer(help="Make, list and revoke publisher tokens.", no_args_is_help=True, cls=Group)
registry_group.add_typer(token_group, name="token")


def _source(registry: str | None) -> Any:
    from tapyard.marketplace import open_source

    return open_source(registry)


def _say(line: str) -> None:
    err_console.print(line, markup=False)


def search(
    query: str = typer.Argument("", help="Words to look for (name, description, vendor, streams)."),
    vendor: str | None = typer.Option(None, "--vendor", help="Only this vendor."),
    category: str | None = typer.Option(None, "--category", help="Only this category."),
    auth: str | None = typer.Option(None, "--auth", help="Only connectors with this auth kind."),
    level: str | None = typer.Option(None, "--level", help="Only this support level (none, community, certified)."),
    limit: int = typer.Option(50, "--limit", min=1, max=500, help="At most this many results."),
    registry: str | None = typer.Option(None, "--registry", metavar="URL", help=REGISTRY_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Search a registry's connectors (no login needed)."""
    filters = {k: v for k, v in (("vendor", vendor), ("category", category), ("auth", auth), ("level", level)) if v}
    source = _source(registry)
    try:
        result = source.search(query, filters, limit)
    finally:
        source.close()
    if as_json:
        print_json(result)
        return
    if not result["results"]:
        console.print(f"No connector matches {query!r}.", markup=False)
        return
    from rich.table import Table

    table = Table("package", "version", "publisher", "level", "description", box=None, pad_edge=False)
    for p in result["results"]:
        description = p.get("summary") or (p["connectors"][0]["description"] if p.get("connectors") else "")
        table.add_row(p["name"], p.get("version", ""), p.get("publisher", ""), p.get("support_level", ""), description)
    console.print(table)


def _confirm(yes: bool) -> Any:
    def confirm(plan: Any, permissions: list[str]) -> bool:
        _say(f"{plan.name} {plan.version} by {plan.publisher}: verified (signed index, checksum, publisher signature)")
        for line in permissions:
            _say(f"  permission: {line}")
        if yes:
            return True
        if not sys.stdin or not sys.stdin.isatty():
            from tapyard.marketplace import RegistryError

            raise RegistryError("not installed: confirm in a terminal, or pass --yes to install without asking")
        return bool(typer.confirm("Install it?", default=False))

    return confirm


def install(
    requirement: str = typer.Argument(..., metavar="NAME[==VERSION]", help="The package to install."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Install without asking (the permissions are still shown)."),
    registry: str | None = typer.Option(None, "--registry", metavar="URL", help=REGISTRY_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print what was installed as JSON."),
) -> None:
    """Verify and install a connector package from a registry (no login needed)."""
    _install(requirement, yes, registry, as_json, upgrade_only=False)


def _install(requirement: str, yes: bool, registry: str | None, as_json: bool, *, upgrade_only: bool) -> None:
    from tapyard.marketplace import install as run

    source = _source(registry)
    try:
        plan = run(source, requirement, confirm=_confirm(yes), upgrade_only=upgrade_only, say=_say)
    finally:
        source.close()
    verb = "upgraded" if upgrade_only else "installed"
    if plan is None:
        if as_json:
            print_json({"installed": None, "up_to_date": requirement})
        else:
            console.print(f"{requirement} is already installed and up to date.", markup=False)
        return
    if as_json:
        print_json({"name": plan.name, "version": plan.version, "publisher": plan.publisher, verb: True})
    else:
        console.print(f"{verb} {plan.name} {plan.version}", markup=False)


def upgrade(
    name: str = typer.Argument(..., help="The installed package to upgrade."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Upgrade without asking."),
    registry: str | None = typer.Option(None, "--registry", metavar="URL", help=REGISTRY_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print what was upgraded as JSON."),
) -> None:
    """Upgrade an installed connector package to the newest release this core supports."""
    _install(name, yes, registry, as_json, upgrade_only=True)


def uninstall(name: str = typer.Argument(..., help="The connector package to remove.")) -> None:
    """Remove an installed connector package (pip in a subprocess)."""
    from tapyard.marketplace import uninstall as run

    removed = run(name)
    console.print(f"uninstalled {removed}", markup=False)


def publish(
    dist: Path = typer.Argument(..., metavar="DIST", help="A connector project folder (built first) or a .whl file."),
    registry: str | None = typer.Option(None, "--registry", metavar="URL", help=REGISTRY_HELP),
    token: str | None = typer.Option(None, "--token", help="Publisher token (default: $TAPYARD_REGISTRY_TOKEN or the saved one)."),
    skip_kit: bool = typer.Option(False, "--skip-kit", help="Do not run the conformance kit here (the registry still does)."),
    source: Path | None = typer.Option(None, "--source", metavar="SDIST", help="The source archive to send with a .whl (made from a folder)."),
    as_json: bool = typer.Option(False, "--json", help="Print the registry's answer as JSON."),
) -> None:
    """Build (given a folder), check, sign and upload a connector package."""
    from tapyard.marketplace import publish as run

    registry_source = _source(registry)
    try:
        result = run(registry_source, dist, token=token, run_kit=not skip_kit, sdist=source, say=_say)
    finally:
        registry_source.close()
    if as_json:
        print_json(result)
    else:
        score = f" (conformance score {result['score']:.0f}, {result['support_level']})" if result.get("score") is not None else ""
        console.print(f"published {result['name']} {result['version']}{score}", markup=False)


def outdated(
    registry: str | None = typer.Option(None, "--registry", metavar="URL", help=REGISTRY_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List installed connector packages that have a newer release this core supports."""
    from tapyard.marketplace import outdated as run

    source = _source(registry)
    try:
        rows = run(source)
    finally:
        source.close()
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("Every installed connector package is up to date.", markup=False)
        return
    from rich.table import Table

    table = Table("package", "installed", "latest", "publisher", box=None, pad_edge=False)
    for row in rows:
        table.add_row(row["name"], row["installed"], row["latest"], str(row["publisher"]))
    console.print(table)


@registry_group.command("serve", cls=Command)
def serve(
    db: str | None = typer.Option(None, "--db", metavar="URL", help="Database URL (default: SQLite in the data directory)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8765, "--port", help="Port to listen on."),
    data: Path | None = typer.Option(None, "--data", metavar="DIR", help="Data directory (artifacts, keys)."),
    timestamp_hours: float = typer.Option(24.0, "--timestamp-hours", metavar="HOURS", help="How long a signed timestamp stays valid."),
    no_kit: bool = typer.Option(False, "--no-kit", help="Publish without running the conformance kit."),
) -> None:
    """Run the registry server (needs the tapyard-registry package)."""
    import importlib.util

    if importlib.util.find_spec("tapyard_registry") is None:
        from tapyard.marketplace import RegistryError

        raise RegistryError("the registry server is not installed: pip install tapyard-registry")
    args = [sys.executable, "-m", "tapyard_registry", "serve", "--host", host, "--port", str(port)]
    if db:
        args += ["--db", db]
    if data:
        args += ["--data", str(data)]
    args += ["--timestamp-hours", str(timestamp_hours)] + (["--no-kit"] if no_kit else [])
    sys.stdout.flush()
    sys.stderr.flush()
    # its own process image: the core never imports the server, and signals reach uvicorn directly
    os.execv(sys.executable, args)


@registry_group.command("mirror", cls=Command)
def mirror(
    dest: Path = typer.Argument(..., metavar="DEST", help="Folder to write the mirror into."),
    registry: str | None = typer.Option(None, "--registry", metavar="URL", help=REGISTRY_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print what was copied as JSON."),
) -> None:
    """Copy a registry into a folder (verified) for air-gapped installs: --registry DEST then works offline."""
    from tapyard.marketplace import mirror as run

    source = _source(registry)
    try:
        result = run(source, dest, say=_say)
    finally:
        source.close()
    if as_json:
        print_json(result)
    else:
        console.print(f"mirrored {result['packages']} packages ({result['artifacts']} files) into {dest}", markup=False)


@registry_group.command("register", cls=Command)
def register(
    namespace: str = typer.Argument(..., help="The namespace to own (lowercase letters, digits, hyphens)."),
    display_name: str = typer.Option("", "--name", help="The publisher's name as people read it."),
    registry: str | None = typer.Option(None, "--registry", metavar="URL", help=REGISTRY_HELP),
    save: bool = typer.Option(True, "--save/--no-save", help="Keep the token in the data directory (0600)."),
    as_json: bool = typer.Option(False, "--json", help="Print the registration as JSON."),
) -> None:
    """Register as a publisher with this machine's signing key (made now if there is none)."""
    from tapyard.marketplace import register as run
    from tapyard.marketplace import save_token

    source = _source(registry)
    try:
        result = run(source, namespace, display_name)
    finally:
        source.close()
    where = str(save_token(result["token"])) if save else None
    if as_json:
        print_json({**result, "saved_to": where})
        return
    console.print(f"registered {result['namespace']} with key {result['keyid'][:16]}", markup=False)
    console.print(f"token: {result['token']}", markup=False)
    if where:
        console.print(f"(saved to {where}; it is shown only now)", markup=False)


@registry_group.command("key", cls=Command)
def key(as_json: bool = typer.Option(False, "--json", help="Print the key as JSON.")) -> None:
    """Show this machine's publisher public key (made now if there is none)."""
    from tapyard.marketplace import ensure_key, public_key_pem

    path, made = ensure_key()
    if as_json:
        print_json({"path": str(path), "made": made, "public_key": public_key_pem()})
    else:
        console.print(("made " if made else "") + str(path), markup=False)
        console.print(public_key_pem().strip(), markup=False)


@registry_group.command("trust", cls=Command)
def trust(
    root: Path = typer.Argument(..., metavar="ROOT_FILE", help="The registry's root metadata (its tuf/1.root.json), got out of band."),
    registry: str | None = typer.Option(None, "--registry", metavar="URL", help=REGISTRY_HELP),
) -> None:
    """Pin a registry's root keys instead of trusting them on first contact."""
    from tapyard.marketplace import pin_root

    try:
        data = root.read_bytes()
    except OSError as exc:
        from tapyard.marketplace import RegistryError

        raise RegistryError(f"cannot read {root}: {exc.strerror or exc}") from None
    source = _source(registry)
    keys = pin_root(source, data)
    console.print(f"{source.display}: trusting root keys {keys} (and the roots they sign)", markup=False)


@registry_group.command("use", cls=Command)
def use(location: str = typer.Argument(..., metavar="URL", help="Registry URL or mirror folder.")) -> None:
    """Make a registry the default for search, install and publish."""
    from tapyard.marketplace import save_default_registry

    save_default_registry(location)
    console.print(f"default registry: {location}", markup=False)


def _authorized(registry: str | None, token: str | None) -> tuple[Any, dict[str, str]]:
    from tapyard.marketplace import read_token

    return _source(registry), {"Authorization": f"Bearer {read_token(token)}"}


def _call(method: str, path: str, registry: str | None, token: str | None, **kwargs: Any) -> Any:
    import httpx

    from tapyard.marketplace import RegistryError, registry_answer, registry_client

    source, headers = _authorized(registry, token)
    try:
        response = registry_client(source).request(method, source.url(path), headers=headers, **kwargs)
    except httpx.HTTPError as exc:
        raise RegistryError(f"cannot reach the registry at {source.display}: {type(exc).__name__}") from None
    finally:
        source.close()
    return registry_answer(response, path)


@token_group.command("create", cls=Command)
def token_create(
    scopes: str = typer.Option("publish", "--scopes", metavar="LIST", help="Comma-separated: publish, yank, keys, tokens."),
    description: str = typer.Option("", "--description", help="What the token is for."),
    registry: str | None = typer.Option(None, "--registry", metavar="URL", help=REGISTRY_HELP),
    token: str | None = typer.Option(None, "--token", help="A token with the 'tokens' scope."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Make a new publisher token with the given scopes (shown once)."""
    result = _call("POST", "api/v1/tokens", registry, token,
                   json={"scopes": [s.strip() for s in scopes.split(",") if s.strip()], "description": description})
    if as_json:
        print_json(result)
    else:
        console.print(f"token {result['token_id']} ({', '.join(result['scopes'])}): {result['token']}", markup=False)


@token_group.command("list", cls=Command)
def token_list(
    registry: str | None = typer.Option(None, "--registry", metavar="URL", help=REGISTRY_HELP),
    token: str | None = typer.Option(None, "--token", help="A token with the 'tokens' scope."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List your tokens (ids and scopes, never the secrets)."""
    result = _call("GET", "api/v1/tokens", registry, token)
    rows = result.get("result", [])
    if as_json:
        print_json(rows)
        return
    for row in rows:
        console.print(f"{row['token_id']}  {','.join(row['scopes'])}  {'revoked' if row['revoked'] else 'active'}  {row['description']}", markup=False)


@token_group.command("revoke", cls=Command)
def token_revoke(
    token_id: str = typer.Argument(..., metavar="ID", help="The token's id (from `tapyard registry token list`)."),
    registry: str | None = typer.Option(None, "--registry", metavar="URL", help=REGISTRY_HELP),
    token: str | None = typer.Option(None, "--token", help="A token with the 'tokens' scope."),
) -> None:
    """Revoke a token: the registry refuses it from now on."""
    _call("DELETE", f"api/v1/tokens/{token_id}", registry, token)
    console.print(f"revoked {token_id}", markup=False)


@registry_group.command("yank", cls=Command)
def yank(
    name: str = typer.Argument(..., help="Package name."),
    version: str = typer.Argument(..., help="The version to yank."),
    reason: str = typer.Option("", "--reason", help="Why (shown in the catalog)."),
    undo: bool = typer.Option(False, "--undo", help="Unyank instead."),
    registry: str | None = typer.Option(None, "--registry", metavar="URL", help=REGISTRY_HELP),
    token: str | None = typer.Option(None, "--token", help="A token with the 'yank' scope."),
) -> None:
    """Yank a release: installs skip it unless it is pinned."""
    verb = "unyank" if undo else "yank"
    _call("POST", f"api/v1/packages/{name}/{version}/{verb}", registry, token, json={"reason": reason})
    console.print(f"{verb}ed {name} {version}", markup=False)


def register_commands(app: typer.Typer) -> None:
    """Add the marketplace commands to the root app."""
    app.command("search", cls=Command)(search)
    app.command("install", cls=Command)(install)
    app.command("upgrade", cls=Command)(upgrade)
    app.command("uninstall", cls=Command)(uninstall)
    app.command("publish", cls=Command)(publish)
    app.add_typer(registry_group, name="registry")
