"""``tapyard discover``, ``tapyard check`` and ``tapyard sync``: running a connector."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import typer

from tapyard.cli._output import console, err_console, print_json, progress_enabled

if TYPE_CHECKING:
    from pydantic import BaseModel

    from tapyard.base import Connector, Source
    from tapyard.engine import StreamResult, SyncResult

CONFIG_HELP = "Connector configuration: a JSON or YAML file, or inline JSON."
CREDS_HELP = "A credential stored in the vault (tapyard creds add) to run with."
VAULT_HELP = "Vault URL or path (default: $TAPYARD_VAULT, else vault.db in the data directory)."
POLICY_HELP = (
    "Column policies for personal data, e.g. email=hash,phone=drop (FIELD, STREAM.FIELD, @KIND or @*; "
    "hash, mask, drop or keep); repeatable."
)
POLICY_KEY_HELP = (
    "A vault credential holding the key of hash policies "
    "(default: $TAPYARD_POLICY_KEY, else policy.key in the data directory)."
)


def _connector_and_config(
    name: str, config: str | None
) -> tuple[Connector, BaseModel, dict[str, Any] | None, Any]:
    """The connector, its validated config, the config's ``rate_limit`` settings
    (if any) and its column ``policies`` (if any)."""
    from tapyard.base import load_config, split_policies
    from tapyard.cli._context import current
    from tapyard.http import split_rate_limit

    connector = current().plugins.get_connector(name)
    raw, limits = split_rate_limit(connector, load_config(config))
    raw, policies = split_policies(connector, raw)
    return connector, connector.parse_config(raw), limits, policies


def _credentials(
    stack: contextlib.ExitStack, connector: Connector, creds: str | None, vault: str | None
) -> BaseModel | None:
    """The stored credential ``creds`` for a run of ``connector``, or None.

    The vault stays open (in ``stack``) for the run: OAuth strategies save the
    tokens they obtain back into it.
    """
    if creds is None:
        return None
    from tapyard.auth import load_credentials
    from tapyard.cli._context import current
    from tapyard.cli._creds import opened_vault

    opened = stack.enter_context(opened_vault(vault))
    return load_credentials(opened, creds, connector, actor="cli", plugins=current().plugins)


@contextlib.contextmanager
def _open(
    name: str, config: str | None, creds: str | None = None, vault: str | None = None
) -> Iterator[tuple[Connector, Source]]:
    from tapyard.base import RunContext
    from tapyard.cli._context import current

    plugins = current().plugins
    connector, cfg, limits, _ = _connector_and_config(name, config)
    with contextlib.ExitStack() as stack:
        credentials = _credentials(stack, connector, creds, vault)
        hosts = plugins.run_permissions(connector, cfg, credentials)
        context = RunContext(plugins=plugins, credentials=credentials, rate_limit=limits or {}, hosts=hosts)
        with connector.open(cfg, context) as source:
            yield connector, source


def discover(
    name: str = typer.Argument(..., help="Connector name."),
    config: str | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the streams and their JSON Schemas as JSON."),
    creds: str | None = typer.Option(None, "--creds", metavar="NAME", help=CREDS_HELP),
    vault: str | None = typer.Option(None, "--vault", metavar="URL", help=VAULT_HELP),
    policy: list[str] | None = typer.Option(None, "--policy", metavar="FIELD=ACTION", help=POLICY_HELP),
) -> None:
    """Show a connector's streams with their keys, JSON Schemas and personal-data marks."""
    from tapyard.base import Policies, parse_policies, personal_marks
    from tapyard.cli._context import current

    pm = current().plugins
    # The policies are shown, not applied: no key is needed to see them.
    rules = Policies(parse_policies(_policies(_connector_and_config(name, config)[3], policy)))
    with _open(name, config, creds, vault) as (connector, source):
        rules.known_streams(s.name for s in source.streams())
        streams = []
        for stream in source.streams():
            model = pm.hook.tapyard_stream_schema(connector=connector, stream=stream)
            schema = pm.hook.tapyard_json_schema(connector=connector, stream=stream, model=model)
            actions = getattr(rules.for_stream(stream.name, model), "actions", {})
            streams.append(
                {
                    "name": stream.name,
                    "primary_key": list(stream.primary_key),
                    "cursor_field": stream.cursor_field,
                    "deletes": stream.deletes,
                    "description": stream.description,
                    "json_schema": schema,
                    "personal": personal_marks(model),
                    "policies": actions,
                }
            )
        rules.check_used()
    if as_json:
        print_json({"connector": connector.name, "streams": streams})
        return
    from rich.table import Table

    table = Table("stream", "primary key", "cursor", "deletes", "fields", "personal", box=None, pad_edge=False)
    for s in streams:
        fields = ", ".join(s["json_schema"].get("properties", {}))
        marked = {**dict.fromkeys(s["policies"], "personal"), **s["personal"]}
        personal = ", ".join(
            f"{field} ({kind}{', ' + s['policies'][field] if field in s['policies'] else ''})"
            for field, kind in marked.items()
        )
        table.add_row(
            s["name"], ", ".join(s["primary_key"]), s["cursor_field"] or "-", _DELETES[s["deletes"]], fields,
            personal or "-",
        )
    console.print(table)


