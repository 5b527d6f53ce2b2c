"""A token store over the vault: where OAuth strategies keep the tokens they obtain.

An auth strategy that exchanges a credential for tokens (an OAuth access token,
a rotated refresh token) needs three things from wherever the credential lives:
read its current fields, save new ones durably, and hold an exclusive lock while
it refreshes. :class:`VaultTokenStore` gives exactly that over a :class:`Vault`,
so a strategy never depends on the vault itself (tapyard's ``TokenStore``
protocol is structural: any object with these three methods fits)::

    store = VaultTokenStore(vault, "salesforce-prod", connector="salesforce")
    with store.lock():                       # across threads and processes
        fields = store.load()                # re-read: another process may have refreshed
        ...                                  # exchange fields["refresh_token"]
        store.save({"access_token": ..., "refresh_token": ...})   # durable on return
        # only now use the new access token
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager

from pydantic import SecretStr

from tapyard_credentials._models import validate_connector, validate_name
from tapyard_credentials._vault import Vault

__all__ = ["VaultTokenStore"]


class VaultTokenStore:
    """The fields of one stored credential, for one connector, with its lock.

    :meth:`load` is an audited, access-controlled :meth:`Vault.get` (a refusal
    raises :class:`AccessDeniedError`); :meth:`save` is :meth:`Vault.update_fields`,
    durable when it returns; :meth:`lock` is :meth:`Vault.lock`, which excludes
    other threads and other processes sharing the vault. ``lock_timeout`` bounds
    the wait for another process's refresh (:class:`LockTimeoutError` after it).
    """

    def __init__(
        self,
        vault: Vault,
        name: str,
        *,
        connector: str,
        actor: str = "cli",
        lock_timeout: float | None = 120.0,
    ) -> None:
        self.vault = vault
        self.name = validate_name(name)
        self.connector = validate_connector(connector)
        self.actor = actor
        self.lock_timeout = lock_timeout

    def __repr__(self) -> str:
        return f"VaultTokenStore({self.name!r}, connector={self.connector!r})"

    def load(self) -> dict[str, str]:
        """The credential's current fields, in the clear."""
        credential = self.vault.get(self.name, connector=self.connector, actor=self.actor)
        return {key: value.get_secret_value() for key, value in credential.fields.items()}

    def save(self, fields: Mapping[str, str | SecretStr]) -> None:
        """Merge ``fields`` into the credential, durably (synced to disk on return)."""
        self.vault.update_fields(self.name, fields, actor=self.actor)

    def lock(self) -> AbstractContextManager[None]:
        """The credential's exclusive lock, across threads and processes."""
        return self.vault.lock(self.name, timeout=self.lock_timeout)
