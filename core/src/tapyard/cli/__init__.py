"""The ``tapyard`` command line.

Command groups live in their own modules and are imported lazily by their
commands, so that ``tapyard --help`` and ``tapyard connectors list`` start
fast. Every error is one line on standard error and a non-zero exit; ``--debug``
shows the traceback instead. The root options (``--debug``, ``-q``, ``-v``,
``--log-level``, ``--strict-plugins``) may be typed before or after the
command, and ``--json`` before it as well as after.

No secret reaches the terminal: every error message, and every log record
(through a ``tapyard_credentials.RedactingFilter`` on the root logger and on the
CLI's log handler), is scrubbed of the secret values loaded in this process.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import typer

from tapyard.cli._signals import (
    _ClosedOutput,
    _install_signals,
    _received,
    _restore_signals,
    _said,
    interrupted,
    interrupted_exit_code,
    stdout_closed,
)
from tapyard.cli._typer import Group, complete

if TYPE_CHECKING:
    from tapyard.cli._context import CliState
    from tapyard.plugins import Plugins

__all__ = ["app", "interrupted", "interrupted_exit_code", "main", "stdout_closed"]

app = typer.Typer(
    name="tapyard",
    cls=Group,
    help="Sync data from vendor APIs into SQLite or JSON Lines.",
    epilog=(
        "Logs: -v shows info logs, -vv debug logs (HTTP requests), --log-level LEVEL any of "
        "debug, info, warning (the default), error, critical. Root options may also follow the command."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"tapyard {version('tapyard')}")
        raise typer.Exit()


_LEVELS = ("debug", "info", "warning", "error", "critical")


@app.callback()
def _root(
    ctx: typer.Context,
    debug: bool = typer.Option(
        False, "--debug", help="Show the traceback of an error (logs stay as -v/--log-level say)."
    ),
    strict_plugins: bool = typer.Option(
        False, "--strict-plugins", help="Fail when a plugin cannot be loaded instead of skipping it."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    show_version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    # The root options go into this command line's own state (made by main(), or
    # here when the app is invoked directly), never into the process environment.
    from tapyard.cli._context import CliState, adopt, release, running

    state = running()
    if state is None:
        token = adopt(CliState.default(strict=strict_plugins, quiet=quiet, debug=debug))
        ctx.call_on_close(lambda: release(token))
        return
    if strict_plugins:
        state.plugins = state.plugins.with_flags(strict=True)
    state.quiet = state.quiet or quiet
    state.debug = state.debug or debug


def _register() -> None:
    """Add the built-in command groups to ``app`` (once).

    Their modules import what they need inside each command, so adding them
    costs little; it happens when this module is imported, so that ``app`` is
    complete for typer's ``CliRunner`` too (plugin commands are added by
    :func:`main`, or ``tapyard.testing.run_cli``).
    """
    if getattr(app, "_tapyard_registered", False):
        return
    from tapyard.cli import (
        _connectors,
        _creds,
        _deadletters,
        _jobs,
        _market,
        _run,
        _runs,
        _scheduler,
        _state,
    )

    app.add_typer(_connectors.group, name="connectors")
    app.add_typer(_creds.group, name="creds")
    app.add_typer(_deadletters.group, name="deadletters")
    app.add_typer(_jobs.group, name="jobs")
    app.add_typer(_runs.group, name="runs")
    app.add_typer(_scheduler.group, name="scheduler")
    app.add_typer(_state.group, name="state")
    app.command("status")(_scheduler.status)
    app.command("worker")(_scheduler.worker)
    _run.register(app)
    _market.register_commands(app)
    complete(app)
    app._tapyard_registered = True  # type: ignore[attr-defined]


def _redact(text: str) -> str:
    """``text`` scrubbed of every secret registered in this process.

    Secrets are registered only through ``tapyard_credentials``; when it was
    never imported there is nothing to scrub, and the CLI does not pay for it.
    """
    module = sys.modules.get("tapyard_credentials._redact")
    return module.redact(text) if module is not None else text


def _vault_error(exc: BaseException) -> bool:
    module = sys.modules.get("tapyard_credentials._exceptions")
    return module is not None and isinstance(exc, module.VaultError)


class _Redacting(logging.Filter):
    """The vault's ``RedactingFilter``, imported when the first record arrives."""

    _real: logging.Filter | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if self._real is None:
            from tapyard_credentials import RedactingFilter

            self._real = RedactingFilter()
        return self._real.filter(record)


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Log records to whatever ``sys.stderr`` is at the time (as logging's last resort does)."""

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(_Redacting())
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _install_logging(level: int) -> tuple[logging.Handler, logging.Filter, int]:
    """Records at ``level`` and above to stderr, redacted."""
    root = logging.getLogger()
    handler, redacting = _Stderr(), _Redacting()
    from tapyard.base import TraceIdFilter, tracing_enabled

    if tracing_enabled():
        # each line names its trace, to find the spans it belongs to
        handler.addFilter(TraceIdFilter())
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s [trace %(trace_id)s]: %(message)s"))
    previous = root.level
    root.addHandler(handler)
    root.addFilter(redacting)
    for other in root.handlers:
        if other is not handler and not any(isinstance(f, _Redacting) for f in other.filters):
            other.addFilter(redacting)
    root.setLevel(level)
    return handler, redacting, previous


def _remove_logging(installed: tuple[logging.Handler, logging.Filter, int]) -> None:
    handler, redacting, previous = installed
    root = logging.getLogger()
    root.removeHandler(handler)
    root.removeFilter(redacting)
    for other in root.handlers:
        other.removeFilter(redacting)
    root.setLevel(previous)


_ROOT_FLAGS = frozenset({"--debug", "--strict-plugins", "--quiet", "-q", "--verbose", "-v", "-vv", "-vvv"})
_ROOT_VALUED = frozenset({"--log-level"})


def _hoist(args: Sequence[str]) -> list[str]:
    """``args`` with the root options moved ahead of the command, wherever they were typed.

    ``tapyard sync sample --debug`` then means ``tapyard --debug sync sample``,
    and ``tapyard --json connectors list`` means ``tapyard connectors list
    --json`` (a command without ``--json`` says so). Nothing after ``--`` moves.
    """
    front: list[str] = []
    rest: list[str] = []
    json_first = named = False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            break
        if arg in _ROOT_FLAGS or arg.startswith("--log-level="):
            front.append(arg)
        elif arg in _ROOT_VALUED and i + 1 < len(args):
            front += args[i : i + 2]
            i += 1
        elif arg == "--json" and not named:
            json_first = True
        else:
            named = named or not arg.startswith("-")
            rest.append(arg)
        i += 1
    if json_first:
        rest.append("--json")
    return front + rest + list(args[i:])


def _take_logging(args: list[str]) -> tuple[int | str, list[str]]:
    """The log level ``-v``/``-vv``/``--log-level`` ask for (WARNING when none does),
    and ``args`` without them; a level that does not exist comes back as its name.

    They are read here, not by typer, because the handler is installed before
    parsing (and typer would import pydantic to coerce their values).
    """
    verbose, named, rest = 0, None, []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        if arg in ("-v", "--verbose"):
            verbose += 1
        elif arg in ("-vv", "-vvv"):
            verbose += len(arg) - 1
        elif arg == "--log-level" and i + 1 < len(args):
            named = args[i + 1]
            i += 1
        elif arg.startswith("--log-level="):
            named = arg.partition("=")[2]
        else:
            rest.append(arg)
        i += 1
    if named is not None:
        return (int(getattr(logging, named.upper())) if named.lower() in _LEVELS else named), rest
    return (logging.WARNING, logging.INFO)[verbose] if verbose < 2 else logging.DEBUG, rest


def _builtin_command(args: Sequence[str]) -> bool:
    """Whether ``args`` run one of tapyard's own commands.

    Those need no plugin commands, so the plugins are not imported to add them
    (a plugin cannot replace a built-in command). ``--help`` and anything else
    load them.
    """
    values = {i + 1 for i, a in enumerate(args) if a in _ROOT_VALUED}
    name = next(
        (a for i, a in enumerate(args) if a not in _ROOT_FLAGS and i not in values and not a.startswith("--log-level=")),
        None,
    )
    if name == "--version":
        return True
    if name is None or name.startswith("-"):
        return False
    added = app.__dict__.get("_tapyard_plugin_commands", {})
    ours = {c.name for c in app.registered_commands if not any(c is a for a in added.get("commands", ()))}
    ours |= {g.name for g in app.registered_groups if not any(g is a for a in added.get("groups", ()))}
    return name in ours


def _plugin_commands(plugins: Plugins | None = None) -> None:
    """Add the commands of ``plugins`` (default: the process default set) to ``app``,
    once per set of registered plugins.

    In one process the plugins can change (tests register and unregister
    them, ``tapyard.testing.run_cli`` runs many command lines): then the
    commands added for the previous set are taken out and asked for again.
    """
    from tapyard.plugins import default_plugins

    pm = (plugins or default_plugins()).pm
    key = (id(pm), frozenset(id(p) for p in pm.get_plugins()))
    state: dict[str, Any] = app.__dict__.setdefault("_tapyard_plugin_commands", {})
    if state.get("key") == key:
        return
    for command in state.get("commands", ()):
        app.registered_commands.remove(command)
    for group in state.get("groups", ()):
        app.registered_groups.remove(group)
    commands, groups = list(app.registered_commands), list(app.registered_groups)
    pm.hook.tapyard_register_commands(cli=app)
    state["commands"] = [c for c in app.registered_commands if not any(c is o for o in commands)]
    state["groups"] = [g for g in app.registered_groups if not any(g is o for o in groups)]
    state["key"] = key
    complete(app)


def _format_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    print(f"warning: {_redact(str(message))}", file=sys.stderr)



#: errors of a write to standard output that the user must hear about
_OUTPUT_ERRORS = frozenset(
    e for e in (errno.ENOSPC, errno.EBADF, errno.EIO, errno.EFBIG, getattr(errno, "EDQUOT", None)) if e
)


def _discard_stdout() -> None:
    """Point descriptor 1 at /dev/null after a write to it failed, so that the
    interpreter's last flush of what is still buffered does not fail again."""
    with contextlib.suppress(Exception):
        fd = sys.stdout.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)