#: How ``discover`` says a stream's deletes reach the destination.
_DELETES = {
    "vendor": "by vendor",
    "listing": "by listing",
    "none": "not supported",
}


def check(
    name: str = typer.Argument(..., help="Connector name."),
    config: str | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    creds: str | None = typer.Option(None, "--creds", metavar="NAME", help=CREDS_HELP),
    vault: str | None = typer.Option(None, "--vault", metavar="URL", help=VAULT_HELP),
) -> None:
    """Check that the connector can reach its API with this configuration."""
    with _open(name, config, creds, vault) as (connector, source):
        source.check()
    console.print(f"ok: {connector.name} is reachable and answered")


class _Progress:
    """A rich progress display with one line per stream (off when not on a terminal).

    Displayed or not, it keeps each stream's result as the engine reports it
    after a commit, so that an interrupted run can say what it committed.
    """

    def __init__(self, names: list[str] | None) -> None:
        self.enabled = progress_enabled()
        self.tasks: dict[str, Any] = {}
        self.results: dict[str, StreamResult] = {}
        self.progress: Any = None
        if self.enabled:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description:<20}"),
                TextColumn("{task.fields[records]:>10,} records"),
                TextColumn("{task.fields[pages]:>6,} pages"),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=err_console.real,
                transient=False,
            )

    def __enter__(self) -> _Progress:
        if self.progress is not None:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    @property
    def committed(self) -> int:
        """Records committed so far in this run, over every stream."""
        return sum(r.records for r in self.results.values())

    def __call__(self, event: str, result: StreamResult) -> None:
        self.results[result.name] = result
        if self.progress is None:
            return
        task = self.tasks.get(result.name)
        if task is None:
            task = self.tasks[result.name] = self.progress.add_task(
                result.name, total=None, records=0, pages=0, status=""
            )
        status = "" if event == "page" else result.status
        self.progress.update(task, records=result.records, pages=result.pages, status=status)
        if event == "done":
            self.progress.update(task, total=1, completed=1)


