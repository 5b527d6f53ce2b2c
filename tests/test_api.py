"""The public API is pinned, and every hook is in the plugin authors' reference."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import tapyard
from tapyard import hookspecs

ROOT = Path(__file__).resolve().parents[1]

PUBLIC = {
    "PLUGIN_API_VERSION", "ApiKeyAuth", "AuthStrategy", "AuthenticationError", "BasicAuth", "Batch",
    "BearerAuth", "CircuitOpenError", "ConfigError", "Connector", "ConnectorNotFoundError",
    "CursorPaginator", "DeadlineExceededError", "Destination", "DestinationError", "HTTPError",
    "HTTPStatusError", "HttpEngine", "HttpPolicy", "LinkHeaderPaginator", "NextUrlPaginator",
    "NoConfig", "OffsetPaginator", "Page", "PageNumberPaginator", "PageRequest", "PageTokenPaginator",
    "Paginator", "PermissionDeniedError", "PluginError", "RateLimitSettings", "RateLimiter", "ResponseError", "RestConnector", "RestStream",
    "ResumeRejectedError", "RetryAfterTooLongError", "RunContext", "SchemaError", "SinglePage", "Source", "StateError",
    "Stream", "StreamNotFoundError", "StreamResult", "StreamState", "SyncResult", "TapyardError",
    "TransportError", "__version__", "collect_auth_strategies", "collect_connectors",
    "collect_destinations", "collect_paginators", "columns_of", "get_connector",
    "get_plugin_manager", "hookimpl", "model_from_json_schema", "open_destination",
    "register_plugin", "stream_paginator", "sync", "unregister_plugin",
    # credentials and auth (issue 4)
    "AwsAuth", "AzureAuth", "Credentials", "GcpAuth", "JwtBearerAuth", "MemoryTokenStore",
    "OAuth2AuthorizationCodeAuth", "OAuth2ClientCredentialsAuth", "OAuth2RefreshTokenAuth",
    "TokenStore", "collect_secret_backends", "load_credentials", "open_vault",
    # values without loss (issue 12): timestamps with their offsets and nanoseconds
    "Timestamp", "parse_timestamp",
    # plugin sets as objects, handed to a run (issue 14)
    "Plugins",
}

#: The vault's public surface (tapyard-credentials), pinned the same way.
CREDENTIALS_PUBLIC = {
    "AccessDeniedError", "AuditAction", "AuditEntry", "AuditEvent", "AuditOutcome",
    "AwsSecretsManagerBackend", "CloudCredentialError", "Credential", "CredentialInfo",
    "CredentialNotFoundError", "CredentialValidationError", "FleetLocks",
    "KeyringUnavailableError", "LocalBackend", "LockTable", "LockTimeoutError", "PostgresLocks",
    "ProgressCallback", "RedactingFilter", "Redactor", "RedisLocks", "SecretBackend", "Vault",
    "VaultCorruptError", "VaultError", "VaultKey", "VaultKeyError", "VaultStorageError",
    "VaultTokenStore", "aws_session", "aws_sign", "azure_credential", "data_dir",
    "default_vault_path", "gcp_access_token", "gcp_service_account_credentials", "generate_key",
    "install_log_redaction", "locks_from_url", "redact", "redactor", "save_key_to_keyring",
    "__version__",
}


def test_public_api_is_pinned() -> None:
    assert set(tapyard.__all__) == PUBLIC
    for name in tapyard.__all__:
        assert getattr(tapyard, name) is not None, name


def test_credentials_api_is_pinned() -> None:
    import tapyard_credentials

    assert set(tapyard_credentials.__all__) == CREDENTIALS_PUBLIC
    for name in tapyard_credentials.__all__:
        assert getattr(tapyard_credentials, name) is not None, name


def test_every_error_derives_from_tapyard_error_and_is_documented() -> None:
    from tapyard.base import _exceptions

    tree = _exceptions.__doc__ or ""
    for name in _exceptions.__all__:
        cls = getattr(_exceptions, name)
        assert issubclass(cls, tapyard.TapyardError)
        assert name in tree, f"{name} missing from the tree in the module docstring"
        assert "Safe" in (cls.__doc__ or "") or "safe" in (cls.__doc__ or ""), name


def _hooks() -> list[str]:
    return [name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("tapyard_")]


def test_every_hook_has_reference_docs() -> None:
    reference = (ROOT / "docs" / "hooks.md").read_text()
    documented = set(re.findall(r"^### `?(tapyard_\w+)", reference, re.M))
    assert set(_hooks()) == documented
    for name in _hooks():
        doc = " ".join((getattr(hookspecs, name).__doc__ or "").split())
        assert ":param" in doc or "return" in doc, name
        marker = getattr(hookspecs, name).tapyard_spec
        if marker.get("firstresult"):
            assert "first non-None result" in doc, name


def test_importing_tapyard_is_lazy() -> None:
    code = "import sys, tapyard; print(sorted(m for m in ('httpx', 'sqlmodel', 'sqlalchemy', 'rich') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_lazy_names_taken_by_many_threads_at_once_are_whole() -> None:
    """Sixteen threads of a fresh interpreter ask for ``tapyard.sync`` at once: the
    one that imports the module does, the others wait for it, none gets a module
    half made (they used to raise AttributeError: a server's worker threads, or
    two syncs started in threads, met it)."""
    code = (
        "import threading, tapyard\n"
        "barrier = threading.Barrier(16)\n"
        "errors = []\n"
        "def go():\n"
        "    barrier.wait()\n"
        "    try:\n"
        "        tapyard.sync, tapyard.open_destination, tapyard.RestConnector\n"
        "    except Exception as exc:\n"
        "        errors.append(repr(exc))\n"
        "threads = [threading.Thread(target=go) for _ in range(16)]\n"
        "[t.start() for t in threads]\n"
        "[t.join() for t in threads]\n"
        "print(errors)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", done.stdout[-2000:]


def test_core_imports_no_connector_or_vendor_sdk() -> None:
    sources = (ROOT / "core" / "src" / "tapyard").rglob("*.py")
    forbidden = re.compile(
        r"^\s*(import|from)\s+(tapyard_(?!credentials)\w+|boto3|botocore|stripe|simple_salesforce|google|azure)\b",
        re.M,
    )
    offenders = [str(p) for p in sources if forbidden.search(p.read_text())]
    assert offenders == []
