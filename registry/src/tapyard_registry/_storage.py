"""Where artifacts live: a directory, behind an interface an object store can also implement."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Protocol

__all__ = ["ArtifactStore", "DirectoryStore"]


class ArtifactStore(Protocol):
    """Artifacts by their target path (``<package>/<filename>``)."""

    def put(self, path: str, data: bytes) -> None: ...
    def get(self, path: str) -> bytes | None: ...
    def delete(self, path: str) -> None: ...


class DirectoryStore:
    """Artifacts as files under one directory, each written to a temporary name and renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _file(self, path: str) -> Path:
        parts = path.split("/")
        if len(parts) != 2 or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            raise ValueError(f"not an artifact path: {path!r}")
        return self.root / parts[0] / parts[1]

    def put(self, path: str, data: bytes) -> None:
        target = self._file(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, target)

    def get(self, path: str) -> bytes | None:
        try:
            return self._file(path).read_bytes()
        except (OSError, ValueError):
            return None

    def delete(self, path: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._file(path).unlink()
