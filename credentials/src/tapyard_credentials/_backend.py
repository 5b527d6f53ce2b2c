"""The secret backend interface: where a vault keeps its credentials.

:class:`~tapyard_credentials.Vault` is the front door (input rules, access
control, redaction, audit events); a :class:`SecretBackend` is the storage
behind it. The local SQLite vault (:class:`~tapyard_credentials.LocalBackend`)
is the default; AWS Secrets Manager, Azure Key Vault, GCP Secret Manager or
HashiCorp Vault backends can be written against this interface.

What a backend promises:

- **Protection at rest is the backend's job.** It receives field values in the
  clear and protects them as it sees fit: the local backend encrypts them with
  AES-256-GCM under the vault key; a cloud backend may hand them to a secret
  manager that encrypts with its own KMS key. Whatever it stores, the name,
  connector, kind, field names and allowed connectors it returns must be the ones
  that were stored with those values (the local backend binds them as associated
  data).
- **Atomic writes.** ``put``, ``update_fields``, ``delete`` and ``mark_used`` either
  happen completely or not at all, and record their ``audit`` event in the same
  transaction where the store allows it (otherwise right after the change).
  ``update_fields`` is a read-modify-write that must not lose a concurrent update,
  and is durable when it returns.
- **No values in errors.** Failures are :class:`VaultError` subclasses with safe
  messages: :class:`VaultCorruptError` for damaged data,
  :class:`VaultStorageError` for a store that cannot be reached or written,
  :class:`VaultKeyError` for a key problem. A backend maps its SDK's errors with
  ``raise ... from exc``.
- **An audit log.** ``record`` appends an event; ``audit`` reads them back newest
  first. The log is append-only: nothing in the interface changes or removes an
  entry. A backend without a place of its own may keep it in a local SQLite file.
- **Per-credential locks** that exclude other threads and processes (see
  :class:`~tapyard_credentials.LockTable`).
- **Thread safety.** One backend object may be used from several threads.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime

from tapyard_credentials._exceptions import VaultError
from tapyard_credentials._keys import VaultKey
from tapyard_credentials._models import AuditEntry, AuditEvent, Credential, CredentialInfo

__all__ = ["ProgressCallback", "SecretBackend"]

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` during a long operation such as key rotation."""


def info_for_put(
    previous: CredentialInfo | None, name: str, *, connector: str, kind: str,
    fields: Mapping[str, str], allowed_connectors: Sequence[str], at: datetime,
) -> CredentialInfo:
    """What :meth:`SecretBackend.put` stores about a credential that replaces
    ``previous`` (``None`` for a new one): its ``created_at`` and ``last_used_at`` are
    kept, everything else is the new credential's, updated ``at``."""
    return CredentialInfo(
        name=name,
        connector=connector,
        kind=kind,
        field_names=tuple(sorted(fields)),
        allowed_connectors=tuple(allowed_connectors),
        created_at=at if previous is None else previous.created_at,
        updated_at=at,
        last_used_at=None if previous is None else previous.last_used_at,
    )


class SecretBackend(ABC):
    """Where a vault keeps credentials and its audit log. See the module documentation
    for the contract every implementation keeps."""

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the secrets live, for messages (a file path, a vault URL). Safe to show."""

    @property
    def key_id(self) -> str | None:
        """A public fingerprint of the key protecting the secrets, if the backend has one."""
        return None

    @abstractmethod
    def get(self, name: str) -> Credential | None:
        """The credential with its fields, or ``None`` if there is none of that name.

        Raises :class:`VaultCorruptError` if its stored form does not authenticate.
        """

    @abstractmethod
    def info(self, name: str) -> CredentialInfo | None:
        """The credential without its fields, or ``None``."""

    @abstractmethod
    def list(self) -> builtins.list[CredentialInfo]:
        """Every credential without its fields, sorted by name."""

    @abstractmethod
    def put(
        self,
        name: str,
        *,
        connector: str,
        kind: str,
        fields: Mapping[str, str],
        allowed_connectors: Sequence[str],
        at: datetime,
        audit: AuditEvent,
    ) -> CredentialInfo:
        """Store a credential, replacing one of the same name (whose ``created_at`` is
        kept), and record ``audit``. Durable when it returns."""

    @abstractmethod
    def update_fields(
        self, name: str, fields: Mapping[str, str], *, at: datetime, audit: AuditEvent
    ) -> CredentialInfo | None:
        """Merge ``fields`` into a credential's fields (others are kept) atomically and
        durably, and record ``audit``. ``None`` (nothing recorded) if there is no such
        credential."""

    @abstractmethod
    def delete(self, name: str, *, audit: AuditEvent) -> bool:
        """Remove a credential and record ``audit``; ``False`` (nothing recorded) if absent."""

    @abstractmethod
    def mark_used(self, name: str, *, at: datetime, audit: AuditEvent) -> None:
        """Set a credential's ``last_used_at`` and record ``audit`` (a read)."""

    @abstractmethod
    def record(self, event: AuditEvent) -> None:
        """Append one event to the audit log (refusals and misses)."""

    @abstractmethod
    def audit(self, *, limit: int, name: str | None = None) -> builtins.list[AuditEntry]:
        """Up to ``limit`` audit entries, newest first, optionally for one credential."""

    @abstractmethod
    def lock(self, name: str, *, timeout: float | None = None) -> AbstractContextManager[None]:
        """An exclusive lock on ``name`` across threads and processes (see :meth:`Vault.lock`)."""

    def rotate_key(
        self, new_key: VaultKey, *, audit: AuditEvent, progress: ProgressCallback | None = None
    ) -> str:
        """Re-encrypt every secret under ``new_key`` without losing any, and return the
        new key id. Backends whose store manages its own keys keep this default, which
        refuses."""
        raise VaultError(
            f"the secrets at {self.location} are encrypted by their store; rotate its key there"
        )

    def verify(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Check every stored secret and audit entry; raise :class:`VaultCorruptError`
        on the first damage found. The default checks nothing."""

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release connections and files. Safe to call twice."""
