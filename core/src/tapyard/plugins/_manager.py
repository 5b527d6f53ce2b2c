"""The plugin manager: one ``pluggy.PluginManager("tapyard")`` per process.

Built-in capabilities are registered as plugins first (``tapyard.plugins._builtins``,
whose implementations are ``trylast``), then every entry point of the group
``tapyard``. Loading is lazy: nothing is imported until the first call to
:func:`get_plugin_manager`.

``TAPYARD_LOAD_PLUGINS`` is an allow-list: when set, only the entry points it
names (comma-separated) are loaded, and an empty value loads none. A plugin
that fails to import is skipped with a warning naming it, unless strict mode
(``TAPYARD_STRICT_PLUGINS=1`` or ``--strict-plugins``) turns that into an error.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pluggy

from tapyard import hookspecs
from tapyard.base import (
    PLUGIN_API_VERSION,
    ConnectorManifest,
    ConnectorNotFoundError,
    ManifestError,
    PluginError,
    did_you_mean,
    read_manifest,
)

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from tapyard.base import AuthStrategy, Connector, Paginator, Stream

__all__ = [
    "PluginInfo",
    "collect_auth_strategies",
    "collect_connectors",
    "collect_destinations",
    "collect_paginators",
    "connector_listing",
    "describe_connector",
    "get_connector",
    "get_plugin_manager",
    "installed_manifests",
    "plugin_infos",
    "replay_manifest_warnings",
    "reset_plugin_manager",
    "stream_paginator",
]

ENTRY_POINT_GROUP = "tapyard"


class PluginWarning(UserWarning):
    """A plugin was skipped or looks incompatible; tapyard goes on without it."""


class ManifestWarning(PluginWarning):
    """A plugin's manifest could not be used; the plugin is imported to list it."""


@dataclass
class PluginInfo:
    """What tapyard knows about one loaded (or failed) plugin."""

    name: str
    distribution: str | None = None
    version: str | None = None
    error: str | None = None
    requires_core: str | None = None
    warnings: list[str] = field(default_factory=list)


_lock = threading.RLock()
_pm: pluggy.PluginManager | None = None
_infos: dict[str, PluginInfo] = {}
_cache: dict[str, Any] = {}


def _strict() -> bool:
    return os.environ.get("TAPYARD_STRICT_PLUGINS", "") not in ("", "0", "false")


