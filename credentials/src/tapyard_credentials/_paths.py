"""Where tapyard keeps its files. Imports nothing heavy: the sync engine asks for
the data directory (its limiter budgets live there) without paying for the vault
or cryptography."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_dir", "default_vault_path"]


def data_dir() -> Path:
    """Where tapyard keeps its files: ``$TAPYARD_HOME``, else ``$XDG_DATA_HOME/tapyard``,
    else ``~/.local/share/tapyard``."""
    home = os.environ.get("TAPYARD_HOME")
    if home:
        return Path(home).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tapyard"


def default_vault_path() -> Path:
    """``vault.db`` in the :func:`data_dir`."""
    return data_dir() / "vault.db"
