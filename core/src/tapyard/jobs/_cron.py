"""Cron schedules in a time zone, with the DST semantics tapyard promises.

A schedule is a five-field cron expression read in an IANA time zone. Its fire
times are the local wall-clock times the expression matches, each mapped to
one instant (UTC):

- a local time that does not exist (the clock jumps forward over it) fires
  once, at the instant the gap ends (02:30 on a spring-forward night in New
  York fires at 03:00 EDT, together with anything else in the gap: one tick);
- a local time that happens twice (the clock falls back) fires once, at its
  first occurrence (``fold=0``);
- two local times that map to one instant fire once.

The expression is matched by ``cronsim`` on naive local times, and the mapping
to instants is done here with ``zoneinfo``, so the semantics do not depend on
how a cron library treats aware datetimes.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["Schedule", "check_cron", "check_timezone"]

UTC = dt.UTC


def check_cron(expr: str) -> str:
    """``expr`` normalised, or a ``ValueError`` saying in one line what is wrong."""
    from cronsim import CronSim, CronSimError

    text = " ".join(str(expr).split())
    if len(text.split(" ")) != 5:
        raise ValueError(
            f"bad cron expression {_shown(expr)}: it needs five fields (minute hour day-of-month month day-of-week), "
            f"like '*/15 * * * *'"
        )
    try:
        CronSim(text, dt.datetime(2000, 1, 1))
    except (CronSimError, ValueError) as exc:
        raise ValueError(f"bad cron expression {_shown(expr)}: {str(exc).rstrip('.')}") from None
    return text


def check_timezone(name: str) -> ZoneInfo:
    """The zone ``name``, or a ``ValueError`` saying it is unknown."""
    try:
        if not name or name != name.strip() or ".." in name or name.startswith("/"):
            raise ValueError
        return _zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {_shown(name)}: use an IANA name such as UTC, Europe/Paris or America/New_York"
        ) from None


@functools.lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _shown(text: object, limit: int = 60) -> str:
    value = str(text)
    return repr(value if len(value) <= limit else value[: limit - 3] + "...")


class Schedule:
    """The fire instants of one cron expression in one time zone."""

    def __init__(self, expr: str, timezone: str = "UTC") -> None:
        self.expr = check_cron(expr)
        self.zone = check_timezone(timezone)

    def _instant(self, local: dt.datetime) -> dt.datetime:
        """The instant a naive local wall time fires at (see the module docstring)."""
        aware = local.replace(tzinfo=self.zone, fold=0)
        instant = aware.astimezone(UTC)
        if instant.astimezone(self.zone).replace(tzinfo=None) != local:
            # The time does not exist: ``fold=0`` reads it with the offset from
            # before the gap, which lands after the gap; the gap ends at the first
            # whole instant whose local time is past ``local``.
            instant = self._gap_end(instant)
        return instant

    def _gap_end(self, inside: dt.datetime) -> dt.datetime:
        """The first instant after a forward jump that contains ``inside`` (UTC)."""
        # Transitions fall on whole minutes in every zone the tz database holds;
        # step back minute by minute while the offset stays the one after the gap.
        offset = inside.astimezone(self.zone).utcoffset()
        moment = inside.replace(second=0, microsecond=0)
        for _ in range(24 * 60):
            before = moment - dt.timedelta(minutes=1)
            if before.astimezone(self.zone).utcoffset() != offset:
                return moment
            moment = before
        return inside

    def after(self, moment: dt.datetime) -> Iterator[dt.datetime]:
        """Fire instants (aware, UTC) strictly after ``moment`` (aware), in order, each once."""
        from cronsim import CronSim

        local = moment.astimezone(self.zone).replace(tzinfo=None)
        # Every wall time after ``local`` maps to an instant after ``moment``,
        # except in a repeated hour (those map to its first pass, already gone, and
        # are dropped below); a minute back covers sub-minute ``moment`` values.
        start = local - dt.timedelta(minutes=1)
        last: dt.datetime | None = None
        for wall in CronSim(self.expr, start):
            instant = self._instant(wall)
            if instant <= moment or (last is not None and instant <= last):
                continue
            last = instant
            yield instant

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The first fire instant strictly after ``moment``."""
        return next(self.after(moment))

    def between(self, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
        """Fire instants in ``(start, end]``."""
        out = []
        for instant in self.after(start):
            if instant > end:
                break
            out.append(instant)
        return out
