"""Lazy exports for the layer packages (PEP 562), and connectors made on first use."""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tapyard.base._model import Connector


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
        loaded = sys.modules.get(module)
        if loaded is None or getattr(getattr(loaded, "__spec__", None), "_initializing", False):
            # Another thread may be importing it: import_module waits for that
            # import to finish (a module half made has no names yet).
            loaded = importlib.import_module(module)
        return getattr(loaded, name)

    return __getattr__


class LazyConnector:
    """A connector distribution's one connector, made on first use: calling it imports
    ``module`` (which may import the vendor's SDK) and makes ``cls()`` then, once,
    so that importing the distribution to list connectors stays fast. Every call
    returns the same connector.

    ::

        # not named after the module it imports: importing tapyard_acme._connector
        # sets the package's attribute _connector to that module
        _lazy_connector = LazyConnector("tapyard_acme._connector", "AcmeConnector")
        __getattr__ = _lazy_connector.module_getattr("tapyard_acme")  # tapyard_acme.connector

        @hookimpl
        def tapyard_register_connectors(register):
            register(_lazy_connector())
    """

    def __init__(self, module: str, cls: str) -> None:
        self.module = module
        self.cls = cls
        self._made: Connector | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Connector:
        if self._made is None:
            with self._lock:
                if self._made is None:
                    self._made = getattr(importlib.import_module(self.module), self.cls)()
        assert self._made is not None
        return self._made

    def module_getattr(self, package: str, name: str = "connector") -> Callable[[str], Any]:
        """A module ``__getattr__`` for ``package`` (PEP 562) that gives this connector
        as ``package.<name>``; any other name raises :class:`AttributeError`."""

        def __getattr__(attribute: str) -> Any:
            if attribute == name:
                return self()
            raise AttributeError(f"module {package!r} has no attribute {attribute!r}")

        return __getattr__
