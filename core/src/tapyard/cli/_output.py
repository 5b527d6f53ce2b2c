"""Output helpers shared by the command groups: JSON, tables, progress."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["console", "err_console", "print_json", "progress_enabled"]


class _LazyConsole:
    """A rich Console made on first use, so commands that print JSON never import rich."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    @property
    def real(self) -> Console:
        """The rich Console itself: what rich's own objects (Progress, Live) must be given.

        rich enters its console as a context manager and looks up special methods
        on the type, which a ``__getattr__`` proxy cannot answer.
        """
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def __enter__(self) -> Console:
        return self.real.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.real.__exit__(*exc)


console: Any = _LazyConsole(highlight=False, soft_wrap=True)
err_console: Any = _LazyConsole(stderr=True, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    """One JSON document on standard output (no colours, no wrapping)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def progress_enabled() -> bool:
    """Progress bars only on a terminal, and never with --quiet."""
    from tapyard.cli._context import current

    return bool(err_console.is_terminal) and not current().quiet
