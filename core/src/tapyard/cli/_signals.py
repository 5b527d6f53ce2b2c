"""How a command line stops: Ctrl-C, SIGTERM and SIGHUP become a KeyboardInterrupt
in the main thread with the exit code 128 + the signal, and a standard output
that was closed at start-up fails every write. Kept apart from ``tapyard.cli``
so that the command groups use them without importing the app that imports them.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

import typer

__all__ = ["interrupted", "interrupted_exit_code", "stdout_closed"]

# --- signals ------------------------------------------------------------------------
#
# Ctrl-C (SIGINT), SIGTERM (cron, systemd, `kill`) and SIGHUP (the terminal went
# away) all stop a command the same way: a KeyboardInterrupt in the main thread,
# which unwinds every `with` block (a transaction rolls back, rich shows the cursor
# again, the destination closes); the exit code is 128 + the signal's number. A
# second signal while that clean-up runs ends the process at once: what was
# committed is already safe on disk.

_STOP_SIGNALS = tuple(
    s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None
)
_received: list[int] = []
_said: list[str] = []


def interrupted_exit_code() -> int:
    """The exit code for a command stopped by a signal: 128 + its number (130 for
    Ctrl-C, 143 for SIGTERM); 130 when no signal was seen (an interrupt raised by code)."""
    return 128 + (_received[0] if _received else signal.SIGINT)


def interrupted(message: str = "interrupted") -> typer.Exit:
    """Say in one line on stderr how a command was interrupted; the exit to raise."""
    _said.append(message)
    with contextlib.suppress(OSError, ValueError):
        print(message, file=sys.stderr, flush=True)
    return typer.Exit(interrupted_exit_code())


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _received:
        _force_exit(signum)
    _received.append(signum)
    raise KeyboardInterrupt


def _force_exit(signum: int) -> None:
    """A second signal: leave now, with the cursor shown again on a terminal."""
    with contextlib.suppress(Exception):
        if sys.stderr is not None and sys.stderr.isatty():
            sys.stderr.write("\x1b[?25h\n")
        if sys.stderr is not None:
            sys.stderr.write("interrupted again; stopping now\n")
            sys.stderr.flush()
    os._exit(128 + _received[0])


def _install_signals() -> dict[int, Any]:
    """Our handler for each stop signal left at Python's default; returns what to restore.

    A signal the caller ignores stays ignored (a job started with ``nohup``, or in
    the background of a non-interactive shell, is meant to survive it), and one a
    host program handles is its own.
    """
    installed: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return installed
    _received.clear()
    _said.clear()
    for signum in _STOP_SIGNALS:
        current = signal.getsignal(signum)
        if current in (signal.default_int_handler, signal.SIG_DFL):
            installed[signum] = current
            signal.signal(signum, _on_signal)
    return installed


def _restore_signals(installed: dict[int, Any]) -> None:
    for signum, handler in installed.items():
        signal.signal(signum, handler)


class _ClosedOutput(io.TextIOBase):
    """``sys.stdout`` when descriptor 1 was closed at start-up (``cmd >&-``): every
    write fails as the OS would have failed it, so a command whose output is lost
    says so instead of finishing as if it had been read."""

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, "standard output is closed")

    def fileno(self) -> int:
        raise OSError(errno.EBADF, "standard output is closed")

    def isatty(self) -> bool:
        return False


def stdout_closed() -> bool:
    """Whether this process was started with no standard output at all."""
    return sys.stdout is None or isinstance(sys.stdout, _ClosedOutput)
