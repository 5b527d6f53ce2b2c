"""tapyard-registry: the tapyard marketplace server.

:func:`build` makes a :class:`~tapyard_registry._service.Registry` over a
database URL and a data directory (artifacts, the registry's signing keys);
:func:`create_app` wraps it in the ASGI application that
``tapyard registry serve`` (or ``tapyard-registry serve``) runs on uvicorn.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from tapyard_registry._app import create_app
from tapyard_registry._service import KitResult, Refused, Registry

__all__ = ["KitResult", "Refused", "Registry", "build", "create_app"]


def build(
    db_url: str | None,
    data_dir: Path,
    *,
    kit: Callable[[Path], KitResult] | str | None = "auto",
    timestamp_lifetime: timedelta | None = None,
    writes_per_minute: int = 60,
) -> Registry:
    """A registry keeping its index at ``db_url`` (default: SQLite in ``data_dir``) and files in ``data_dir``.

    ``kit="auto"`` runs the conformance kit on every upload when this core has
    it; pass a callable to run another, or None to publish without one.
    """
    from tapyard_registry._db import open_engine
    from tapyard_registry._kit import kit_available, run_kit_isolated
    from tapyard_registry._storage import DirectoryStore
    from tapyard_registry._tuf import Lifetimes, Repository

    data_dir.mkdir(parents=True, exist_ok=True)
    engine = open_engine(db_url or f"sqlite:///{data_dir / 'registry.db'}")
    lifetimes = Lifetimes(timestamp=timestamp_lifetime) if timestamp_lifetime else Lifetimes()
    repository = Repository(engine, data_dir / "keys", lifetimes)
    if kit == "auto":
        kit = run_kit_isolated if kit_available() else None
    return Registry(repository, DirectoryStore(data_dir / "artifacts"), kit=kit if callable(kit) else None,
                    writes_per_minute=writes_per_minute)
