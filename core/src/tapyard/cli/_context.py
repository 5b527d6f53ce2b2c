"""The state of one command line: its plugin set and its root flags.

``main()`` makes one :class:`CliState` per invocation and makes it current for
the invocation (:func:`using`, a context variable: per thread, per task);
commands read it with :func:`current`. Nothing of it goes through
``os.environ``, so two command lines in one process (tests, a host program
calling ``tapyard.testing.run_cli`` in threads) never see each other's flags.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tapyard.plugins import Plugins

__all__ = ["CliState", "current", "using"]


@dataclass
class CliState:
    """The plugin set a command line uses, and what its root options asked for."""

    plugins: Plugins
    #: --quiet: no progress display
    quiet: bool = False
    #: --debug: tracebacks instead of one-line errors
    debug: bool = False

    @classmethod
    def default(cls, *, strict: bool = False, quiet: bool = False, debug: bool = False) -> CliState:
        """The state of a command line run with the process default plugins (``--strict-plugins``:
        the same plugins, strict)."""
        from tapyard.plugins import default_plugins

        plugins = default_plugins()
        return cls(plugins.with_flags(strict=True) if strict else plugins, quiet=quiet, debug=debug)


_current: contextvars.ContextVar[CliState | None] = contextvars.ContextVar("tapyard_cli_state", default=None)


@contextlib.contextmanager
def using(state: CliState) -> Iterator[CliState]:
    """Make ``state`` the current command line's for the duration of the block."""
    token = _current.set(state)
    try:
        yield state
    finally:
        _current.reset(token)


def adopt(state: CliState) -> contextvars.Token[CliState | None]:
    """Make ``state`` current until the token is reset (for the app's own callback,
    when the app is invoked without ``main()``, as typer's test runner does)."""
    return _current.set(state)


def release(token: contextvars.Token[CliState | None]) -> None:
    _current.reset(token)


def running() -> CliState | None:
    """The current command line's state, if one was made current."""
    return _current.get()


def current() -> CliState:
    """The state of the command line running in this thread (a default one when none was made current)."""
    return _current.get() or CliState.default()
