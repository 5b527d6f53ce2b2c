"""What the scheduler's fork server loads once, so that each run forked from it
starts at once: the sync engine, the control plane's modules, and the installed
connectors (their packages and the plugin manager that lists them)."""

from __future__ import annotations

import contextlib

import tapyard
import tapyard.jobs._worker

_ = tapyard.sync  # the sync engine (the facade imports it on first use)
with contextlib.suppress(Exception):  # a broken plugin is the run's to report, not the server's
    tapyard.collect_connectors()
