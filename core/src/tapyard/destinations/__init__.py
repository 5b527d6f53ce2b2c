"""Where records land: the destination contract and batch (``_base``), the
table contract every table destination implements and its SQL merge machinery
(``_tables``), and the SQLite, PostgreSQL, DuckDB and JSON Lines
destinations. It may import ``tapyard.base`` only; a destination never sees HTTP, auth, sources or plugins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tapyard.base import lazy_exports

if TYPE_CHECKING:
    from tapyard.destinations._base import (
        Batch,
        Destination,
        StoredDeadLetter,
        cursor_sort_key,
        default_destination_url,
        open_destination,
        url_path,
    )
    from tapyard.destinations._duckdb import (
        DuckDBDestination,
    )
    from tapyard.destinations._jsonl import (
        JSONLDestination,
    )
    from tapyard.destinations._postgresql import (
        PostgreSQLDestination,
    )
    from tapyard.destinations._sqlite import (
        SQLiteDestination,
    )
    from tapyard.destinations._tables import (
        MergeDestination,
        TableDestination,
    )

__all__ = [
    "Batch",
    "Destination",
    "DuckDBDestination",
    "JSONLDestination",
    "MergeDestination",
    "PostgreSQLDestination",
    "SQLiteDestination",
    "StoredDeadLetter",
    "TableDestination",
    "cursor_sort_key",
    "default_destination_url",
    "open_destination",
    "url_path",
]

# Imported on first use, so that importing one module of this layer does not
# load the rest of it (tapyard and its CLI start without httpx or SQLAlchemy).
__getattr__ = lazy_exports(
    __name__,
    {
        "_base": ("Batch", "Destination", "StoredDeadLetter", "cursor_sort_key", "default_destination_url", "open_destination", "url_path"),
        "_duckdb": ("DuckDBDestination",),
        "_jsonl": ("JSONLDestination",),
        "_postgresql": ("PostgreSQLDestination",),
        "_sqlite": ("SQLiteDestination",),
        "_tables": ("MergeDestination", "TableDestination"),
    },
)
