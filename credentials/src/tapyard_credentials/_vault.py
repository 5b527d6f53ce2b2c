"""The vault: typed credentials behind access control, an audit log and redaction."""

from __future__ import annotations

import builtins
import contextlib
import getpass
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from pydantic import SecretStr

from tapyard_credentials._backend import ProgressCallback, SecretBackend
from tapyard_credentials._exceptions import (
    AccessDeniedError,
    CredentialNotFoundError,
    CredentialValidationError,
)
from tapyard_credentials._fleetlock import FleetLocks
from tapyard_credentials._keys import VaultKey
from tapyard_credentials._local import LocalBackend
from tapyard_credentials._models import (
    AuditAction,
    AuditEntry,
    AuditEvent,
    AuditOutcome,
    Credential,
    CredentialInfo,
    validate_connector,
    validate_fields,
    validate_kind,
    validate_name,
)
from tapyard_credentials._paths import data_dir, default_vault_path
from tapyard_credentials._redact import Redactor
from tapyard_credentials._redact import redactor as default_redactor

__all__ = ["Vault", "data_dir", "default_vault_path"]


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


_OS_USER = _os_user()


def _now() -> datetime:
    return datetime.now(UTC)


def _as_key(key: VaultKey | str | bytes | SecretStr | None) -> VaultKey | None:
    if key is None or isinstance(key, VaultKey):
        return key
    return VaultKey.from_key(key)