def _guard_standard_descriptors() -> None:
    """Open /dev/null on any of descriptors 0-2 that is closed (``cmd >&-``).

    Otherwise the next file opened (a JSON Lines destination, a vault) would get
    that number and anything written to "standard output" by C code or a child
    process would land in it. Python has already set ``sys.stdout`` (or stdin,
    stderr) to None for a descriptor closed at start-up, so commands still see
    that it is missing.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            with contextlib.suppress(OSError):
                opened = os.open(os.devnull, os.O_RDWR)
                if opened != fd:
                    os.dup2(opened, fd)
                    os.close(opened)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 ok, 1 error, 2 usage error, 130 interrupted
    by Ctrl-C, 143 by SIGTERM)."""
    level, args = _take_logging(_hoist(sys.argv[1:] if argv is None else argv))
    if isinstance(level, str):
        print(f"Error: --log-level {level!r} is not one of {', '.join(_LEVELS)}", file=sys.stderr)
        return 2
    debug = "--debug" in args
    from tapyard.cli._context import CliState, using

    # --strict-plugins is read before the options are parsed: the plugins (whose
    # commands the parser must know) are loaded first.
    state = CliState.default(strict="--strict-plugins" in args, debug=debug)
    _guard_standard_descriptors()
    stdout = sys.stdout
    if stdout is None:
        sys.stdout = _ClosedOutput()
    warnings.showwarning = _format_warning
    _register()
    installed = _install_logging(level)
    signals = _install_signals()
    try:
        with using(state):
            return _main(args, debug, state)
    finally:
        _restore_signals(signals)
        _remove_logging(installed)
        if stdout is None:
            sys.stdout = stdout


