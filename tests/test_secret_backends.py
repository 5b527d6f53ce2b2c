"""Secret backends as plugins: the local vault and AWS Secrets Manager (against
moto's in-process mock), behind the same Vault: access control, the audit log,
durable token updates, and the CLI with ``--vault``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tapyard
from tapyard_credentials import (
    AccessDeniedError,
    AwsSecretsManagerBackend,
    CloudCredentialError,
    CredentialNotFoundError,
    CredentialValidationError,
    Redactor,
    Vault,
    VaultError,
    VaultTokenStore,
)
from tests.creds_helpers import run

REGION = "eu-west-1"
KEY = "k3y-" + "z9y8x7w6" * 3


@pytest.fixture(autouse=True)
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """Fake AWS credentials (a test can never reach a real account) and moto's mock."""
    from moto import mock_aws

    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    with mock_aws():
        yield


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    backend = AwsSecretsManagerBackend(region=REGION, prefix="team-a/", state_dir=tmp_path / "aws-state")
    with Vault(backend, redactor=Redactor()) as opened:
        yield opened


def _client() -> Any:
    import boto3

    return boto3.client("secretsmanager", region_name=REGION)


def test_the_vault_over_secrets_manager(vault: Vault) -> None:
    info = vault.put("stripe-prod", connector="stripe", kind="api_key", fields={"api_key": KEY}, allowed_connectors=["stripe-eu"])
    assert info.allowed_connectors == ("stripe", "stripe-eu") and vault.location == f"aws-secretsmanager://{REGION}/team-a/"
    described = _client().describe_secret(SecretId="team-a/stripe-prod")
    assert KEY not in json.dumps(described, default=str)  # the description holds no value
    assert json.loads(_client().get_secret_value(SecretId="team-a/stripe-prod")["SecretString"])["fields"] == {"api_key": KEY}

    credential = vault.get("stripe-prod", connector="stripe-eu", actor="scheduler")
    assert credential.secret("api_key") == KEY and credential.kind == "api_key"
    assert vault.info("stripe-prod").last_used_at is not None
    with pytest.raises(AccessDeniedError, match="connector 'github' may not use credential 'stripe-prod'"):
        vault.get("stripe-prod", connector="github")
    with pytest.raises(CredentialNotFoundError):
        vault.get("nothing", connector="stripe")

    vault.update_fields("stripe-prod", {"refresh_token": "rt-1"})
    assert vault.get("stripe-prod", connector="stripe").fields.keys() == {"api_key", "refresh_token"}
    vault.put("other", connector="acme", kind="bearer", fields={"token": "tok-123456"})
    assert [i.name for i in vault.list()] == ["other", "stripe-prod"]
    vault.remove("other")
    assert [i.name for i in vault.list()] == ["stripe-prod"]
    with pytest.raises(CredentialNotFoundError):
        vault.remove("other")
    outcomes = [(e.action, e.name, e.connector, e.outcome) for e in reversed(vault.audit())]
    assert outcomes == [
        ("put", "stripe-prod", "stripe", "ok"),
        ("get", "stripe-prod", "stripe-eu", "ok"),
        ("get", "stripe-prod", "github", "denied"),
        ("get", "nothing", "stripe", "not_found"),
        ("update_fields", "stripe-prod", None, "ok"),
        ("get", "stripe-prod", "stripe", "ok"),
        ("put", "other", "acme", "ok"),
        ("remove", "other", None, "ok"),
        ("remove", "other", None, "not_found"),
    ]


def test_access_control_comes_from_the_encrypted_secret_not_its_description(vault: Vault) -> None:
    vault.put("stripe-prod", connector="stripe", kind="api_key", fields={"api_key": KEY})
    described = json.loads(_client().describe_secret(SecretId="team-a/stripe-prod")["Description"])
    described["allowed_connectors"].append("github")
    _client().update_secret(SecretId="team-a/stripe-prod", Description=json.dumps(described))
    with pytest.raises(AccessDeniedError):
        vault.get("stripe-prod", connector="github")


def test_what_does_not_fit_is_refused_clearly(vault: Vault) -> None:
    with pytest.raises(CredentialValidationError, match="cannot be an AWS secret name"):
        vault.put("has spaces", connector="acme", kind="api_key", fields={"api_key": KEY})
    with pytest.raises(VaultError, match="encrypted by their store; rotate its key there"):
        vault.rotate_key(tapyard_credentials_key())
    _client().create_secret(Name="team-a/foreign", SecretString="not ours")
    assert [i.name for i in vault.list()] == []  # secrets that are not tapyard's are skipped


def tapyard_credentials_key() -> str:
    from tapyard_credentials import generate_key

    return generate_key()


