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
from tapyard_credentials._redact import (
    RedactingFilter,
    Redactor,
    install_log_redaction,
    redact,
    redactor,
)
from tapyard_credentials._tokens import VaultTokenStore
from tapyard_credentials._vault import Vault, data_dir, default_vault_path

__version__ = "0.1.0"

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
    "KeyringUnavailableError",
    "LocalBackend",
    "LockTable",
    "LockTimeoutError",
    "ProgressCallback",
    "RedactingFilter",
    "Redactor",
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
    "redact",
    "redactor",
    "save_key_to_keyring",
]
