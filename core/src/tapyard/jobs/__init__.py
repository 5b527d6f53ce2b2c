"""Jobs and the scheduler: scheduled syncs run unattended, recorded in a control plane.

- :mod:`tapyard.jobs._spec`: job definitions (the model, durations, definition files);
- :mod:`tapyard.jobs._db` and ``migrations/``: the control-plane database (Alembic);
- :mod:`tapyard.jobs._store`: jobs, runs and logs in it, with fenced run updates;
- :mod:`tapyard.jobs._cron` and :mod:`tapyard.jobs._clock`: schedules, DST, test clocks;
- :mod:`tapyard.jobs._scheduler`: ticks, claims, leases, heartbeats, retries, timeouts;
- :mod:`tapyard.jobs._worker`: one run in its own process;
- :mod:`tapyard.jobs._alerts` and :mod:`tapyard.jobs._metrics`: alerts and Prometheus metrics.

This is the top layer: it uses the sync engine through the public facade
(``tapyard.sync``, ``tapyard.open_destination``, ``tapyard.load_credentials``).
The operator's guide is docs/jobs.md.

It may import every layer below it (base, http, auth, destinations, sources,
plugins, engine) and the facade; nothing below imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tapyard.base import lazy_exports

if TYPE_CHECKING:
    from tapyard.jobs._celery import celery_app, worker
    from tapyard.jobs._checks import check_job
    from tapyard.jobs._clock import clock
    from tapyard.jobs._cron import Schedule
    from tapyard.jobs._metrics import serve
    from tapyard.jobs._scheduler import Scheduler
    from tapyard.jobs._spec import format_duration, load_definitions, parse_duration
    from tapyard.jobs._store import ACTIVE, ControlPlane, iso
    from tapyard.jobs._worker import execute, start

__all__ = [
    "ACTIVE",
    "ControlPlane",
    "Schedule",
    "Scheduler",
    "celery_app",
    "check_job",
    "clock",
    "execute",
    "format_duration",
    "iso",
    "load_definitions",
    "parse_duration",
    "serve",
    "start",
    "worker",
]

# Imported on first use: a command pays only for the modules it runs.
__getattr__ = lazy_exports(
    __name__,
    {
        "_celery": ("celery_app", "worker"),
        "_checks": ("check_job",),
        "_clock": ("clock",),
        "_cron": ("Schedule",),
        "_metrics": ("serve",),
        "_scheduler": ("Scheduler",),
        "_spec": ("format_duration", "load_definitions", "parse_duration"),
        "_store": ("ACTIVE", "ControlPlane", "iso"),
        "_worker": ("execute", "start"),
    },
)
