"""``tapyard creds``: store, inspect, audit and log in with credentials in the vault.

No command prints a secret value: listings show names, kinds, connectors and
times, and ``show`` shows field names with their values masked. The vault key
comes from ``TAPYARD_VAULT_KEY``, ``TAPYARD_VAULT_PASSPHRASE`` or the OS keyring;
on a terminal, with none of those, the passphrase is asked for.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from tapyard.cli._output import console, err_console, print_json, progress_enabled

if TYPE_CHECKING:
    from pydantic import BaseModel

    from tapyard.base import Connector
    from tapyard_credentials import CredentialInfo, Vault, VaultKey

group = typer.Typer(
    help="Store, inspect and audit credentials in the vault.",
    no_args_is_help=True,
)

VAULT_HELP = "Vault URL or path (default: $TAPYARD_VAULT, else vault.db in the data directory)."


@group.callback()
def _callback(
    ctx: typer.Context,
    vault: str | None = typer.Option(None, "--vault", help=VAULT_HELP),
) -> None:
    ctx.obj = {"vault": vault}


def _vault_url(ctx: typer.Context) -> str | None:
    obj = ctx.obj if isinstance(ctx.obj, dict) else {}
    value = obj.get("vault")
    return value if isinstance(value, str) else None


# --- opening the vault --------------------------------------------------------------


def interactive() -> bool:
    """Whether a person is at the terminal (prompts are allowed); never with a
    standard input or error that is closed (``<&-``)."""
    stdin, stderr = sys.stdin, sys.stderr
    return stdin is not None and stderr is not None and stdin.isatty() and stderr.isatty()


def _prompt_key(*, creating: bool, now: bool = False) -> VaultKey:
    from tapyard_credentials import VaultKey

    def ask() -> str:
        if creating:
            err_console.print("Creating a new vault. Choose a passphrase (it cannot be recovered).")
        value = typer.prompt(
            "Vault passphrase", hide_input=True, confirmation_prompt=creating, err=True
        )
        return str(value)

    return VaultKey.from_passphrase(ask() if now else ask, source="the passphrase typed")


def _key_for(location: str, *, ready: bool = False) -> VaultKey | None:
    """An explicit key only when a passphrase must be asked for; else None (the
    backend reads the environment or the keyring itself).

    With ``ready``, a vault that does not exist yet must be creatable now: its new
    passphrase is asked for at once, and having no key at all is an error here
    rather than when the vault is first written.
    """
    from tapyard.auth import local_path, url_scheme
    from tapyard.base import ConfigError
    from tapyard_credentials import KeyringUnavailableError, VaultKey

    if url_scheme(location) not in ("", "file"):
        return None
    if VaultKey.from_env() is not None:  # a malformed TAPYARD_VAULT_KEY fails here
        return None
    try:
        VaultKey.from_keyring()
        return None
    except KeyringUnavailableError:
        pass
    creating = not local_path(location).exists()
    if not interactive():
        if ready and creating:
            raise ConfigError(
                "no vault key: set TAPYARD_VAULT_KEY (make one with `tapyard creds keygen`), "
                "set TAPYARD_VAULT_PASSPHRASE, or store a key in the OS keyring"
            )
        return None
    return _prompt_key(creating=creating, now=ready and creating)


@contextlib.contextmanager
def opened_vault(url: str | None, *, ready: bool = False) -> Iterator[Vault]:
    """The vault at ``url`` for one command, closed afterwards.

    With ``ready`` the key is checked before this returns: an existing vault is
    opened with it (asking for the passphrase on a terminal), and a new one has
    its key (or passphrase) in hand, so a command fails on a wrong or missing key
    before it asks the user for anything else.

    It gets a redactor of its own: only the values of ``SecretStr`` fields go to
    the process-wide one (as credentials are validated), so that a token URL or a
    client id never gets masked out of messages.
    """
    from tapyard.auth import open_vault, vault_location
    from tapyard.cli._context import current
    from tapyard_credentials import Redactor

    location = vault_location(url)
    vault = open_vault(
        location, key=_key_for(location, ready=ready), redactor=Redactor(), plugins=current().plugins
    )
    try:
        if ready:
            vault.list()
        yield vault
    finally:
        vault.close()


# --- reading fields -----------------------------------------------------------------


def _is_secret(annotation: Any) -> bool:
    from pydantic import SecretStr

    if annotation is SecretStr:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return any(_is_secret(arg) for arg in typing.get_args(annotation))
    return False


def _scalar(key: str, value: Any, source: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    from tapyard.base import ConfigError

    raise ConfigError(f"field {key!r} in {source} must be a string, not {type(value).__name__}")


def _fields_from_json(path: str) -> dict[str, str]:
    from tapyard.base import ConfigError

    source = "standard input" if path == "-" else repr(path)
    if path == "-" and sys.stdin is None:
        raise ConfigError("standard input is closed: give --from-json a file, or pipe the JSON in")
    try:
        text = sys.stdin.read() if path == "-" else Path(path).expanduser().read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {source}: {type(exc).__name__}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a JSON object of field names and values")
    fields = {}
    for key, value in data.items():
        text_value = _scalar(str(key), value, source)
        if text_value is not None:
            fields[str(key)] = text_value
    return fields


def _model_fields(model: type[BaseModel]) -> list[str]:
    """The fields a person supplies for a credential model (not its kind and name)."""
    return [name for name in model.model_fields if name not in ("kind", "name")]


def _fields_from_env(prefix: str, model: type[BaseModel], what: str) -> dict[str, str]:
    """The fields of ``model`` found as ``PREFIX<FIELD>`` variables; says on stderr
    which variables it read and which with the prefix it left alone.

    Only the model's fields are read: a prefix such as ``AWS_`` is shared with
    variables that are no credential field (``AWS_CA_BUNDLE``,
    ``AWS_DEFAULT_REGION``), and those must not make the credential invalid.
    """
    from tapyard.base import ConfigError

    if not prefix:
        raise ConfigError("--from-env needs a prefix, such as STRIPE_ (for STRIPE_API_KEY)")
    wanted = {prefix + name.upper(): name for name in _model_fields(model)}
    fields = {wanted[var]: value for var, value in os.environ.items() if var in wanted and value != ""}
    if not fields:
        raise ConfigError(
            f"no environment variable {prefix}<FIELD> is set for any field of {what} "
            f"({', '.join(sorted(wanted))})"
        )
    used = sorted(var for var in wanted if wanted[var] in fields)
    ignored = sorted(v for v in os.environ if v.startswith(prefix) and v not in wanted)
    note = f"read {', '.join(used)}"
    if ignored:
        shown = ", ".join(ignored[:8]) + (f" and {len(ignored) - 8} more" if len(ignored) > 8 else "")
        note += f"; ignored {shown} (not fields of {what})"
    err_console.print(note, markup=False, highlight=False)
    return fields


def _fields_from_prompts(model: type[BaseModel]) -> dict[str, str]:
    from tapyard.auth import TOKEN_FIELDS

    fields: dict[str, str] = {}
    for name, info in model.model_fields.items():
        required = info.is_required()
        if name in ("kind", "name") or (name in TOKEN_FIELDS and not required):
            continue
        label = name + (f" ({info.description})" if info.description else "")
        secret = _is_secret(info.annotation)
        if required:
            value = typer.prompt(label, hide_input=secret, err=True)
        else:
            default = info.get_default()
            hint = "" if default in (None, "") else f"; default {default}"
            value = typer.prompt(
                f"{label} [optional{hint}]", default="", show_default=False, hide_input=secret, err=True
            )
        if str(value) != "":
            fields[name] = str(value)
    return fields


def _pick_kind(connector: Connector, kind: str | None) -> str:
    from tapyard.base import ConfigError

    takes = [k for k in connector.auth_kinds if k != "none"]
    if kind is not None:
        return kind
    if len(takes) == 1:
        return takes[0]
    if not takes:
        raise ConfigError(f"connector {connector.name!r} takes no credentials")
    raise ConfigError(
        f"connector {connector.name!r} takes {', '.join(takes)} credentials: pick one with --kind"
    )


# --- output helpers -----------------------------------------------------------------


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "never"


def _info_json(info: CredentialInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "kind": info.kind,
        "connector": info.connector,
        "allowed_connectors": list(info.allowed_connectors),
        "fields": list(info.field_names),
        "created_at": _when(info.created_at),
        "updated_at": _when(info.updated_at),
        "last_used_at": info.last_used_at.isoformat(timespec="seconds") if info.last_used_at else None,
    }


def _table(*columns: str) -> Any:
    from rich.table import Table

    return Table(*columns, box=None, pad_edge=False)


def _row(table: Any, *cells: str) -> None:
    from rich.text import Text

    table.add_row(*(Text(cell) for cell in cells))


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False)


# --- commands -------------------------------------------------------------------------


@group.command("keygen")
def keygen(
    keyring: bool = typer.Option(
        False, "--keyring", help="Store the key in the OS keyring instead of printing it."
    ),
) -> None:
    """Make a new random vault key (32 bytes, URL-safe base64).

    Printed on standard output only if it can be (see ``rotate-key``); stored in
    the OS keyring only where no vault key is stored yet: replacing one would
    leave every vault made with it unopenable.
    """
    from tapyard.base import ConfigError
    from tapyard_credentials import (
        KeyringUnavailableError,
        VaultKey,
        VaultKeyError,
        generate_key,
        save_key_to_keyring,
    )

    if keyring:
        try:
            VaultKey.from_keyring()
            stored = True
        except KeyringUnavailableError:  # no secure keyring (saving says so) or no key in it
            stored = False
        except VaultKeyError:  # something that is no key is stored there: keep it too
            stored = True
        if stored:
            raise ConfigError(
                "the OS keyring already holds a vault key, and a vault made with it could not be "
                "opened without it: re-key that vault with `tapyard creds rotate-key` instead"
            )
        save_key_to_keyring(generate_key())
        _say("stored a new vault key in the OS keyring")
        return
    _check_stdout_for_key(nothing="nothing was made")
    _show_key(generate_key(), nothing="nothing was made")
    err_console.print(
        "Keep this key secret and safe: export it as TAPYARD_VAULT_KEY. Without it the vault "
        "cannot be opened.",
        markup=False,
    )


@group.command("add")
def add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The credential's name."),
    connector: str = typer.Option(..., "--connector", "-C", help="The connector it is for."),
    kind: str | None = typer.Option(
        None, "--kind", help="Auth kind (default: the connector's only one)."
    ),
    from_env: str | None = typer.Option(
        None, "--from-env", metavar="PREFIX", help="Read fields from PREFIX<FIELD> variables."
    ),
    from_json: str | None = typer.Option(
        None, "--from-json", metavar="FILE", help="Read fields from a JSON object ('-': stdin)."
    ),
    allow: list[str] = typer.Option(
        [], "--allow", help="Another connector allowed to use it (repeatable)."
    ),
    replace: bool = typer.Option(False, "--replace", help="Replace a credential of that name."),
) -> None:
    """Store a credential, validated against the connector's credential model.

    Fields come from prompts (secrets hidden), --from-env PREFIX or --from-json FILE.
    """
    from tapyard.auth import validate_credential_fields
    from tapyard.base import ConfigError, secret_values
    from tapyard.cli._context import current
    from tapyard_credentials import CredentialNotFoundError, redactor

    if from_env is not None and from_json is not None:
        raise ConfigError("give --from-env or --from-json, not both")
    plugins = current().plugins
    conn = plugins.get_connector(connector)
    kind = _pick_kind(conn, kind)
    model = conn.credential_model(kind, plugins.auth_strategies())
    if from_env is None and from_json is None and not interactive():
        raise ConfigError(
            "no field values given: pass --from-env PREFIX or --from-json FILE ('-' for "
            "standard input), or run in a terminal to be asked"
        )
    # The vault first: a wrong or missing key, or a name already taken, is said
    # before anyone types a secret that would then be thrown away.
    with opened_vault(_vault_url(ctx), ready=True) as vault:
        if not replace:
            try:
                vault.info(name)
            except CredentialNotFoundError:
                pass
            else:
                raise ConfigError(f"credential {name!r} already exists; pass --replace to replace it")
        if from_json is not None:
            fields = _fields_from_json(from_json)
        elif from_env is not None:
            fields = _fields_from_env(from_env, model, f"{conn.name}'s {kind} credentials")
        else:
            fields = _fields_from_prompts(model)
        validated = validate_credential_fields(
            model, fields, kind=kind, name=name, connector=conn.name
        )
        redactor.register(*secret_values(validated))
        info = vault.put(
            name, connector=conn.name, kind=kind, fields=fields, allowed_connectors=allow, actor="cli"
        )
    allowed = ", ".join(info.allowed_connectors)
    _say(
        f"stored credential {name!r}: {kind} for {conn.name} (fields: {', '.join(info.field_names)}; "
        f"allowed: {allowed})"
    )


@group.command("list")
def list_credentials(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the stored credentials (names, kinds, connectors, last use; no values)."""
    with opened_vault(_vault_url(ctx)) as vault:
        infos = vault.list()
    if as_json:
        print_json([_info_json(i) for i in infos])
        return
    if not infos:
        _say("No credentials stored. Add one with: tapyard creds add NAME --connector CONNECTOR")
        return
    table = _table("name", "kind", "connector", "allowed", "last used")
    for info in infos:
        _row(
            table,
            info.name,
            info.kind,
            info.connector,
            ", ".join(info.allowed_connectors),
            _when(info.last_used_at),
        )
    console.print(table)


