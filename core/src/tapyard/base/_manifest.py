"""Connector manifests: what a plugin's connectors are, read without importing them.

A connector package ships ``tapyard-manifest.toml`` beside its ``__init__.py``::

    plugin_api = 1
    publisher = "Acme Corp"

    [[connector]]
    name = "acme"
    description = "Acme widgets and gadgets"
    streams = ["widgets", "gadgets"]
    auth_kinds = ["api_key"]

The version, the distribution name, the licence, the homepage and the core
versions supported come from the package metadata, so they are written once.
``tapyard connectors list`` reads manifests and imports no connector;
``tapyard connectors list --check`` imports every connector and compares it
with its manifest, as the conformance test does. The full contract (display
name, vendor, stream modes, permissions, support level) is the pydantic model
in :mod:`tapyard.base.manifest`, which this fast reader agrees with.

This module imports neither pydantic nor any connector: it is on the path of the
CLI's start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tapyard.base._exceptions import PluginError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = [
    "MANIFEST_FILE",
    "PLUGIN_API_VERSION",
    "ConnectorManifest",
    "ManifestError",
    "manifest_differences",
    "manifest_path",
    "parse_manifest",
    "read_manifest",
]

#: The version of the hook contract between the core and connector plugins.
PLUGIN_API_VERSION = 1

MANIFEST_FILE = "tapyard-manifest.toml"

#: The keys of a ``[[connector]]`` table (the model in ``tapyard.base.manifest``
#: validates their values; the listing reads four of them).
_CONNECTOR_KEYS = frozenset({
    "name", "display_name", "description", "vendor", "categories", "streams", "auth_kinds",
    "support_level", "license", "homepage", "core", "permissions",
})


class ManifestError(PluginError):
    """A manifest file that cannot be read or does not have the expected shape."""


@dataclass(frozen=True)
class ConnectorManifest:
    """One connector as its package's manifest and metadata describe it."""

    name: str
    description: str
    streams: tuple[str, ...]
    auth_kinds: tuple[str, ...]
    plugin_api: int
    #: the entry point that registers it
    plugin: str
    path: str
    publisher: str | None = None
    distribution: str | None = None
    version: str | None = None
    license: str | None = None
    homepage: str | None = None
    requires_core: str | None = None

    def describe(self) -> dict[str, Any]:
        """The fields ``tapyard connectors list --json`` prints."""
        return {
            "name": self.name,
            "version": self.version or "0",
            "distribution": self.distribution,
            "description": self.description,
            "streams": list(self.streams),
            "auth_kinds": list(self.auth_kinds),
        }


def manifest_path(ep: EntryPoint) -> Path | None:
    """Where the manifest of ``ep``'s package would be, found without importing it.

    Only the top-level package named by the entry point is looked up (finding a
    submodule would import its parents); a plugin that is a single module has no
    manifest and is listed by importing it.
    """
    import importlib.util

    top = ep.module.split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / MANIFEST_FILE
        if candidate.is_file():
            return candidate
    return None


def _strings(value: Any, where: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ManifestError(f"{where}: {key!r} must be a list of non-empty strings")
    return tuple(value)


def parse_manifest(text: str, path: str, *, plugin: str, meta: dict[str, str | None]) -> list[ConnectorManifest]:
    """The connectors a manifest file describes, or a one-line :class:`ManifestError`."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{path}: not valid TOML ({exc})") from None
    plugin_api = data.get("plugin_api")
    if not isinstance(plugin_api, int) or isinstance(plugin_api, bool):
        raise ManifestError(f"{path}: 'plugin_api' must be an integer (this core speaks {PLUGIN_API_VERSION})")
    publisher = data.get("publisher")
    if publisher is not None and not isinstance(publisher, str):
        raise ManifestError(f"{path}: 'publisher' must be a string")
    tables = data.get("connector")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise ManifestError(f"{path}: expected one or more [[connector]] tables")
    found = []
    for index, table in enumerate(tables):
        where = f"{path}: [[connector]] #{index + 1}"
        name = table.get("name")
        if not isinstance(name, str) or not name:
            raise ManifestError(f"{where}: 'name' must be a non-empty string")
        description = table.get("description", "")
        if not isinstance(description, str):
            raise ManifestError(f"{where}: 'description' must be a string")
        unknown = set(table) - _CONNECTOR_KEYS
        if unknown:
            raise ManifestError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        streams = table.get("streams", [])
        if isinstance(streams, list):
            # a stream is a name, or a table with its name and modes (validated by the model)
            streams = [s.get("name") if isinstance(s, dict) else s for s in streams]
        found.append(
            ConnectorManifest(
                name=name,
                description=description,
                streams=_strings(streams, where, "streams"),
                auth_kinds=_strings(table.get("auth_kinds", ["none"]), where, "auth_kinds"),
                plugin_api=plugin_api,
                plugin=plugin,
                path=path,
                publisher=publisher,
                **meta,
            )
        )
    return found


def read_manifest(ep: EntryPoint, meta: dict[str, str | None]) -> list[ConnectorManifest] | None:
    """The manifest of ``ep``'s package, ``None`` when it has none.

    Raises :class:`ManifestError` when the file is there but unreadable or malformed.
    """
    path = manifest_path(ep)
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot be read ({exc})") from None
    return parse_manifest(text, str(path), plugin=ep.name, meta=meta)


def manifest_differences(manifest: ConnectorManifest, loaded: dict[str, Any]) -> list[str]:
    """How a loaded connector (as ``describe()``-d by the CLI) differs from its manifest."""
    listed = manifest.describe()
    differences = []
    for key in ("description", "streams", "auth_kinds"):
        if listed[key] != loaded.get(key):
            differences.append(f"{key}: the manifest says {listed[key]!r}, the connector has {loaded.get(key)!r}")
    return differences
