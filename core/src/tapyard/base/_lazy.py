"""Lazy exports for the layer packages (PEP 562)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, Iterable[str]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports each exported name's module on first use.

    ``exports`` maps a module of the package (``"_model"``) to the names it
    exports. A name is read from its module on every access, not copied into
    the package, so the package always gives what the module holds now (a test
    that patches ``tapyard.plugins._manager.get_plugin_manager`` patches what
    ``from tapyard.plugins import get_plugin_manager`` returns). Any other name
    raises :class:`AttributeError`, as a plain module would.
    """
    where = {name: f"{package}.{module}" for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(sys.modules.get(module) or importlib.import_module(module), name)

    return __getattr__
