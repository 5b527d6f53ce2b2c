"""The process default plugin set, and the public functions that use it.

``tapyard.collect_connectors()``, ``tapyard.get_plugin_manager()``,
``tapyard.register_plugin(...)`` and their kin act on one :class:`Plugins` made
on first use from the environment (``TAPYARD_LOAD_PLUGINS``,
``TAPYARD_STRICT_PLUGINS``): the convenience of a script, a notebook or the
CLI, which run one thing at a time. Each takes ``plugins=`` to act on another
set instead; a worker running many syncs passes its own sets to
``tapyard.sync(..., plugins=...)`` and never touches this default.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tapyard.plugins._registry import (
    ManifestWarning,
    PluginInfo,
    Plugins,
    PluginWarning,
    describe_connector,
    replay_manifest_warnings,
)

if TYPE_CHECKING:
    import pluggy

    from tapyard.base import AuthStrategy, Connector, ConnectorManifest, Paginator, Stream

# Kept importable here for the marketplace's package checks.

__all__ = [
    "ManifestWarning",
    "PluginInfo",
    "PluginWarning",
    "collect_auth_strategies",
    "collect_connectors",
    "collect_destinations",
    "collect_paginators",
    "collect_secret_backends",
    "connector_listing",
    "connector_manifest_path",
    "default_plugins",
    "describe_connector",
    "get_connector",
    "get_plugin_manager",
    "installed_manifests",
    "plugin_infos",
    "register_plugin",
    "replay_manifest_warnings",
    "reset_plugin_manager",
    "run_permissions",
    "stream_paginator",
    "unregister_plugin",
]

_lock = threading.Lock()
_default: Plugins | None = None


def default_plugins() -> Plugins:
    """The process default plugin set, made from the environment on first use."""
    global _default
    found = _default
    if found is not None:
        return found
    with _lock:
        if _default is None:
            _default = Plugins.from_environment()
        return _default


def reset_plugin_manager() -> None:
    """Forget the default set: the next use loads the plugins again (tests, reloads)."""
    global _default
    with _lock:
        _default = None


def get_plugin_manager(plugins: Plugins | None = None) -> pluggy.PluginManager:
    """The pluggy manager of ``plugins`` (default: the process default set), built on first use."""
    return (plugins or default_plugins()).pm


def plugin_infos(plugins: Plugins | None = None) -> list[PluginInfo]:
    """Every entry-point plugin seen, loaded or not, with its distribution and version."""
    return (plugins or default_plugins()).infos()


def register_plugin(plugin: object, name: str | None = None, *, plugins: Plugins | None = None) -> str | None:
    """Register a plugin object at run time (tests, notebooks); returns its name."""
    return (plugins or default_plugins()).register(plugin, name=name)


def unregister_plugin(
    plugin: object | None = None, name: str | None = None, *, plugins: Plugins | None = None
) -> None:
    """Undo :func:`register_plugin`."""
    (plugins or default_plugins()).unregister(plugin, name=name)


def collect_connectors(plugins: Plugins | None = None) -> dict[str, Connector]:
    """Every registered connector by name, with ``version`` and ``distribution`` filled in."""
    return (plugins or default_plugins()).connectors()


def collect_paginators(plugins: Plugins | None = None) -> dict[str, type[Paginator]]:
    """Every registered paginator class by kind."""
    return (plugins or default_plugins()).paginators()


def collect_auth_strategies(plugins: Plugins | None = None) -> dict[str, type[AuthStrategy]]:
    """Every registered auth strategy class by kind."""
    return (plugins or default_plugins()).auth_strategies()


def collect_destinations(plugins: Plugins | None = None) -> dict[str, Callable[[str], Any]]:
    """Every registered destination factory by URL scheme."""
    return (plugins or default_plugins()).destinations()


def collect_secret_backends(plugins: Plugins | None = None) -> dict[str, Callable[..., Any]]:
    """Every registered secret backend factory by URL scheme."""
    return (plugins or default_plugins()).secret_backends()


def get_connector(name: str, plugins: Plugins | None = None) -> Connector:
    """The connector called ``name``, or a :class:`~tapyard.ConnectorNotFoundError` listing the known ones."""
    return (plugins or default_plugins()).get_connector(name)


def stream_paginator(connector: Connector, stream: Stream, plugins: Plugins | None = None) -> Paginator:
    """The paginator the hooks choose for ``stream`` (``tapyard_stream_paginator``),
    or a :class:`~tapyard.PluginError` when a plugin answered something that is not one."""
    return (plugins or default_plugins()).stream_paginator(connector, stream)


def installed_manifests(plugins: Plugins | None = None) -> tuple[dict[str, ConnectorManifest], list[str]]:
    """See :meth:`Plugins.installed_manifests`."""
    return (plugins or default_plugins()).installed_manifests()


def connector_listing(plugins: Plugins | None = None) -> list[dict[str, Any]]:
    """See :meth:`Plugins.connector_listing`."""
    return (plugins or default_plugins()).connector_listing()


def connector_manifest_path(connector: Connector, plugins: Plugins | None = None) -> str | None:
    """See :meth:`Plugins.connector_manifest_path`."""
    return (plugins or default_plugins()).connector_manifest_path(connector)


def run_permissions(connector: Connector, config: Any, credentials: Any, plugins: Plugins | None = None) -> Any:
    """See :meth:`Plugins.run_permissions`."""
    return (plugins or default_plugins()).run_permissions(connector, config, credentials)