@group.command("show")
def show(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The credential's name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one credential: kind, connectors, times and field names (values masked)."""
    with opened_vault(_vault_url(ctx)) as vault:
        info = vault.info(name)
    details = _info_json(info)
    details["fields"] = {field: "***" for field in info.field_names}
    if as_json:
        print_json(details)
        return
    for key in ("name", "kind", "connector"):
        _say(f"{key}: {details[key]}")
    _say(f"allowed connectors: {', '.join(info.allowed_connectors)}")
    _say(f"created: {details['created_at']}; updated: {details['updated_at']}; last used: {_when(info.last_used_at)}")
    for field in info.field_names:
        _say(f"  {field}: ***")


@group.command("rm")
def remove(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The credential's name."),
) -> None:
    """Remove a credential."""
    with opened_vault(_vault_url(ctx)) as vault:
        vault.remove(name, actor="cli")
    _say(f"removed credential {name!r}")


@group.command("rotate-key")
def rotate_key(
    ctx: typer.Context,
    new_key_env: str | None = typer.Option(
        None, "--new-key-from-env", metavar="VAR", help="Take the new key from this variable."
    ),
    passphrase: bool = typer.Option(False, "--passphrase", help="Ask for a new passphrase instead."),
    key_file: Path | None = typer.Option(
        None,
        "--key-file",
        metavar="FILE",
        help="Write the generated key to FILE (a new file, mode 0600) instead of standard output.",
    ),
) -> None:
    """Re-encrypt every credential under a new key (a generated one by default).

    A generated key is handed over before the old one stops working: printed on
    standard output (and read by whoever reads it: a pipe must be drained, a file
    synced to disk) or written to --key-file, inside the re-encryption's
    transaction, which commits only once that succeeded. If it cannot be, nothing
    changes and the vault still opens with the current key.
    """
    from tapyard.base import ConfigError, TapyardError
    from tapyard.engine import deferred_signals
    from tapyard_credentials import VaultKey, generate_key

    generated: str | None = None
    if new_key_env is not None and passphrase:
        raise ConfigError("give --new-key-from-env or --passphrase, not both")
    if key_file is not None and (new_key_env is not None or passphrase):
        raise ConfigError("--key-file is where a generated key goes; it does not go with --new-key-from-env or --passphrase")
    if new_key_env is not None:
        value = os.environ.get(new_key_env)
        if not value:
            raise ConfigError(f"environment variable {new_key_env} is not set")
        new_key = VaultKey.from_key(value, source=new_key_env)
    elif passphrase:
        if not interactive():
            raise ConfigError("--passphrase needs a terminal to ask for the new passphrase")
        phrase = typer.prompt("New vault passphrase", hide_input=True, confirmation_prompt=True, err=True)
        new_key = VaultKey.from_passphrase(str(phrase), source="the new passphrase")
    else:
        # Where the key will go is checked before anything is asked or opened.
        if key_file is not None:
            _check_key_file(key_file)
        else:
            _check_stdout_for_key()
        generated = generate_key()
        new_key = VaultKey.from_key(generated, source="the new key")
    # Signals are held (below) from the moment the key is handed over.
    with contextlib.ExitStack() as held:
        handed_over = False
        with opened_vault(_vault_url(ctx), ready=True) as vault:
            from_keyring = _opened_from_keyring(vault)
            bar: Any = None

            def hand_over() -> None:
                nonlocal handed_over
                if generated is None or handed_over:
                    return
                if bar is not None:
                    bar.stop()
                if key_file is not None:
                    _write_key_file(key_file, generated)
                else:
                    _show_key(generated)
                handed_over = True
                # From here on the user holds the key: a Ctrl-C or SIGTERM waits until
                # the commit and the lines saying what happened are done, so the outcome
                # is never in doubt.
                held.enter_context(deferred_signals())

            def progress(done: int, total: int) -> None:
                # Called inside the transaction; the last call comes after every row is
                # re-encrypted and before the commit. If handing the key over raises,
                # the transaction rolls back and the current key stays the only one.
                if bar is not None:
                    bar.update(task, completed=done, total=total)
                if done >= total:
                    hand_over()

            try:
                if progress_enabled():
                    from rich.progress import Progress

                    bar = Progress(
                        console=err_console.real, transient=True, redirect_stdout=False, redirect_stderr=False
                    )
                    with bar:
                        task = bar.add_task("re-encrypting", total=None)
                        key_id = vault.rotate_key(new_key, actor="cli", progress=progress)
                else:
                    key_id = vault.rotate_key(new_key, actor="cli", progress=progress)
            except KeyboardInterrupt:
                # Before the key was in the user's hands (afterwards signals are held):
                # the transaction rolled back.
                from tapyard.cli._signals import interrupted

                raise interrupted(
                    "interrupted; the vault was not changed and still opens with the current key"
                    + ("" if generated is None or key_file is not None else " (a new key that reached standard output was never used)")
                ) from None
            except Exception as exc:
                if not handed_over:
                    raise
                where = f"written to {key_file}" if key_file is not None else "printed above"
                raise TapyardError(
                    f"{_redact_error(exc)}; the vault was not re-keyed: it still opens with the current "
                    f"key, and the new key {where} was never used"
                ) from exc
            # A backend that reports no progress has rotated without handing the key
            # over yet: do it now (the local vault always reports).
            hand_over()
        if from_keyring:
            # the keyring keeps the old key: the next command would try it and fail
            err_console.print(
                "the OS keyring still holds the old key, which no longer opens the vault: "
                "store the new one there (keyring set tapyard vault-key) or set TAPYARD_VAULT_KEY",
                markup=False,
            )
        if generated is None:
            _say(f"re-encrypted the vault under the new key (key id {key_id})")
        elif key_file is not None:
            _say(
                f"re-encrypted the vault under the new key (key id {key_id}), written to {key_file} "
                "(mode 0600); it replaces TAPYARD_VAULT_KEY from now on"
            )
        else:
            err_console.print(
                f"re-encrypted the vault under the new key (key id {key_id}), printed on standard "
                "output; it replaces TAPYARD_VAULT_KEY from now on: keep it secret",
                markup=False,
            )


# --- handing a new key over -------------------------------------------------------------


def _opened_from_keyring(vault: Vault) -> bool:
    """Whether the OS keyring's key is the one that opened ``vault``: a local vault
    with no key in the environment, and a key in the keyring (see :func:`_key_for`)."""
    from tapyard.auth import url_scheme
    from tapyard_credentials import VaultError, VaultKey

    if url_scheme(vault.location) not in ("", "file") or VaultKey.from_env() is not None:
        return False
    try:
        VaultKey.from_keyring()
    except VaultError:
        return False
    return True


def _redact_error(exc: BaseException) -> str:
    from tapyard_credentials import redact

    return redact(str(exc)) or type(exc).__name__


_UNCHANGED = (
    "the vault was not changed and still opens with the current key (pass --key-file FILE "
    "to have the key written to a new file)"
)


def _key_not_handed_over(reason: str, nothing: str = _UNCHANGED) -> Exception:
    from tapyard.base import ConfigError

    return ConfigError(f"cannot hand the new key over: {reason}; {nothing}")


def _stdout_fd() -> int | None:
    """The descriptor behind ``sys.stdout``, or None when it has none (a test's capture)."""
    try:
        return int(sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        return None


def _check_stdout_for_key(nothing: str = _UNCHANGED) -> None:
    """Refuse an output that would lose the key for sure: none at all (``>&-``) or /dev/null."""
    import stat

    from tapyard.cli._signals import stdout_closed

    if sys.stdout is None or stdout_closed():  # descriptor 1 was closed at start-up
        raise _key_not_handed_over("standard output is closed", nothing)
    fd = _stdout_fd()
    if fd is None:
        return
    try:
        mode = os.fstat(fd)
    except OSError:
        raise _key_not_handed_over("standard output is closed", nothing) from None
    if stat.S_ISCHR(mode.st_mode) and mode.st_rdev == os.stat(os.devnull).st_rdev:
        raise _key_not_handed_over("standard output is /dev/null", nothing)


def _show_key(key: str, nothing: str = _UNCHANGED) -> None:
    """Write ``key`` to standard output and make sure it arrived.

    Written straight to the descriptor (no buffer left holding the key for a
    later, failing flush); a regular file is synced to disk; a pipe is waited
    on until its reader has read everything, and a reader that exits without
    reading (``| true``) is a failure.
    """
    import stat

    _check_stdout_for_key(nothing)
    data = (key + "\n").encode("ascii")
    fd = _stdout_fd()
    try:
        if fd is None:
            sys.stdout.write(key + "\n")
            sys.stdout.flush()
            return
        sys.stdout.flush()
        while data:
            data = data[os.write(fd, data) :]
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            os.fsync(fd)
        elif stat.S_ISFIFO(mode):
            _wait_until_read(fd)
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            reason = "the reader of standard output went away without reading it"
        else:
            reason = f"cannot write to standard output ({os.strerror(exc.errno) if exc.errno else type(exc).__name__})"
        raise _key_not_handed_over(reason, nothing) from None


def _wait_until_read(fd: int) -> None:
    """Wait until the pipe on ``fd`` is drained; OSError(EPIPE) if its reader left first."""
    import array
    import fcntl
    import select
    import termios

    poller = select.poll()
    poller.register(fd, 0)  # only the error and hang-up conditions, always reported
    unread = array.array("i", [0])
    while True:
        fcntl.ioctl(fd, termios.FIONREAD, unread)
        if unread[0] == 0:
            return
        for _, events in poller.poll(100):
            if events & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                raise OSError(errno.EPIPE, os.strerror(errno.EPIPE))


def _check_key_file(path: Path) -> None:
    if os.path.lexists(path):
        raise _key_not_handed_over(f"{path} exists; name a new file")
    if not path.parent.is_dir():
        raise _key_not_handed_over(f"the directory of {path} does not exist")


def _write_key_file(path: Path, key: str) -> None:
    """Create ``path`` (never replacing a file), mode 0600, holding ``key``, synced to disk."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise _key_not_handed_over(f"cannot create {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        os.fchmod(fd, 0o600)
        data = (key + "\n").encode("ascii")
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise _key_not_handed_over(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None
    os.close(fd)
    with contextlib.suppress(OSError):  # the directory entry too, so a power cut keeps the file
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


@group.command("audit")
def audit(
    ctx: typer.Context,
    name: str | None = typer.Option(None, "--name", help="Only entries about this credential."),
    limit: int = typer.Option(50, "--limit", min=1, help="How many entries, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the vault's append-only audit log: every read, write and refusal."""
    with opened_vault(_vault_url(ctx)) as vault:
        entries = vault.audit(limit=limit, name=name)
    rows = [
        {
            "id": e.id,
            "at": e.at.isoformat(timespec="seconds"),
            "actor": e.actor,
            "action": e.action,
            "name": e.name,
            "connector": e.connector,
            "outcome": e.outcome,
            "user": e.user,
            "pid": e.pid,
        }
        for e in entries
    ]
    if as_json:
        print_json(rows)
        return
    if not rows:
        _say("The audit log is empty.")
        return
    table = _table("id", "at", "actor", "action", "credential", "connector", "outcome", "user", "pid")
    for entry in entries:
        _row(
            table,
            str(entry.id),
            entry.at.isoformat(timespec="seconds"),
            entry.actor,
            entry.action,
            entry.name or "-",
            entry.connector or "-",
            entry.outcome,
            entry.user,
            str(entry.pid),
        )
    console.print(table)


@group.command("login")
def login(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="An oauth2_authorization_code credential."),
    no_browser: bool = typer.Option(
        False, "--no-browser", help="Print the authorization URL instead of opening a browser."
    ),
    timeout: float = typer.Option(300.0, "--timeout", min=1, help="Seconds to wait for the redirect."),
) -> None:
    """Log in with OAuth 2.0 authorization code + PKCE and store the tokens.

    Opens the browser at the authorization URL and catches the redirect on a
    127.0.0.1 loopback listener, checking its state.
    """
    import webbrowser

    from tapyard.auth import load_credentials
    from tapyard.base import ConfigError
    from tapyard.cli._context import current

    with opened_vault(_vault_url(ctx)) as vault:
        info = vault.info(name)
        plugins = current().plugins
        strategy_cls = plugins.auth_strategies().get(info.kind)
        if strategy_cls is None or not hasattr(strategy_cls, "login"):
            raise ConfigError(
                f"credential {name!r} is a {info.kind} credential: only authorization-code "
                "credentials (oauth2_authorization_code) log in"
            )
        connector = plugins.get_connector(info.connector)
        credentials = load_credentials(vault, name, connector, plugins=plugins)
        strategy: Any = strategy_cls.from_credentials(credentials)

        def announce(url: str) -> None:
            what = "Visit" if no_browser else "Opening your browser; if it does not open, visit"
            err_console.print(f"{what}:\n{url}", markup=False, soft_wrap=True)

        def open_browser(url: str) -> None:
            if not no_browser:
                webbrowser.open(url)

        token = strategy.login(open_browser=open_browser, announce=announce, timeout=timeout)
    lasts = ""
    if token.expires_at is not None:
        import time

        lasts = f"; the access token lasts {max(0, round(token.expires_at - time.time()))}s"
    refresh = "with a refresh token" if token.refresh_token else "without a refresh token"
    _say(f"logged in: credential {name!r} holds new tokens, {refresh}{lasts}")


@group.command("backends")
def backends(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the secret backends (vault URL schemes) installed, and who registered each."""
    from tapyard.cli._context import current

    found = current().plugins.registrations("secret_backend")
    rows = [
        {"scheme": scheme, **found[scheme].owner.to_json()} for scheme in sorted(found)
    ]
    if as_json:
        print_json(rows)
        return
    table = _table("scheme", "plugin", "distribution")
    for r in rows:
        _row(table, r["scheme"], r["plugin"], r["distribution"] or "-")
    console.print(table)
