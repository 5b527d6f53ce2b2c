"""The vault's exception tree.

Every error the vault raises on purpose derives from :class:`VaultError`. A
caller (the tapyard CLI) prints ``str(error)`` on one line and exits non-zero.
Every message here is *safe to show users*: it may name a vault file, a
credential, a connector, a field or a key id, but never a secret value, a key,
a passphrase or any encoding of them.

    VaultError                      base of everything below
    ├── VaultKeyError               no key, a malformed key, or a key that does not open the vault
    │   └── KeyringUnavailableError the OS keyring is missing or only offers an insecure backend
    ├── VaultCorruptError           the file or one of its rows is damaged: restore from a backup
    ├── VaultStorageError           the storage cannot be read or written (permissions, disk full, busy)
    ├── LockTimeoutError            Vault.lock() gave up waiting
    ├── CredentialNotFoundError     no credential of that name
    ├── AccessDeniedError           the connector is not allowed to use that credential
    ├── CredentialValidationError   bad input to put(), or fields that do not fit a connector's model
    └── CloudCredentialError        a cloud SDK is missing, or refused to build or use a credential

All messages are safe to show users.
"""

from __future__ import annotations

__all__ = [
    "AccessDeniedError",
    "CloudCredentialError",
    "CredentialNotFoundError",
    "CredentialValidationError",
    "KeyringUnavailableError",
    "LockTimeoutError",
    "VaultCorruptError",
    "VaultError",
    "VaultKeyError",
    "VaultStorageError",
]


class VaultError(Exception):
    """Base of every error the vault raises on purpose. Its message is safe to show."""


class VaultKeyError(VaultError):
    """No vault key was found, a key is malformed, or the key does not open the vault. Safe.

    The message names where the key came from (``TAPYARD_VAULT_KEY``, a passphrase,
    the OS keyring), never the key itself.
    """


class KeyringUnavailableError(VaultKeyError):
    """The OS keyring was asked for but has no secure backend (only the plaintext,
    ``fail`` or ``null`` ones), or holds no vault key. Safe."""


class VaultCorruptError(VaultError):
    """The vault file, or one credential in it, is damaged (truncated, a changed byte,
    a ciphertext moved to another row). Safe.

    The vault refuses to write to a damaged file, so the file is left exactly as it
    was found; the remedy is to restore it from a backup.
    """


class VaultStorageError(VaultError):
    """The vault's storage cannot be read or written: permissions, a full disk, or
    another process holding the database for longer than the busy timeout. Safe."""


class LockTimeoutError(VaultError):
    """:meth:`Vault.lock` did not get the credential's lock within its timeout. Safe."""


class CredentialNotFoundError(VaultError):
    """No credential of that name is stored. Safe. ``name`` holds the name asked for."""

    def __init__(self, message: str, *, name: str) -> None:
        super().__init__(message)
        self.name = name


class AccessDeniedError(VaultError):
    """A connector asked for a credential it is not allowed to use; the refusal is
    audited. Safe. ``name`` and ``connector`` say who asked for what."""

    def __init__(self, message: str, *, name: str, connector: str) -> None:
        super().__init__(message)
        self.name = name
        self.connector = connector


class CredentialValidationError(VaultError):
    """Input to the vault is malformed, or a credential's fields do not fit a
    connector's credential model. Safe: the message names fields, never values."""


class CloudCredentialError(VaultError):
    """A cloud identity could not be built or used: its SDK (boto3, azure-identity,
    google-auth) is not installed, or the SDK or the cloud refused the credential.
    Safe: the message names the SDK, the field or the cloud's error code, never a value."""
