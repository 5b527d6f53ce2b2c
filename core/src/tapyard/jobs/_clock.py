"""The scheduler's clock: the system's, or a test clock shared by processes.

Schedule times (which tick is due) are read from this clock; leases,
heartbeats and timeouts always use real time, because they measure how long a
process has been silent, not where the calendar is.

A test clock is a JSON file named by ``TAPYARD_TEST_CLOCK``:
``{"at": "2026-03-08T06:50:00+00:00", "real": 1780000000.0, "rate": 60}``
means "at real time ``real`` (epoch seconds) the clock read ``at``, and it runs
``rate`` times as fast as real time" (``rate`` 0: frozen). Every process that
names the file reads the same time, so several schedulers can be run across a
DST change in seconds. The file is re-read when it changes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

__all__ = ["Clock", "clock", "write_test_clock"]


class Clock:
    """Wall-clock time for schedules; ``rate`` says how fast it runs against real time."""

    def __init__(self, path: str | None = None) -> None:
        self.path = Path(path) if path else None
        self._stamp: tuple[float, int] | None = None
        self._at = 0.0
        self._real = 0.0
        self._rate = 1.0

    def _load(self) -> None:
        assert self.path is not None
        stat = self.path.stat()
        stamp = (stat.st_mtime, stat.st_size)
        if stamp == self._stamp:
            return
        data = json.loads(self.path.read_text())
        self._at = dt.datetime.fromisoformat(data["at"]).timestamp()
        self._real = float(data.get("real", time.time()))
        self._rate = float(data.get("rate", 1.0))
        self._stamp = stamp

    @property
    def rate(self) -> float:
        """Clock seconds per real second (1 for the system clock)."""
        if self.path is None:
            return 1.0
        self._load()
        return self._rate

    def timestamp(self) -> float:
        """Now, as epoch seconds of this clock."""
        if self.path is None:
            return time.time()
        self._load()
        return self._at + (time.time() - self._real) * self._rate

    def now(self) -> dt.datetime:
        """Now, aware, in UTC."""
        return dt.datetime.fromtimestamp(self.timestamp(), dt.UTC)

    def real_seconds(self, clock_seconds: float) -> float:
        """How many real seconds pass while this clock moves ``clock_seconds`` (inf when frozen)."""
        if clock_seconds <= 0:
            return 0.0
        rate = self.rate
        return clock_seconds / rate if rate > 0 else float("inf")


def clock() -> Clock:
    """The clock of this process: the test clock when ``TAPYARD_TEST_CLOCK`` names one."""
    return Clock(os.environ.get("TAPYARD_TEST_CLOCK") or None)


def write_test_clock(path: str | os.PathLike[str], at: dt.datetime, rate: float = 1.0) -> None:
    """Set the test clock in ``path`` to read ``at`` now and run at ``rate`` (atomically)."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps({"at": at.isoformat(), "real": time.time(), "rate": rate}))
    os.replace(tmp, target)
