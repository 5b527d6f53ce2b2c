"""The ``tapyard`` command line.

Command groups live in their own modules and are imported lazily by their
commands, so that ``tapyard --help`` and ``tapyard connectors list`` start
fast. Every error is one line on standard error and a non-zero exit; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence

import typer

__all__ = ["app", "main"]

app = typer.Typer(
    name="tapyard",
    help="Sync data from vendor APIs into SQLite, PostgreSQL or JSON Lines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    strict_plugins: bool = typer.Option(
        False, "--strict-plugins", help="Fail when a plugin cannot be loaded instead of skipping it."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    if strict_plugins:
        os.environ["TAPYARD_STRICT_PLUGINS"] = "1"
    if quiet:
        os.environ["TAPYARD_QUIET"] = "1"


def _register() -> None:
    from tapyard.cli import _connectors, _run

    app.add_typer(_connectors.group, name="connectors")
    _run.register(app)


def _plugin_commands() -> None:
    if getattr(app, "_tapyard_plugins_added", False):
        return
    from tapyard._plugins import get_plugin_manager

    get_plugin_manager().hook.tapyard_register_commands(cli=app)
    app._tapyard_plugins_added = True  # type: ignore[attr-defined]


def _format_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 ok, 1 error, 2 usage error, 130 interrupted)."""
    from tapyard._exceptions import TapyardError

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if "--strict-plugins" in args:
        # before the plugin manager is built, which happens ahead of option parsing
        os.environ["TAPYARD_STRICT_PLUGINS"] = "1"
    warnings.showwarning = _format_warning
    _register()
    try:
        _plugin_commands()
        app(args=args, prog_name="tapyard", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.TyperException as exc:
        # usage errors (a missing argument, an unknown option): typer's own message, exit 2
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            print(f"Error: {exc.format_message()}", file=sys.stderr)
        return int(exc.exit_code)
    except typer.Abort:
        print("Aborted.", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        if debug:
            raise
        print("Interrupted.", file=sys.stderr)
        return 130
    except TapyardError as exc:
        if debug:
            raise
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader of our output went away (``tapyard sync ... | head``).
        sys.stderr.close()
        return 1
    except Exception as exc:
        if debug:
            raise
        print(
            f"Error: unexpected {type(exc).__name__}: {exc} (a bug in tapyard or a plugin; "
            f"rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    return 0


def entry() -> None:
    """The console-script entry point."""
    sys.exit(main())