def _allowed() -> set[str] | None:
    raw = os.environ.get("TAPYARD_LOAD_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def _core_requirement(requires: list[str] | None) -> str | None:
    for req in requires or ():
        head = req.split(";")[0].strip()
        if head.startswith("tapyard") and not head.startswith(("tapyard-", "tapyard_")):
            return head[len("tapyard") :].strip() or None
    return None


def _check_core_version(info: PluginInfo) -> None:
    if not info.requires_core:
        return
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    from tapyard import __version__

    try:
        spec = SpecifierSet(info.requires_core)
    except InvalidSpecifier:
        return
    if __version__ not in spec:
        message = (
            f"plugin {info.name!r} ({info.distribution} {info.version}) supports tapyard"
            f"{info.requires_core}, but this is tapyard {__version__}; it may not work"
        )
        info.warnings.append(message)
        warnings.warn(message, PluginWarning, stacklevel=3)


def _distribution_meta(ep: EntryPoint) -> dict[str, str | None]:
    """The distribution fields of ``ep``'s package, from one parse of its METADATA."""
    dist = ep.dist
    # Each read of Distribution.metadata parses the METADATA file again: once here.
    meta = dist.metadata if dist else None
    if meta is None:
        return {"distribution": None, "version": None, "requires_core": None, "license": None, "homepage": None}

    def first(field: str) -> str | None:
        # get_all: a missing field is None on the standard library's metadata but a
        # KeyError on the importlib_metadata backport's, which pytest may bring in.
        values = meta.get_all(field)
        return values[0] if values else None

    homepage = first("Home-page")
    for url in meta.get_all("Project-URL") or ():
        label, _, address = url.partition(",")
        if label.strip().lower() in ("homepage", "home", "source", "repository"):
            homepage = homepage or address.strip()
    return {
        "distribution": meta["Name"],
        "version": meta["Version"],
        "requires_core": _core_requirement(meta.get_all("Requires-Dist")),
        "license": first("License-Expression") or first("License"),
        "homepage": homepage,
    }


def _entry_points() -> list[tuple[EntryPoint, dict[str, str | None]]]:
    """The ``tapyard`` entry points the allow-list lets through, with their distribution fields."""
    allowed = _allowed()
    found = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if allowed is not None and ep.name not in allowed:
            continue
        found.append((ep, _distribution_meta(ep)))
    return found


def _info(ep: EntryPoint, meta: dict[str, str | None]) -> PluginInfo:
    return PluginInfo(
        name=ep.name,
        distribution=meta["distribution"],
        version=meta["version"],
        requires_core=meta["requires_core"],
    )


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    for ep, meta in _entry_points():
        if pm.has_plugin(ep.name) or ep.name in _infos:
            continue
        info = _infos[ep.name] = _info(ep, meta)
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:
            info.error = f"{type(exc).__name__}: {exc}"
            if _strict():
                raise PluginError(
                    f"plugin {ep.name!r} failed to load: {info.error}"
                ) from exc
            warnings.warn(
                f"skipping plugin {ep.name!r}: it failed to load ({info.error})",
                PluginWarning,
                stacklevel=2,
            )
            continue
        _check_core_version(info)


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built on first use."""
    global _pm
    if _pm is not None:
        return _pm
    with _lock:
        if _pm is None:
            pm = pluggy.PluginManager("tapyard")
            pm.add_hookspecs(hookspecs)
            from tapyard.plugins import _builtins

            pm.register(_builtins, name="tapyard.builtins")
            _load_entry_points(pm)
            _pm = pm
    return _pm


def reset_plugin_manager() -> None:
    """Forget every loaded plugin and cached collection (for tests and reloads)."""
    global _pm
    with _lock:
        _pm = None
        _infos.clear()
        _cache.clear()


def invalidate() -> None:
    """Drop cached collections after a plugin was registered or unregistered."""
    with _lock:
        _cache.clear()


def plugin_infos() -> list[PluginInfo]:
    """Every entry-point plugin seen, loaded or not, with its distribution and version."""
    get_plugin_manager()
    return list(_infos.values())


def _collect(hook_name: str, key_of: Callable[..., str]) -> dict[str, Any]:
    with _lock:
        if hook_name in _cache:
            return dict(_cache[hook_name])
        found: dict[str, Any] = {}
        owners: dict[str, str] = {}
        pm = get_plugin_manager()

        hook = getattr(pm.hook, hook_name)
        # Registration order: the built-ins (trylast) first, so a later plugin's
        # registration of the same key overrides them.
        for impl in hook.get_hookimpls():
            plugin_name = pm.get_name(impl.plugin) or "?"

            def register(*args: Any, _plugin: str = plugin_name) -> None:
                key = key_of(*args)
                if key in found and owners[key] != _plugin:
                    warnings.warn(
                        f"{hook_name}: {key!r} from plugin {_plugin!r} replaces the one "
                        f"from {owners[key]!r}",
                        PluginWarning,
                        stacklevel=2,
                    )
                found[key] = args[-1]
                owners[key] = _plugin

            try:
                impl.function(register=register)
            except Exception as exc:
                if _strict():
                    raise PluginError(f"plugin {plugin_name!r} failed in {hook_name}: {exc}") from exc
                warnings.warn(
                    f"skipping plugin {plugin_name!r} in {hook_name}: {type(exc).__name__}: {exc}",
                    PluginWarning,
                    stacklevel=2,
                )
        _cache[hook_name] = found
        _cache[hook_name + ".owners"] = owners
        return dict(found)


def _connector_key(connector: Connector) -> str:
    return connector.name


def collect_connectors() -> dict[str, Connector]:
    """Every registered connector by name, with ``version`` and ``distribution`` filled in."""
    connectors: dict[str, Connector] = _collect("tapyard_register_connectors", _connector_key)
    owners: dict[str, str] = _cache.get("tapyard_register_connectors.owners", {})
    accepted: dict[str, Connector] = {}
    for name, connector in connectors.items():
        if not _speaks_our_api(name, connector.plugin_api):
            continue
        info = _infos.get(owners.get(name, ""))
        if info is not None:
            connector.distribution = info.distribution
            connector.version = info.version or connector.version
        accepted[name] = connector
    return accepted


def _speaks_our_api(name: str, plugin_api: int) -> bool:
    """Whether a connector built for ``plugin_api`` can be used; warns (or raises, strict) if not."""
    if plugin_api == PLUGIN_API_VERSION:
        return True
    message = (
        f"connector {name!r} was built for plugin API {plugin_api}, "
        f"this core speaks {PLUGIN_API_VERSION}: upgrade the connector or tapyard"
    )
    if _strict():
        raise PluginError(message)
    warnings.warn(f"skipping {message}", PluginWarning, stacklevel=3)
    return False


def describe_connector(connector: Connector) -> dict[str, Any]:
    """A loaded connector as ``tapyard connectors list --json`` shows it."""
    return {
        "name": connector.name,
        "version": connector.version,
        "distribution": connector.distribution,
        "description": connector.description,
        "streams": connector.stream_names(),
        "auth_kinds": list(connector.auth_kinds),
    }


def installed_manifests() -> tuple[dict[str, ConnectorManifest], list[str]]:
    """The manifests of the installed connectors by name, read without importing any,
    and the entry points whose package has no usable manifest.

    A malformed manifest is reported with a warning and its plugin counted as
    having none. A connector whose manifest declares another plugin API is
    skipped with the warning :func:`collect_connectors` gives.
    """
    manifests: dict[str, ConnectorManifest] = {}
    without: list[str] = []
    for ep, meta in _entry_points():
        try:
            described = read_manifest(ep, meta)
        except ManifestError as exc:
            warnings.warn(
                f"ignoring the manifest of plugin {ep.name!r}: {exc}; listing it by importing it",
                ManifestWarning,
                stacklevel=2,
            )
            described = None
        if described is None:
            without.append(ep.name)
            continue
        _check_core_version(_info(ep, meta))
        for manifest in described:
            if not _speaks_our_api(manifest.name, manifest.plugin_api):
                continue
            previous = manifests.get(manifest.name)
            if previous is not None and previous.plugin != manifest.plugin:
                warnings.warn(
                    f"tapyard_register_connectors: {manifest.name!r} from plugin {manifest.plugin!r} "
                    f"replaces the one from {previous.plugin!r}",
                    PluginWarning,
                    stacklevel=2,
                )
            manifests[manifest.name] = manifest
    return manifests, without


def replay_manifest_warnings(caught: list[warnings.WarningMessage], *, everything: bool) -> None:
    """Warn again what :func:`installed_manifests` warned (caught by the caller):
    everything, or, when the caller goes on to load the plugins (which warns the
    rest again), only what was wrong with the manifests themselves."""
    for warning in caught:
        if everything or issubclass(warning.category, ManifestWarning):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def connector_listing() -> list[dict[str, Any]]:
    """Every installed connector, by name, as ``tapyard connectors list`` shows it.

    Read from the manifests, importing no connector, unless that would not be
    the whole truth: when the plugins are already loaded in this process (they
    may include plugins registered at run time), in strict mode (which promises
    to fail on a plugin that cannot be imported), and when a plugin has no
    usable manifest. Then every plugin is loaded and asked.
    """
    if _pm is None and not _strict():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            manifests, without = installed_manifests()
        replay_manifest_warnings(caught, everything=not without)
        if not without:
            return [manifests[name].describe() for name in sorted(manifests)]
    return [describe_connector(c) for _, c in sorted(collect_connectors().items())]


#: The connectors whose packages live in tapyard's own repository (``connectors/<name>``);
#: they are not on the public package index.
REPOSITORY_CONNECTORS = frozenset({"aws", "azure", "erp", "gcp", "salesforce", "sample", "stripe"})


def connector_manifest_path(connector: Connector) -> str | None:
    """The installed manifest that describes ``connector`` (same name, same distribution), if any.

    Read without importing anything: the run-time permission checks use it
    (``tapyard.base.manifest.run_permissions``). A connector loaded from a
    source tree (the conformance kit) carries its manifest's path itself.
    """
    explicit = getattr(connector, "manifest_path", None)
    if isinstance(explicit, str):
        return explicit
    if connector.distribution is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        manifests, _ = installed_manifests()
    manifest = manifests.get(connector.name)
    if manifest is None or manifest.distribution != connector.distribution:
        return None
    return manifest.path


def run_permissions(connector: Connector, config: Any, credentials: Any) -> Any:
    """Check a run of ``connector`` against its installed manifest before it starts:
    the host guard to hand the source (``RunContext.hosts``), or None when its
    manifest declares no hosts. See ``tapyard.base.manifest.run_permissions``."""
    from tapyard.base.manifest import run_permissions as check

    return check(connector.name, connector_manifest_path(connector), config, credentials)


def get_connector(name: str) -> Connector:
    """The connector called ``name``, or a :class:`ConnectorNotFoundError` listing the known ones."""
    connectors = collect_connectors()
    if name in connectors:
        return connectors[name]
    known = ", ".join(sorted(connectors)) or "none installed"
    hint = did_you_mean(name, connectors)
    if not hint and name in REPOSITORY_CONNECTORS:
        hint = f"it ships in tapyard's repository: pip install ./connectors/{name} from a checkout"
    elif not hint:
        hint = "install the package that provides it; tapyard connectors list shows what is installed"
    raise ConnectorNotFoundError(f"unknown connector {name!r} (installed: {known}); {hint}")


def stream_paginator(connector: Connector, stream: Stream) -> Paginator:
    """The paginator the hooks choose for ``stream`` (``tapyard_stream_paginator``),
    or a :class:`PluginError` when a plugin answered something that is not one."""
    from tapyard.base import Paginator

    paginator = get_plugin_manager().hook.tapyard_stream_paginator(connector=connector, stream=stream)
    if not isinstance(paginator, Paginator):
        raise PluginError(
            f"tapyard_stream_paginator returned {type(paginator).__name__} for stream {stream.name!r}"
        )
    return paginator


def collect_paginators() -> dict[str, type[Paginator]]:
    """Every registered paginator class by kind."""
    return _collect("tapyard_register_paginators", lambda kind, cls: kind)


def collect_auth_strategies() -> dict[str, type[AuthStrategy]]:
    """Every registered auth strategy class by kind."""
    return _collect("tapyard_register_auth_strategies", lambda kind, cls: kind)


def collect_destinations() -> dict[str, Callable[[str], Any]]:
    """Every registered destination factory by URL scheme."""
    return _collect("tapyard_register_destinations", lambda scheme, factory: scheme)


def register_plugin(plugin: object, name: str | None = None) -> str | None:
    """Register a plugin object at run time (tests, notebooks); returns its name."""
    pm = get_plugin_manager()
    registered = pm.register(plugin, name=name)
    invalidate()
    return registered


def unregister_plugin(plugin: object | None = None, name: str | None = None) -> None:
    """Undo :func:`register_plugin`."""
    pm = get_plugin_manager()
    pm.unregister(plugin, name=name)
    invalidate()

