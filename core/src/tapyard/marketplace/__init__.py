"""The marketplace.

Author side: the conformance kit (:mod:`tapyard.marketplace.kit`), the
scaffold (:mod:`tapyard.marketplace.scaffold`) and the cassette secret scan
(:mod:`tapyard.marketplace.scan`). The registry's publish gate runs the same kit.

Client side: search, verified install, publish and mirror. The registry server
is the separate ``tapyard-registry`` distribution; this package never imports
it. Everything a registry sends is verified with python-tuf before it is used
(:mod:`tapyard.marketplace._trust`), and wheels are checked for their contents
on both sides (:mod:`tapyard.marketplace._wheel`).

It may import every layer below it (base, http, auth, destinations, sources,
plugins, engine), the facade and ``tapyard.testing``; nothing below imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tapyard.base import lazy_exports

if TYPE_CHECKING:
    from tapyard.marketplace._errors import RegistryError
    from tapyard.marketplace._install import install, outdated, uninstall
    from tapyard.marketplace._keys import ensure_key, public_key_pem, read_token, save_token
    from tapyard.marketplace._mirror import mirror
    from tapyard.marketplace._publish import publish, register, registry_answer, registry_client
    from tapyard.marketplace._source import open_source, save_default_registry
    from tapyard.marketplace._trust import pin_root

__all__ = [
    "RegistryError",
    "ensure_key",
    "install",
    "mirror",
    "open_source",
    "outdated",
    "pin_root",
    "public_key_pem",
    "publish",
    "read_token",
    "register",
    "registry_answer",
    "registry_client",
    "save_default_registry",
    "save_token",
    "uninstall",
]

# Imported on first use: a command pays only for the modules it runs.
__getattr__ = lazy_exports(
    __name__,
    {
        "_errors": ("RegistryError",),
        "_install": ("install", "outdated", "uninstall"),
        "_keys": ("ensure_key", "public_key_pem", "read_token", "save_token"),
        "_mirror": ("mirror",),
        "_publish": ("publish", "register", "registry_answer", "registry_client"),
        "_source": ("open_source", "save_default_registry"),
        "_trust": ("pin_root",),
    },
)