def test_oauth_login_and_rotation_write_through_to_secrets_manager(vault: Vault) -> None:
    import threading

    import httpx

    from tapyard import OAuth2AuthorizationCodeAuth
    from tapyard_sample import LocalAuthorizationServer, OAuthClient

    client = OAuthClient("app", None, redirect_uris=("http://127.0.0.1/callback",))
    with LocalAuthorizationServer([client]) as server:
        fields = {"authorize_url": server.authorize_url, "token_url": server.token_url, "client_id": "app"}
        vault.put("app-user", connector="acme", kind="oauth2_authorization_code", fields=fields)
        options = OAuth2AuthorizationCodeAuth.Options(**fields, name="app-user")
        strategy = OAuth2AuthorizationCodeAuth(options, VaultTokenStore(vault, "app-user", connector="acme"))

        def browser(url: str) -> None:
            threading.Thread(target=lambda: httpx.get(url, follow_redirects=True, timeout=10), daemon=True).start()

        strategy.login(open_browser=browser, timeout=10)
        first = vault.get("app-user", connector="acme").secret("refresh_token")
        assert strategy.refresh() is True
        second = vault.get("app-user", connector="acme").secret("refresh_token")
        assert second != first
        stored = json.loads(_client().get_secret_value(SecretId="team-a/app-user")["SecretString"])
        assert stored["fields"]["refresh_token"] == second
        # A second strategy over the same secret picks the rotated token up.
        again = OAuth2AuthorizationCodeAuth(options, VaultTokenStore(vault, "app-user", connector="acme"))
        assert again.refresh() is True and server.stats["invalid_grant"] == 0


def test_the_secret_backend_hook(register_plugin: Any, tmp_path: Path) -> None:
    from tapyard_credentials import generate_key

    key = generate_key()

    class Plugin:
        @tapyard.hookimpl
        def tapyard_register_secret_backends(self, register: Any) -> None:
            register("scratch", lambda url, given: _scratch(tmp_path, url, key))

    register_plugin(Plugin(), "scratch-backend")
    assert {"file", "aws-secretsmanager", "scratch"} <= set(tapyard.collect_secret_backends())
    with tapyard.open_vault("scratch://one.db") as vault:
        vault.put("a", connector="acme", kind="bearer", fields={"token": KEY})
        assert vault.location == str(tmp_path / "one.db")
    with tapyard.open_vault(f"aws-secretsmanager://{REGION}/via-hook/") as vault:
        vault.put("b", connector="acme", kind="bearer", fields={"token": KEY})
        assert _client().describe_secret(SecretId="via-hook/b")["Name"] == "via-hook/b"
    with pytest.raises(tapyard.ConfigError, match=r"no secret backend for vault URL scheme 'hcvault' \(known: aws-secretsmanager, file, scratch\)"):
        tapyard.open_vault("hcvault://vault.acme.test/secret")
    with pytest.raises(tapyard.ConfigError, match="vault URL option 'colour' is unknown"):
        tapyard.open_vault(f"aws-secretsmanager://{REGION}/x/?colour=red")


def _scratch(directory: Path, url: str, key: str) -> Any:
    from tapyard_credentials import LocalBackend, VaultKey

    return LocalBackend(directory / url.split("://", 1)[1], VaultKey.from_key(key))


def test_a_missing_sdk_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from tapyard_credentials import _cloud

    real = importlib.import_module

    def without_boto3(name: str, *args: Any) -> Any:
        if name.startswith(("boto3", "botocore")):
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(_cloud.importlib, "import_module", without_boto3)
    with pytest.raises(CloudCredentialError, match=r"the boto3 package is not installed: pip install 'tapyard-credentials\[aws\]'"):
        AwsSecretsManagerBackend(region=REGION)


def test_the_cli_with_a_secrets_manager_vault(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("TAPYARD_VAULT_KEY", raising=False)
    url = f"aws-secretsmanager://{REGION}/cli/"
    monkeypatch.setenv("S_API_KEY", KEY)
    code, out, err = run(capsys, "creds", "--vault", url, "add", "sk", "--connector", "sample", "--kind", "api_key", "--from-env", "S_")
    assert code == 0, err
    config = json.dumps({"records_per_stream": 25, "auth": "api_key", "server_api_key": KEY})
    code, out, err = run(capsys, "sync", "sample", "-c", config, "--vault", url, "--creds", "sk", "--to", f"sqlite:///{tmp_path / 'o.db'}", "--json")
    assert code == 0, err
    assert json.loads(out)["records"] == 75
    code, out, err = run(capsys, "creds", "--vault", url, "list", "--json")
    assert code == 0 and json.loads(out)[0]["last_used_at"] is not None
    code, out, err = run(capsys, "creds", "--vault", url, "audit", "--json")
    assert [e["action"] for e in json.loads(out)] == ["get", "put"]
    code, out, err = run(capsys, "creds", "--vault", url, "rotate-key")
    assert code == 1 and err.strip() == f"Error: the secrets at {url} are encrypted by their store; rotate its key there"
    assert KEY not in out + err
