"""Keeping a signal from landing half-way through a step that must finish.

Python raises ``KeyboardInterrupt`` (or whatever a handler raises) between any
two bytecodes of the main thread, including right after a C call such as a
database commit has returned. A sync that counts what it committed would then
lose count of the last transaction. :func:`deferred_signals` holds SIGINT,
SIGTERM and SIGHUP for the length of a ``with`` block, then hands any that came
to the handler that was in place, so the exception is raised after the block:
the commit and its accounting happen together or not at all.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

__all__ = ["deferred_signals"]

_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP during the block; deliver them after it.

    Only signals whose handler is Python code are held (one left at the OS's
    default ends the process at once, as it would have anyway; an ignored one
    stays ignored), and only in the main thread, the one Python runs signal
    handlers in. Each held signal is delivered once, in arrival order, when the
    block ends, whether it ends normally or with an exception.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[tuple[int, FrameType | None]] = []
    previous: dict[int, Any] = {}

    def hold(signum: int, frame: FrameType | None) -> None:
        held.append((signum, frame))

    for signum in _SIGNALS:
        handler = signal.getsignal(signum)
        if callable(handler):
            previous[signum] = handler
            signal.signal(signum, hold)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum, frame in held:
            handler = previous[signum]
            handler(signum, frame)