class Vault:
    """Typed credentials, each usable only by the connectors it allows, with every
    read, write, removal, rotation and refusal in an append-only audit log.

    Open the local vault with :meth:`open`, or wrap any :class:`SecretBackend`.
    Every secret the vault returns or stores is registered with the redactor (the
    process-wide one by default), so it is scrubbed from redacted logs. A vault may
    be shared by threads; processes share the file. Use it as a context manager, or
    call :meth:`close`.
    """

    def __init__(
        self,
        backend: SecretBackend,
        *,
        redactor: Redactor | None = None,
        locks: FleetLocks | None = None,
    ) -> None:
        self.backend = backend
        self.redactor = default_redactor if redactor is None else redactor
        #: locks shared with other machines (Redis, PostgreSQL), taken by :meth:`lock`
        #: after the backend's own: see :mod:`tapyard_credentials._fleetlock`
        self.locks = locks

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        key: VaultKey | str | bytes | SecretStr | None = None,
        *,
        redactor: Redactor | None = None,
        locks: FleetLocks | None = None,
    ) -> Vault:
        """The local vault at ``path`` (default :func:`default_vault_path`).

        ``key`` is a :class:`VaultKey`, or a key as :func:`generate_key` writes it.
        ``None`` takes ``TAPYARD_VAULT_KEY``, then ``TAPYARD_VAULT_PASSPHRASE``, then
        a key in the OS keyring (secure backends only). An existing file is verified
        and its key checked before this returns: :class:`VaultKeyError` for a key that
        does not open it, :class:`VaultCorruptError` for a damaged file (left
        untouched). A missing file is created, mode 0600, on the first write.
        """
        target = Path(path).expanduser() if path is not None else default_vault_path()
        return cls(LocalBackend(target, _as_key(key)), redactor=redactor, locks=locks)

    # --- reading --------------------------------------------------------------------

    @property
    def location(self) -> str:
        """Where the secrets live (the vault file's path). Safe to show."""
        return self.backend.location

    @property
    def key_id(self) -> str | None:
        """The public fingerprint of the vault key (``None`` before the vault exists)."""
        return self.backend.key_id

    def get(self, name: str, *, connector: str, actor: str = "cli") -> Credential:
        """The credential ``name`` with its fields, for ``connector``.

        Raises :class:`CredentialNotFoundError` if there is none, and
        :class:`AccessDeniedError` if ``connector`` is not among its allowed
        connectors; both are audited, as is every successful read, which also sets
        ``last_used_at``. Its values are registered with the redactor.
        """
        validate_name(name)
        validate_connector(connector)
        actor = self._actor(actor)
        credential = self.backend.get(name)
        if credential is None:
            self._record("get", actor=actor, name=name, connector=connector, outcome="not_found")
            raise CredentialNotFoundError(
                f"no credential named {name!r} in {self.location}", name=name
            )
        if connector not in credential.allowed_connectors:
            self._record("get", actor=actor, name=name, connector=connector, outcome="denied")
            allowed = ", ".join(credential.allowed_connectors)
            raise AccessDeniedError(
                f"connector {connector!r} may not use credential {name!r} (allowed: {allowed})",
                name=name,
                connector=connector,
            )
        self.redactor.register(*credential.fields.values())
        at = _now()
        self.backend.mark_used(
            name, at=at, audit=self._event("get", actor, name, connector, "ok", at)
        )
        return credential.model_copy(update={"last_used_at": at})

    def info(self, name: str) -> CredentialInfo:
        """What the vault knows about ``name``, without values. Not audited.

        Raises :class:`CredentialNotFoundError`.
        """
        found = self.backend.info(validate_name(name))
        if found is None:
            raise CredentialNotFoundError(
                f"no credential named {name!r} in {self.location}", name=name
            )
        return found

    def list(self) -> builtins.list[CredentialInfo]:
        """Every credential, sorted by name, without values. Not audited."""
        return self.backend.list()

    def audit(self, limit: int = 100, name: str | None = None) -> builtins.list[AuditEntry]:
        """Up to ``limit`` audit entries, newest first; only those about ``name`` if given."""
        if limit < 1:
            raise CredentialValidationError("the audit limit must be at least 1")
        return self.backend.audit(limit=limit, name=name)

    # --- writing --------------------------------------------------------------------

    def put(
        self,
        name: str,
        *,
        connector: str,
        kind: str,
        fields: Mapping[str, str | SecretStr],
        allowed_connectors: Sequence[str] | None = None,
        actor: str = "cli",
    ) -> CredentialInfo:
        """Store a credential, replacing any of the same name (keeping its ``created_at``).

        Every field is encrypted. ``allowed_connectors`` defaults to ``[connector]``;
        the owning ``connector`` is always allowed. Durable when it returns; audited.
        Raises :class:`CredentialValidationError` for malformed input (naming fields,
        never values).
        """
        validate_name(name)
        validate_connector(connector)
        validate_kind(kind)
        plain = validate_fields(fields)
        allowed = [connector]
        for other in allowed_connectors or ():
            if validate_connector(other, "allowed connector name") not in allowed:
                allowed.append(other)
        actor = self._actor(actor)
        self.redactor.register(*plain.values())
        at = _now()
        return self.backend.put(
            name,
            connector=connector,
            kind=kind,
            fields=plain,
            allowed_connectors=allowed,
            at=at,
            audit=self._event("put", actor, name, connector, "ok", at),
        )

    def update_fields(
        self, name: str, fields: Mapping[str, str | SecretStr], *, actor: str = "cli"
    ) -> CredentialInfo:
        """Replace some fields of a credential, keeping the others (for rotated OAuth tokens).

        Atomic against concurrent updates, and durable (synced to disk) when it
        returns. Audited. Raises :class:`CredentialNotFoundError`.
        """
        validate_name(name)
        plain = validate_fields(fields)
        actor = self._actor(actor)
        self.redactor.register(*plain.values())
        at = _now()
        updated = self.backend.update_fields(
            name, plain, at=at, audit=self._event("update_fields", actor, name, None, "ok", at)
        )
        if updated is None:
            self._record(
                "update_fields", actor=actor, name=name, connector=None, outcome="not_found"
            )
            raise CredentialNotFoundError(
                f"no credential named {name!r} in {self.location}", name=name
            )
        return updated

    def remove(self, name: str, *, actor: str = "cli") -> None:
        """Delete a credential (even a damaged one). Durable and audited.

        Raises :class:`CredentialNotFoundError`.
        """
        validate_name(name)
        actor = self._actor(actor)
        at = _now()
        if not self.backend.delete(name, audit=self._event("remove", actor, name, None, "ok", at)):
            self._record("remove", actor=actor, name=name, connector=None, outcome="not_found")
            raise CredentialNotFoundError(
                f"no credential named {name!r} in {self.location}", name=name
            )

    def rotate_key(
        self,
        new_key: VaultKey | str | bytes | SecretStr,
        *,
        actor: str = "cli",
        progress: ProgressCallback | None = None,
    ) -> str:
        """Re-encrypt every secret under ``new_key`` and return its key id.

        One transaction: if the process dies at any point, the vault opens with either
        the old key or the new one and holds every secret. ``progress(done, total)``
        is called as rows are re-encrypted (inside the transaction: if it raises,
        nothing changes). Other processes holding the vault open get a
        :class:`VaultKeyError` on their next use and must reopen it with the new key.
        """
        key = _as_key(new_key)
        assert key is not None
        actor = self._actor(actor)
        at = _now()
        return self.backend.rotate_key(
            key, audit=self._event("rotate_key", actor, None, None, "ok", at), progress=progress
        )

    def lock(self, name: str, *, timeout: float | None = None) -> AbstractContextManager[None]:
        """An exclusive lock on credential ``name`` across threads and processes.

        Use it to serialize a read-modify-write such as an OAuth refresh, so a
        single-use refresh token is never spent twice::

            with vault.lock("stripe-prod"):
                credential = vault.get("stripe-prod", connector="stripe")
                ...  # refresh, then vault.update_fields(...) before using the new token

        Re-entrant within a thread. Raises :class:`LockTimeoutError` after ``timeout``
        seconds (``None``: wait forever). The lock is advisory: it binds only code that
        takes it. The credential need not exist. With ``locks`` (a Redis or PostgreSQL
        lock server) it also binds processes on other machines that share the backend.
        """
        validate_name(name)
        if self.locks is None:
            return self.backend.lock(name, timeout=timeout)
        return self._both_locks(name, timeout)

    @contextlib.contextmanager
    def _both_locks(self, name: str, timeout: float | None) -> Iterator[None]:
        """The backend's lock (this machine's threads and processes queue there), then
        the fleet's (other machines'), within one ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.backend.lock(name, timeout=timeout):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            assert self.locks is not None
            with self.locks.lock(name, timeout=left):
                yield

    def verify(self) -> None:
        """Check the whole vault: SQLite's full integrity check, every row's digest, every
        credential's authentication, every audit entry. Raises :class:`VaultCorruptError`
        naming the first damage found. Reads only."""
        self.backend.verify()

    def close(self) -> None:
        """Release the vault's file (and the lock server's connection). Safe to call twice."""
        self.backend.close()
        if self.locks is not None:
            self.locks.close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Vault({self.location!r})"

    # --- audit helpers ----------------------------------------------------------------

    @staticmethod
    def _actor(actor: str) -> str:
        return validate_name(actor, "actor name")

    @staticmethod
    def _event(
        action: AuditAction,
        actor: str,
        name: str | None,
        connector: str | None,
        outcome: AuditOutcome,
        at: datetime,
    ) -> AuditEvent:
        return AuditEvent(
            at=at,
            actor=actor,
            action=action,
            name=name,
            connector=connector,
            outcome=outcome,
            user=_OS_USER,
            pid=os.getpid(),
        )

    def _record(
        self,
        action: AuditAction,
        *,
        actor: str,
        name: str,
        connector: str | None,
        outcome: AuditOutcome,
    ) -> None:
        self.backend.record(self._event(action, actor, name, connector, outcome, _now()))
