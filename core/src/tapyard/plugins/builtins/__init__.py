"""tapyard's own capabilities, registered as plugins the way a third party's are.

One module per capability, listed in :data:`BUILTIN_PLUGINS` as pytest lists its
``default_plugins``. Each is registered under ``tapyard.builtins.<module>``; its
implementations are ``trylast`` so that any plugin can override them. A module
is registered as it is, unless it defines ``plugin(plugins)``, which makes the
plugin object for one :class:`~tapyard.plugins.Plugins` (for the hooks that need
to see the set they belong to).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tapyard.plugins._registry import Plugins

__all__ = ["BUILTIN_PLUGINS", "builtin_plugins"]

#: The built-in plugin modules, in the order they are registered.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "paginators",
    "auth",
    "secret_backends",
    "destinations",
    "rate_limits",
    "schema",
)


def builtin_plugins(names: tuple[str, ...], plugins: Plugins) -> Iterator[tuple[str, object]]:
    """``(name, plugin object)`` for each built-in module named in ``names``, for ``plugins``."""
    for name in names:
        module = importlib.import_module(f"{__name__}.{name}")
        make = getattr(module, "plugin", None)
        yield f"tapyard.builtins.{name}", make(plugins) if callable(make) else module
