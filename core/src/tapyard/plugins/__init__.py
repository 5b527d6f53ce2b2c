"""Plugin sets: :class:`Plugins` (``_registry``), one pluggy manager with the
built-ins (``builtins``, one module per capability, listed in
``BUILTIN_PLUGINS``) and the installed plugins, what they registered and who
registered it (:class:`Ownership`); and the process default set behind the
public convenience functions (``_manager``: ``collect_connectors()``,
``get_plugin_manager()``, ``register_plugin()``, ...).

It may import every layer below it (base, http, auth, destinations, sources)
and the public ``tapyard.hookspecs``; lower layers must not import it: they are
handed a set through :attr:`tapyard.RunContext.plugins` (typed as
``tapyard.base.PluginSet``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tapyard.base import lazy_exports

if TYPE_CHECKING:
    from tapyard.plugins._manager import (
        collect_auth_strategies as collect_auth_strategies,
    )
    from tapyard.plugins._manager import (
        collect_connectors as collect_connectors,
    )
    from tapyard.plugins._manager import (
        collect_destinations as collect_destinations,
    )
    from tapyard.plugins._manager import (
        collect_paginators as collect_paginators,
    )
    from tapyard.plugins._manager import (
        collect_secret_backends as collect_secret_backends,
    )
    from tapyard.plugins._manager import (
        connector_listing as connector_listing,
    )
    from tapyard.plugins._manager import (
        connector_manifest_path as connector_manifest_path,
    )
    from tapyard.plugins._manager import (
        default_plugins as default_plugins,
    )
    from tapyard.plugins._manager import (
        get_connector as get_connector,
    )
    from tapyard.plugins._manager import (
        get_plugin_manager as get_plugin_manager,
    )
    from tapyard.plugins._manager import (
        installed_manifests as installed_manifests,
    )
    from tapyard.plugins._manager import (
        plugin_infos as plugin_infos,
    )
    from tapyard.plugins._manager import (
        register_plugin as register_plugin,
    )
    from tapyard.plugins._manager import (
        reset_plugin_manager as reset_plugin_manager,
    )
    from tapyard.plugins._manager import (
        run_permissions as run_permissions,
    )
    from tapyard.plugins._manager import (
        stream_paginator as stream_paginator,
    )
    from tapyard.plugins._manager import (
        unregister_plugin as unregister_plugin,
    )
    from tapyard.plugins._registry import (
        Capability as Capability,
    )
    from tapyard.plugins._registry import (
        ManifestWarning as ManifestWarning,
    )
    from tapyard.plugins._registry import (
        Owner as Owner,
    )
    from tapyard.plugins._registry import (
        Ownership as Ownership,
    )
    from tapyard.plugins._registry import (
        PluginInfo as PluginInfo,
    )
    from tapyard.plugins._registry import (
        Plugins as Plugins,
    )
    from tapyard.plugins._registry import (
        PluginWarning as PluginWarning,
    )
    from tapyard.plugins._registry import (
        Registration as Registration,
    )
    from tapyard.plugins._registry import (
        core_requirement as core_requirement,
    )
    from tapyard.plugins._registry import (
        describe_connector as describe_connector,
    )
    from tapyard.plugins._registry import (
        distribution_meta as distribution_meta,
    )
    from tapyard.plugins._registry import (
        replay_manifest_warnings as replay_manifest_warnings,
    )

__all__ = [
    "Capability",
    "ManifestWarning",
    "Owner",
    "Ownership",
    "PluginInfo",
    "PluginWarning",
    "Plugins",
    "Registration",
    "collect_auth_strategies",
    "collect_connectors",
    "collect_destinations",
    "collect_paginators",
    "collect_secret_backends",
    "connector_listing",
    "connector_manifest_path",
    "core_requirement",
    "default_plugins",
    "describe_connector",
    "distribution_meta",
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

# Imported on first use, so that importing one module of this layer does not
# load the rest of it (tapyard and its CLI start without httpx or SQLAlchemy).
__getattr__ = lazy_exports(
    __name__,
    {
        "_manager": (
            "collect_auth_strategies", "collect_connectors", "collect_destinations", "collect_paginators",
            "collect_secret_backends", "connector_listing", "connector_manifest_path", "default_plugins",
            "get_connector", "get_plugin_manager", "installed_manifests", "plugin_infos", "register_plugin",
            "reset_plugin_manager", "run_permissions", "stream_paginator", "unregister_plugin",
        ),
        "_registry": (
            "Capability", "ManifestWarning", "Owner", "Ownership", "PluginInfo", "PluginWarning", "Plugins",
            "Registration", "core_requirement", "describe_connector", "distribution_meta", "replay_manifest_warnings",
        ),
    },
)
