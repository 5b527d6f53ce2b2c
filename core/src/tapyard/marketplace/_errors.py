"""The marketplace client's errors (part of the tapyard exception tree).

    TapyardError
    └── RegistryError          the registry cannot be reached, or refused a request
        └── VerificationError  what the registry sent does not verify: nothing is installed

Messages are one line, safe to show: they name packages, versions, roles and
the registry's address (without credentials), never a token.
"""

from __future__ import annotations

from tapyard.base import TapyardError

__all__ = ["RegistryError", "VerificationError"]


class RegistryError(TapyardError):
    """The registry cannot be reached, has no such package, or refused a request. Safe."""


class VerificationError(RegistryError):
    """Signed metadata, a checksum or a wheel's contents do not verify; nothing was installed. Safe."""
