"""``tapyard registry mirror DEST``: a static copy of a registry for air-gapped teams.

The mirror holds the listing (``api/v1/``), every version of the signed
index the current snapshot refers to (``tuf/``) with the whole root chain,
and every artifact (``targets/``). It is verified before it is put in place,
with the same client workflow an install uses, and an install from it is
verified the same way: a mirror can be served by any static file server or
read as a folder, and it cannot change what publishers signed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tapyard.marketplace._errors import RegistryError
from tapyard.marketplace._source import Source
from tapyard.marketplace._trust import Verifier, trust_dir

__all__ = ["mirror"]


def _write(root: Path, relative: str, data: bytes) -> None:
    target = root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def _need(source: Source, relative: str) -> bytes:
    data = source.read(relative, max_length=64 * 1024 * 1024)
    if data is None:
        raise RegistryError(f"the registry at {source.display} has no {relative}; the mirror was not written")
    return data


def mirror(source: Source, dest: Path, say: Callable[[str], None] = lambda _line: None) -> dict[str, Any]:
    """Copy the registry at ``source`` into ``dest`` (replaced whole once verified)."""
    if not source.is_http and source.root is not None and dest.resolve() == source.root:
        raise RegistryError("the mirror's destination is the registry folder itself")
    if dest.exists() and not dest.is_dir():
        raise RegistryError(f"{dest} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / "tuf" / "timestamp.json").exists():
        raise RegistryError(f"{dest} is a folder that is not empty and holds no mirror; give an empty or new folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        counts = _copy(source, staging, say)
        say("verifying the copy")
        _verify(source, staging, counts["paths"])
        if dest.exists():
            old = dest.with_name(f".{dest.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dest, old)
            os.replace(staging, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"packages": counts["packages"], "artifacts": len(counts["paths"]), "dest": str(dest)}


def _copy(source: Source, root: Path, say: Callable[[str], None]) -> dict[str, Any]:
    from tuf.api.metadata import Metadata, Snapshot, Timestamp

    say("copying the signed index")
    version = 1
    while (data := source.read(f"tuf/{version}.root.json")) is not None:
        _write(root, f"tuf/{version}.root.json", data)
        version += 1
    if version == 1:
        raise RegistryError(f"{source.display} serves no signed index; is it a tapyard registry?")
    timestamp_bytes = _need(source, "tuf/timestamp.json")
    timestamp = Metadata[Timestamp].from_bytes(timestamp_bytes)
    snapshot_name = f"tuf/{timestamp.signed.snapshot_meta.version}.snapshot.json"
    snapshot_bytes = _need(source, snapshot_name)
    snapshot = Metadata[Snapshot].from_bytes(snapshot_bytes)
    _write(root, snapshot_name, snapshot_bytes)
    for name, meta in snapshot.signed.meta.items():
        relative = f"tuf/{meta.version}.{name}"
        _write(root, relative, _need(source, relative))
    index_bytes = _need(source, "api/v1/index.json")
    _write(root, "api/v1/index.json", index_bytes)
    paths = []
    names = [p["name"] for p in json.loads(index_bytes).get("packages", [])]
    say(f"copying {len(names)} packages")
    for name in names:
        document_bytes = _need(source, f"api/v1/packages/{name}.json")
        _write(root, f"api/v1/packages/{name}.json", document_bytes)
        for release in json.loads(document_bytes).get("releases", []):
            relative = f"targets/{release['path']}"
            _write(root, relative, _need(source, relative))
            paths.append(str(release["path"]))
    # the timestamp last: a reader never sees a timestamp naming a snapshot not yet copied
    _write(root, "tuf/timestamp.json", timestamp_bytes)
    return {"packages": len(names), "paths": paths}


def _verify(source: Source, staging: Path, paths: list[str]) -> None:
    copy = Source(str(staging))
    with tempfile.TemporaryDirectory(prefix="tapyard-mirror-trust-") as scratch:
        trusted = trust_dir(source) / "root.json"
        metadata_dir = Path(scratch) / "metadata"
        metadata_dir.mkdir()
        if trusted.exists():
            # verify the copy against the root this machine already trusts for the origin
            shutil.copy(trusted, metadata_dir / "root.json")
        verifier = Verifier(copy, metadata_dir)
        verifier.refresh()
        for path in paths:
            verifier.download(path, Path(scratch))