def _error(text: str) -> None:
    """Print one error line: the one place errors are shown. Secrets are scrubbed
    first (while the text is whole), then the line is bounded and escaped
    (``safe_line``): input a message quotes (a 10 MB config key, escape
    sequences in a file name) can neither flood nor drive the terminal."""
    from tapyard.base import safe_line

    print(f"Error: {safe_line(_redact(text))}", file=sys.stderr)


def _main(args: list[str], debug: bool, state: CliState) -> int:
    from tapyard.base import TapyardError, safe_line

    try:
        if not _builtin_command(args):
            _plugin_commands(state.plugins)
        code = app(args=args, prog_name="tapyard", standalone_mode=False)
        # Outside standalone mode typer returns the code of a typer.Exit raised by a
        # command (and turns a KeyboardInterrupt it sees into 130).
        if isinstance(code, int) and not isinstance(code, bool):
            if code == 130 and not _said:
                raise interrupted()
            return code
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.TyperException as exc:
        # usage errors (a missing argument, an unknown option): typer's own message, exit 2
        show = getattr(exc, "show", None)
        message = exc.format_message()
        if callable(show) and safe_line(message) == message:
            show()
        else:
            _error(message)  # it quotes an argument too long or unprintable to show as it is
        return int(exc.exit_code)
    except typer.Abort:
        # a prompt answered with Ctrl-C (an interrupt) or Ctrl-D (end of input)
        print("Aborted.", file=sys.stderr)
        return interrupted_exit_code() if _received else 1
    except KeyboardInterrupt:
        if debug:
            raise
        return int(interrupted().exit_code)
    except TapyardError as exc:
        if debug:
            raise
        _error(str(exc))
        return 1
    except BrokenPipeError:
        # The reader of our output went away (``tapyard sync ... | head``).
        sys.stderr.close()
        return 1
    except Exception as exc:
        if debug:
            raise
        if isinstance(exc, OSError) and exc.errno in _OUTPUT_ERRORS:
            # A full disk (``> /dev/full``), a closed or failing output: whatever the
            # command did is done; what it had to say was not written.
            _discard_stdout()
            _error(f"cannot write the output: {exc.strerror or os.strerror(exc.errno or 0)}")
            return 1
        if _vault_error(exc):
            # The vault's errors are safe to show (they never hold a value) and are
            # the user's to fix: a wrong key, a damaged file, a refused access.
            _error(str(exc))
            return 1
        _error(
            f"unexpected {type(exc).__name__}: {exc} (a bug in tapyard or a plugin; "
            f"rerun with --debug for the traceback)"
        )
        return 1
    return 0


def entry() -> None:
    """The console-script entry point."""
    sys.exit(main())


_register()