def sync(
    name: str = typer.Argument(..., help="Connector name."),
    config: str | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    streams: list[str] | None = typer.Option(
        None, "--streams", "-s", metavar="NAMES", help="Comma-separated stream names, or the option repeated (default: all)."
    ),
    to: str | None = typer.Option(
        None, "--to", metavar="URL", help="Destination URL: sqlite:///file.db (default: tapyard.db in the data directory), postgresql://user@host/db, duckdb:///file.duckdb, jsonl:///file, jsonl:-"
    ),
    full_refresh: bool = typer.Option(False, "--full-refresh", help="Ignore saved state and read everything again; rows the pass did not see are removed when it ends."),
    concurrency: int = typer.Option(4, "--concurrency", metavar="N", min=1, max=64, help="Streams read at once."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout."),
    creds: str | None = typer.Option(None, "--creds", metavar="NAME", help=CREDS_HELP),
    vault: str | None = typer.Option(None, "--vault", metavar="URL", help=VAULT_HELP),
    rate: float | None = typer.Option(
        None, "--rate", metavar="N", min=0.0,
        help="Requests per second at most, for this run (overrides the config and the connector).",
    ),
    max_pages: int = typer.Option(
        100_000, "--max-pages", metavar="N", min=1,
        help="Most pages one stream (or partition) may read before the sync stops it.",
    ),
    hard_delete: bool = typer.Option(
        False, "--hard-delete", help="Remove rows a complete listing found gone, instead of marking them _tapyard_deleted_at."
    ),
    wait: float = typer.Option(
        0.0, "--wait", metavar="SECONDS", min=0, help="Wait this long for another run writing the same streams to end (default: fail at once)."
    ),
    fail_on_dead_letters: bool = typer.Option(
        False, "--fail-on-dead-letters", help="Exit non-zero when any record went to the dead letters."
    ),
    policy: list[str] | None = typer.Option(None, "--policy", metavar="FIELD=ACTION", help=POLICY_HELP),
    policy_key: str | None = typer.Option(None, "--policy-key", metavar="NAME", help=POLICY_KEY_HELP),
    skip_dead_letters: bool = typer.Option(
        False,
        "--skip-dead-letters",
        help="Let a stream's cursor move past records that went to the dead letters "
        "(by default it stays, so the next run reads them again).",
    ),
) -> None:
    """Sync a connector's streams into a destination."""
    from tapyard.base import ConfigError, TapyardError, safe_line
    from tapyard.cli._context import current
    from tapyard.engine import sync as run_sync

    connector, cfg, limits, config_policies = _connector_and_config(name, config)
    if rate is not None:
        limits = {**(limits or {}), "rate": rate}
    # -s a,b and -s a -s b alike (typer keeps every repetition)
    names = [n.strip() for given in streams for n in given.split(",") if n.strip()] if streams else None
    if streams and not names:
        raise ConfigError("--streams names no stream; give a comma-separated list like customers,orders")
    if as_json and to and to.strip() in ("jsonl:-", "jsonl:///-"):
        raise ConfigError("--json and --to jsonl:- both write to stdout; pick one")
    with contextlib.ExitStack() as stack:
        credentials = _credentials(stack, connector, creds, vault)
        key = _policy_key(stack, connector, policy_key, vault)
        policies = _policies(config_policies, policy)
        progress = _Progress(names)
        try:
            with progress:
                result = run_sync(
                    connector,
                    cfg,
                    to=to,
                    streams=names,
                    full_refresh=full_refresh,
                    concurrency=concurrency,
                    progress=progress,
                    credentials=credentials,
                    rate_limit=limits,
                    max_pages=max_pages,
                    hard_delete=hard_delete,
                    wait=wait,
                    policies=policies,
                    policy_key=key,
                    skip_dead_letters=skip_dead_letters,
                    plugins=current().plugins,
                )
        except KeyboardInterrupt:
            # Ctrl-C, SIGTERM or SIGHUP (see tapyard.cli.main): the engine has rolled
            # back the transaction under way and closed the destination; every
            # transaction it counted is committed, with the state to resume from.
            from tapyard.cli._signals import interrupted

            raise interrupted(
                f"interrupted; {progress.committed:,} records committed, run again to resume"
            ) from None
    if as_json:
        summary = result.to_json()
        for stream in summary["streams"]:
            if stream.get("error"):
                stream["error"] = safe_line(_redact(stream["error"]))
            stream["warnings"] = [safe_line(_redact(w)) for w in stream.get("warnings", ())]
        print_json(summary)
    else:
        _summary(result)
    if not result.ok:
        failed = [s for s in result.streams if s.status != "ok"]
        first = failed[0]
        more = f" (and {len(failed) - 1} more streams)" if len(failed) > 1 else ""
        raise TapyardError(f"stream {first.name!r} {first.status}: {first.error or 'cancelled'}{more}")
    dead = sum(s.dead_letters for s in result.streams)
    if fail_on_dead_letters and dead:
        raise TapyardError(
            f"{dead:,} records went to the dead letters (--fail-on-dead-letters); "
            "the rest is committed: see the _tapyard_dead_letters table"
        )


def _policies(from_config: Any, options: list[str] | None) -> dict[str, str]:
    """The run's column policies: the config's ``policies``, then ``--policy`` options over them."""
    from tapyard.base import merge_policies

    return merge_policies(from_config, options)


def _policy_key(
    stack: contextlib.ExitStack, connector: Connector, name: str | None, vault: str | None
) -> bytes | None:
    """The key of hash policies from the vault credential ``name`` (its ``key`` or
    ``api_key`` field, or its only one), or None to use ``TAPYARD_POLICY_KEY`` or the
    installation's own key."""
    if name is None:
        return None
    from tapyard.base import ConfigError
    from tapyard.cli._creds import opened_vault

    opened = stack.enter_context(opened_vault(vault))
    fields = opened.get(name, connector=connector.name, actor="cli").fields
    chosen = fields.get("key") or fields.get("api_key")
    if chosen is None and len(fields) == 1:
        chosen = next(iter(fields.values()))
    if chosen is None:
        raise ConfigError(
            f"credential {name!r} has fields {', '.join(sorted(fields))}: a policy key is its "
            "field key or api_key, or its only field"
        )
    return chosen.get_secret_value().encode()


def _redact(text: str) -> str:
    from tapyard_credentials import redact

    return redact(text)


def _summary(result: SyncResult) -> None:
    """Per stream: what was read, what it did to the destination (inserted,
    updated, deleted or marked deleted), what went to the dead letters; a line
    that says so when nothing changed, and one that flags dead letters."""
    from rich.markup import escape
    from rich.table import Table

    from tapyard.base import safe_line

    http = result.http
    table = Table(
        "stream", "read", "inserted", "updated", "deleted", "dead letters", "seconds", "status",
        box=None, pad_edge=False, title=f"{result.connector} -> {result.destination}", title_justify="left",
    )

    def known(value: int | None) -> str:
        return "-" if value is None else f"{value:,}"

    for s in result.streams:
        status = s.status
        if s.status == "ok" and s.unchanged and not s.dead_letters:
            status = "ok, unchanged"
        dead = f"[bold red]{s.dead_letters:,}[/]" if s.dead_letters else "0"
        table.add_row(
            s.name, f"{s.read:,}", known(s.inserted), known(s.updated), f"{s.deleted:,}", dead,
            f"{s.seconds:.2f}", status,
        )
    out = err_console if result.destination == "jsonl:-" else console
    out.print(table)
    held = [s.name for s in result.streams if s.cursor_held]
    if held:
        from rich.markup import escape

        out.print(
            f"cursor held for {escape(', '.join(held))}: records went to the dead letters; fix the schema and run "
            "tapyard deadletters replay, or sync with --skip-dead-letters to move on"
        )
    requests = http.get("requests", 0)
    reached = f" ({requests / result.seconds:,.1f}/s)" if result.seconds > 0 and requests else ""
    for s in result.streams:
        for warning in s.warnings:
            out.print(f"[yellow]warning:[/] {escape(safe_line(_redact(warning)))}")
    out.print(
        f"{result.records:,} records in {result.seconds:.2f}s; "
        f"{requests:,} requests{reached}, {http.get('retries', 0):,} retries, "
        f"{http.get('throttled', 0):,} throttled (429), "
        f"{http.get('wait_ms', 0) / 1000:.2f}s waiting for the rate limit and retries"
    )
    if result.ok and result.streams and all(s.unchanged and not s.dead_letters for s in result.streams):
        out.print("nothing changed: the destination already held every record as read")
    dead_letters = sum(s.dead_letters for s in result.streams)
    if dead_letters:
        streams = ", ".join(s.name for s in result.streams if s.dead_letters)
        out.print(
            f"[bold red]{dead_letters:,} records went to the dead letters[/] ({escape(streams)}); "
            "see the _tapyard_dead_letters table"
        )


def register(app: typer.Typer) -> None:
    app.command("discover")(discover)
    app.command("check")(check)
    app.command("sync")(sync)
