"""What the layers below the plugins may ask of a set of plugins.

The layers under ``tapyard.plugins`` (base, http, auth, destinations, sources)
never import the plugin manager. A run hands them its plugins through
:attr:`tapyard.RunContext.plugins`, typed as the :class:`PluginSet` protocol
below, which :class:`tapyard.plugins.Plugins` implements.

Outside a run, a few public conveniences of those layers (``Connector.credential_model``
without ``strategies``, ``open_destination`` without ``plugins``, ...) fall back
to the process default set. They reach it through :func:`default_plugin_set`,
whose factory the facade (``tapyard/__init__.py``, the composition root, which
every ``import tapyard...`` runs first) installs; a lower layer therefore never
names the upper one. Nothing on a run's path takes that fallback when the run
was given its plugins.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from tapyard.base._model import AuthStrategy, Connector, Paginator, Stream

__all__ = ["PluginSet", "default_plugin_set", "install_default_plugin_set", "plugin_set_of"]


@runtime_checkable
class PluginSet(Protocol):
    """One set of loaded plugins, as the lower layers see it."""

    @property
    def pm(self) -> Any:
        """The ``pluggy.PluginManager`` behind this set."""

    @property
    def hook(self) -> Any:
        """The manager's hook relay: ``plugins.hook.tapyard_map_records(...)``."""

    @property
    def strict(self) -> bool:
        """Whether a plugin's failure is an error (``--strict-plugins``) rather than a warning."""

    def paginators(self) -> Mapping[str, type[Paginator]]:
        """Every registered paginator class by kind."""

    def auth_strategies(self) -> Mapping[str, type[AuthStrategy]]:
        """Every registered auth strategy class by kind."""

    def destinations(self) -> Mapping[str, Callable[[str], Any]]:
        """Every registered destination factory by URL scheme."""

    def secret_backends(self) -> Mapping[str, Callable[..., Any]]:
        """Every registered secret backend factory by URL scheme."""

    def stream_paginator(self, connector: Connector, stream: Stream) -> Paginator:
        """The paginator the hooks choose for ``stream``."""


_lock = threading.Lock()
_factory: Callable[[], PluginSet] | None = None


def install_default_plugin_set(factory: Callable[[], PluginSet]) -> None:
    """Say how to get the process default plugin set (done once, by the facade)."""
    global _factory
    with _lock:
        _factory = factory


def default_plugin_set() -> PluginSet:
    """The process default plugin set, for callers that were given none."""
    factory = _factory
    if factory is None:  # only when tapyard's own __init__ did not run, which Python never allows
        raise RuntimeError("no default plugin set: pass plugins=tapyard.plugins.Plugins(...)")
    return factory()


def plugin_set_of(manager: Any) -> PluginSet | None:
    """The plugin set a ``pluggy.PluginManager`` made by :class:`tapyard.plugins.Plugins` belongs to."""
    found: PluginSet | None = getattr(manager, "tapyard_plugins", None)
    return found
