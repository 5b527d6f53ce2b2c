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
