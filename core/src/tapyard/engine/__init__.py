"""The sync engine: reading a connector's streams into a destination with its state
(``_sync``), schema drift (``_drift``), deferred signals while a batch commits
(``_signals``) and replaying dead letters (``_replay``). It may import every layer
below it, including ``tapyard.plugins``. (Named ``engine``, not ``sync``: ``tapyard.sync`` is
the public function, which a subpackage of that name would shadow.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tapyard.base import lazy_exports

if TYPE_CHECKING:
    from tapyard.engine._drift import (
        AWKWARD_ROW_SCHEMA,
        AWKWARD_ROWS,
        UNICODE,
        Drift,
        awkward_jsonl,
        schema_drift,
    )
    from tapyard.engine._replay import (
        replay_dead_letters,
    )
    from tapyard.engine._signals import (
        deferred_signals,
    )
    from tapyard.engine._sync import (
        StreamResult,
        SyncResult,
        plan_units,
        sync,
    )

__all__ = [
    "AWKWARD_ROWS",
    "AWKWARD_ROW_SCHEMA",
    "UNICODE",
    "Drift",
    "StreamResult",
    "SyncResult",
    "awkward_jsonl",
    "deferred_signals",
    "plan_units",
    "replay_dead_letters",
    "schema_drift",
    "sync",
]

# Imported on first use, so that importing one module of this layer does not
# load the rest of it (tapyard and its CLI start without httpx or SQLAlchemy).
__getattr__ = lazy_exports(
    __name__,
    {
        "_drift": ("AWKWARD_ROWS", "AWKWARD_ROW_SCHEMA", "Drift", "UNICODE", "awkward_jsonl", "schema_drift"),
        "_replay": ("replay_dead_letters",),
        "_signals": ("deferred_signals",),
        "_sync": ("StreamResult", "SyncResult", "plan_units", "sync"),
    },
)
