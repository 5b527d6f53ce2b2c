"""The plugin manager (``_manager``): discovers connectors, paginators, auth kinds,
destinations and secret backends through pluggy, and registers the built-in ones
(``_builtins``) through the same hooks. It may import every layer below it (base,
http, auth, destinations, sources) and the public ``tapyard.hookspecs``; lower
layers must not import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tapyard.base import lazy_exports

if TYPE_CHECKING:
    from tapyard.plugins._manager import (
        collect_auth_strategies,
        collect_connectors,
        collect_destinations,
        collect_paginators,
        connector_listing,
        connector_manifest_path,
        describe_connector,
        get_connector,
        get_plugin_manager,
        installed_manifests,
        register_plugin,
        replay_manifest_warnings,
        reset_plugin_manager,
        run_permissions,
        stream_paginator,
        unregister_plugin,
    )

__all__ = [
    "collect_auth_strategies",
    "collect_connectors",
    "collect_destinations",
    "collect_paginators",
    "connector_listing",
    "connector_manifest_path",
    "describe_connector",
    "get_connector",
    "get_plugin_manager",
    "installed_manifests",
    "register_plugin",
    "replay_manifest_warnings",
    "reset_plugin_manager",
    "run_permissions",
    "stream_paginator",
    "unregister_plugin",
]

# Imported on first use, so that importing one module of this layer does not
# load the rest of it (tapyard and its CLI start without httpx or SQLAlchemy).
__getattr__ = lazy_exports(
    __name__,
    {
        "_manager": ("collect_auth_strategies", "collect_connectors", "collect_destinations", "collect_paginators", "connector_listing", "connector_manifest_path", "describe_connector", "get_connector", "get_plugin_manager", "installed_manifests", "register_plugin", "replay_manifest_warnings", "reset_plugin_manager", "run_permissions", "stream_paginator", "unregister_plugin"),
    },
)
