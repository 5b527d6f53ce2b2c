"""tapyard_credentials: the tapyard credential vault as a standalone library.

Typed credentials encrypted at rest (AES-256-GCM in a local SQLite file by
default), access control per connector, an append-only audit log, key
management (environment, passphrase, OS keyring; rotation), per-credential
locks across processes, redaction of secrets from text and logs, a token store
for OAuth strategies, cloud identities through their own SDKs (boto3,
azure-identity, google-auth: optional extras) and an AWS Secrets Manager
backend::

    from tapyard_credentials import Vault, generate_key

    with Vault.open(key=generate_key()) as vault:
        vault.put("stripe-prod", connector="stripe", kind="api_key", fields={"api_key": "sk_live_..."})
        credential = vault.get("stripe-prod", connector="stripe")
        credential.fields["api_key"].get_secret_value()

The public API is what this module exports; ``tapyard_credentials._*`` modules
are private. This package depends on nothing else of tapyard's.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tapyard_credentials._aws import AwsSecretsManagerBackend
    from tapyard_credentials._backend import ProgressCallback, SecretBackend
    from tapyard_credentials._cloud import (
        aws_session,
        aws_sign,
        azure_credential,
        gcp_access_token,
        gcp_service_account_credentials,
    )
    from tapyard_credentials._exceptions import (
        AccessDeniedError,
        CloudCredentialError,
        CredentialNotFoundError,
        CredentialValidationError,
        KeyringUnavailableError,
        LockTimeoutError,
        VaultCorruptError,
        VaultError,
        VaultKeyError,
        VaultStorageError,
    )
    from tapyard_credentials._fleetlock import FleetLocks, PostgresLocks, RedisLocks, locks_from_url
    from tapyard_credentials._keys import VaultKey, generate_key, save_key_to_keyring
    from tapyard_credentials._local import LocalBackend
    from tapyard_credentials._lock import LockTable
    from tapyard_credentials._models import (
        AuditAction,
        AuditEntry,
        AuditEvent,
        AuditOutcome,
        Credential,
        CredentialInfo,
    )
    from tapyard_credentials._paths import data_dir, default_vault_path
    from tapyard_credentials._redact import (
        RedactingFilter,
        Redactor,
        install_log_redaction,
        redact,
        redactor,
    )
    from tapyard_credentials._tokens import VaultTokenStore
    from tapyard_credentials._vault import Vault

__version__ = "0.1.0"

# Exports are imported on first use (PEP 562): the sync engine needs only the
# redactor, and should not pay for the vault, the AWS backend or cryptography.
_LAZY: dict[str, str] = {
    "AccessDeniedError": "tapyard_credentials._exceptions",
    "AuditAction": "tapyard_credentials._models",
    "AuditEntry": "tapyard_credentials._models",
    "AuditEvent": "tapyard_credentials._models",
    "AuditOutcome": "tapyard_credentials._models",
    "AwsSecretsManagerBackend": "tapyard_credentials._aws",
    "CloudCredentialError": "tapyard_credentials._exceptions",
    "Credential": "tapyard_credentials._models",
    "CredentialInfo": "tapyard_credentials._models",
    "CredentialNotFoundError": "tapyard_credentials._exceptions",
    "CredentialValidationError": "tapyard_credentials._exceptions",
    "FleetLocks": "tapyard_credentials._fleetlock",
    "KeyringUnavailableError": "tapyard_credentials._exceptions",
    "LocalBackend": "tapyard_credentials._local",
    "LockTable": "tapyard_credentials._lock",
    "LockTimeoutError": "tapyard_credentials._exceptions",
    "PostgresLocks": "tapyard_credentials._fleetlock",
    "ProgressCallback": "tapyard_credentials._backend",
    "RedactingFilter": "tapyard_credentials._redact",
    "RedisLocks": "tapyard_credentials._fleetlock",
    "Redactor": "tapyard_credentials._redact",
    "SecretBackend": "tapyard_credentials._backend",
    "Vault": "tapyard_credentials._vault",
    "VaultCorruptError": "tapyard_credentials._exceptions",
    "VaultError": "tapyard_credentials._exceptions",
    "VaultKey": "tapyard_credentials._keys",
    "VaultKeyError": "tapyard_credentials._exceptions",
    "VaultStorageError": "tapyard_credentials._exceptions",
    "VaultTokenStore": "tapyard_credentials._tokens",
    "aws_session": "tapyard_credentials._cloud",
    "aws_sign": "tapyard_credentials._cloud",
    "azure_credential": "tapyard_credentials._cloud",
    "data_dir": "tapyard_credentials._paths",
    "default_vault_path": "tapyard_credentials._paths",
    "gcp_access_token": "tapyard_credentials._cloud",
    "gcp_service_account_credentials": "tapyard_credentials._cloud",
    "generate_key": "tapyard_credentials._keys",
    "locks_from_url": "tapyard_credentials._fleetlock",
    "install_log_redaction": "tapyard_credentials._redact",
    "redact": "tapyard_credentials._redact",
    "redactor": "tapyard_credentials._redact",
    "save_key_to_keyring": "tapyard_credentials._keys",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tapyard_credentials' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

__all__ = [
    "AccessDeniedError",
    "AuditAction",
    "AuditEntry",
    "AuditEvent",
    "AuditOutcome",
    "AwsSecretsManagerBackend",
    "CloudCredentialError",
    "Credential",
    "CredentialInfo",
    "CredentialNotFoundError",
    "CredentialValidationError",
    "FleetLocks",
    "KeyringUnavailableError",
    "LocalBackend",
    "LockTable",
    "LockTimeoutError",
    "PostgresLocks",
    "ProgressCallback",
    "RedactingFilter",
    "Redactor",
    "RedisLocks",
    "SecretBackend",
    "Vault",
    "VaultCorruptError",
    "VaultError",
    "VaultKey",
    "VaultKeyError",
    "VaultStorageError",
    "VaultTokenStore",
    "__version__",
    "aws_session",
    "aws_sign",
    "azure_credential",
    "data_dir",
    "default_vault_path",
    "gcp_access_token",
    "gcp_service_account_credentials",
    "generate_key",
    "install_log_redaction",
    "locks_from_url",
    "redact",
    "redactor",
    "save_key_to_keyring",
]
