"""Opening the vault behind a URL, and turning a stored credential into the typed
credentials of a run.

A vault URL picks a secret backend by scheme (``tapyard_register_secret_backends``):
a plain path or ``file:///path`` is the local encrypted vault,
``aws-secretsmanager://REGION/PREFIX`` the AWS Secrets Manager backend. The
default is ``TAPYARD_VAULT``, else ``vault.db`` in the data directory.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from tapyard.base import ConfigError

if TYPE_CHECKING:
    from tapyard.base import Connector, PluginSet
    from tapyard_credentials import Redactor, SecretBackend, Vault, VaultKey

__all__ = [
    "ENV_VAULT",
    "collect_secret_backends",
    "load_credentials",
    "open_vault",
    "url_scheme",
    "validate_credential_fields",
    "vault_location",
]

ENV_VAULT = "TAPYARD_VAULT"

BackendFactory = Callable[[str, "VaultKey | None"], "SecretBackend"]


def collect_secret_backends(plugins: PluginSet | None = None) -> dict[str, BackendFactory]:
    """Every secret backend factory ``plugins`` registered (default: the process default set), by URL scheme."""
    from tapyard.base import default_plugin_set

    return dict((plugins or default_plugin_set()).secret_backends())


def vault_location(url: str | None = None) -> str:
    """The vault URL to use: ``url``, else ``TAPYARD_VAULT``, else the default file."""
    if url:
        return url
    from tapyard_credentials import default_vault_path

    return os.environ.get(ENV_VAULT) or str(default_vault_path())


def url_scheme(location: str) -> str:
    """The lower-cased scheme of a vault or backend location; "" for a plain path."""
    scheme = urllib.parse.urlsplit(location).scheme
    # A one-letter scheme is a Windows drive (C:\\...), not a URL.
    return scheme.lower() if len(scheme) > 1 else ""


def local_path(url: str) -> Path:
    """The file of a ``file:`` URL (``file:///abs/path``, ``file:relative``) or a plain path."""
    if url_scheme(url) != "file":
        return Path(url).expanduser()
    parts = urllib.parse.urlsplit(url)
    path = urllib.parse.unquote(parts.path)
    if parts.netloc and parts.netloc != "localhost":
        raise ConfigError(f"vault URL {url!r} names a host; use file:///absolute/path")
    if not path:
        raise ConfigError(f"vault URL {url!r} names no file")
    return Path(path).expanduser()


def aws_backend(url: str) -> SecretBackend:
    """An AWS Secrets Manager backend for ``aws-secretsmanager://REGION/PREFIX``
    (query options: ``endpoint_url``, ``kms_key_id``, ``profile``)."""
    from tapyard_credentials import AwsSecretsManagerBackend, CloudCredentialError, aws_session

    parts = urllib.parse.urlsplit(url)
    options = dict(urllib.parse.parse_qsl(parts.query))
    unknown = sorted(set(options) - {"endpoint_url", "kms_key_id", "profile"})
    if unknown:
        raise ConfigError(
            f"vault URL option {unknown[0]!r} is unknown (known: endpoint_url, kms_key_id, profile)"
        )
    region = parts.hostname or None
    prefix = parts.path.lstrip("/") or "tapyard/"
    try:
        session = aws_session(profile=options.get("profile"), region=region)
    except CloudCredentialError as exc:
        raise ConfigError(str(exc)) from exc
    return AwsSecretsManagerBackend(
        region=region,
        prefix=prefix,
        session=session,
        endpoint_url=options.get("endpoint_url"),
        kms_key_id=options.get("kms_key_id"),
    )


def open_vault(
    url: str | None = None,
    *,
    key: VaultKey | None = None,
    redactor: Redactor | None = None,
    plugins: PluginSet | None = None,
) -> Vault:
    """The vault behind ``url`` (see :func:`vault_location`).

    ``key`` opens a local vault (None: ``TAPYARD_VAULT_KEY``, then
    ``TAPYARD_VAULT_PASSPHRASE``, then the OS keyring). ``redactor`` receives every
    value the vault stores or returns (the process-wide one by default).
    ``TAPYARD_LOCK_URL`` (``redis://...`` or ``postgresql://...``) adds credential
    locks that bind workers on other machines sharing the backend.
    ``plugins`` is the plugin set whose secret backends serve the URL's scheme
    (default: the process default set).
    """
    from tapyard_credentials import Vault, VaultError, locks_from_url

    location = vault_location(url)
    scheme = url_scheme(location) or "file"
    backends = collect_secret_backends(plugins)
    factory = backends.get(scheme)
    if factory is None:
        known = ", ".join(sorted(backends)) or "none"
        raise ConfigError(
            f"no secret backend for vault URL scheme {scheme!r} (known: {known}); "
            "install the plugin that provides it"
        )
    try:
        locks = locks_from_url(os.environ.get("TAPYARD_LOCK_URL"))
    except VaultError as exc:
        raise ConfigError(str(exc)) from None
    return Vault(factory(location, key), redactor=redactor, locks=locks)


def validate_credential_fields(
    model: type[BaseModel],
    fields: Mapping[str, str],
    *,
    kind: str,
    name: str | None,
    connector: str,
) -> BaseModel:
    """``fields`` as an instance of a connector's credential ``model``.

    Unknown and missing fields are refused in one line that names fields and
    the rules they break, never a value.
    """
    from tapyard.base import describe_validation_error

    known = set(model.model_fields) - {"kind", "name"}
    unknown = sorted(set(fields) - known)
    data: dict[str, Any] = dict(fields)
    if "kind" in model.model_fields:
        data["kind"] = kind
    if "name" in model.model_fields:
        data["name"] = name
    problems: list[str] = []
    result: BaseModel | None = None
    try:
        result = model.model_validate(data)
    except ValidationError as exc:
        problems.extend(
            part for part in describe_validation_error(exc, limit=6).split("; ") if not any(
                part.startswith(f"{field}: unknown") for field in unknown
            )
        )
    problems.extend(f"{field}: unknown field" for field in unknown)
    if problems or result is None:
        label = f"credential {name!r}" if name else "the credential"
        raise ConfigError(
            f"{label} does not fit {connector}'s {kind} credential model: " + "; ".join(problems)
        )
    return result


def load_credentials(
    vault: Vault, name: str, connector: Connector, *, actor: str = "cli", plugins: PluginSet | None = None
) -> BaseModel:
    """The stored credential ``name`` as the typed credentials of a run of ``connector``.

    The read is access-controlled and audited (``AccessDeniedError`` when the
    connector may not use it); the fields are validated against the connector's
    model for the credential's kind (its own, or that of the auth strategy
    ``plugins`` registered for the kind; default: the process default set's); the
    secret values are registered with the process-wide redactor; and the result
    saves the tokens its strategy obtains back into the vault (its ``token_store``).
    """
    from tapyard.base import Credentials, secret_values
    from tapyard_credentials import VaultTokenStore, redactor

    credential = vault.get(name, connector=connector.name, actor=actor)
    plain = {key: value.get_secret_value() for key, value in credential.fields.items()}
    model = connector.credential_model(
        credential.kind, plugins.auth_strategies() if plugins is not None else None
    )
    validated = validate_credential_fields(
        model, plain, kind=credential.kind, name=name, connector=connector.name
    )
    redactor.register(*secret_values(validated))
    if isinstance(validated, Credentials):
        store = VaultTokenStore(vault, name, connector=connector.name, actor=actor)
        validated = validated.with_token_store(store)
    return validated
