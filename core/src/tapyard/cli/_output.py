"""Output helpers shared by the command groups: JSON, tables, progress."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich.console import Console

__all__ = ["console", "err_console", "print_json", "progress_enabled"]

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    """One JSON document on standard output (no colours, no wrapping)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def progress_enabled() -> bool:
    """Progress bars only on a terminal, and never with --quiet."""
    return err_console.is_terminal and not os.environ.get("TAPYARD_QUIET")
