"""Cloud identities through their own SDKs, offline: boto3 sessions (keys, profile,
role assumption against moto's STS) and SigV4 signing; azure-identity credentials
built without a network call; google-auth service-account credentials whose JWT
bearer exchange runs against the local authorization server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tapyard import AwsAuth, AzureAuth, ConfigError, GcpAuth
from tapyard_sample import LocalAuthorizationServer, OAuthClient
from tests.creds_helpers import rsa_key_pair

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture(autouse=True)
def _fake_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


# --- AWS ------------------------------------------------------------------------------------


def test_a_boto3_session_from_access_keys() -> None:
    strategy = AwsAuth(access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY, region="eu-west-1")
    session = strategy.session()
    frozen = session.get_credentials().get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key) == (ACCESS_KEY, SECRET_KEY)
    assert session.region_name == "eu-west-1" and strategy.session() is session
    with pytest.raises(ConfigError, match="need both access_key_id and secret_access_key"):
        AwsAuth(access_key_id=ACCESS_KEY).session()


def test_a_boto3_session_from_a_profile(tmp_path: Path) -> None:
    (tmp_path / "aws-credentials").write_text(
        f"[acme]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
    )
    session = AwsAuth(profile="acme").session()
    assert session.get_credentials().access_key == ACCESS_KEY
    with pytest.raises(ConfigError, match="aws profile 'nope' is not configured"):
        AwsAuth(profile="nope").session()


def test_role_assumption_against_moto_sts() -> None:
    from moto import mock_aws

    with mock_aws():
        strategy = AwsAuth(
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            region="us-east-1",
            role_arn="arn:aws:iam::123456789012:role/reader",
            external_id="ext-1234",
            role_session_name="tapyard-test",
        )
        frozen = strategy.session().get_credentials().get_frozen_credentials()
        assert frozen.access_key.startswith("ASIA") and frozen.access_key != ACCESS_KEY
        assert frozen.token
        identity = strategy.session().client("sts").get_caller_identity()
        assert identity["Arn"].endswith(":assumed-role/reader/tapyard-test")


def test_sigv4_signing_of_rest_requests() -> None:
    strategy = AwsAuth(access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY, region="eu-west-1", service="execute-api")
    request = httpx.Request("GET", "https://abc.execute-api.eu-west-1.amazonaws.com/prod/items?limit=5")
    strategy.apply(request)
    authorization = request.headers["Authorization"]
    assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert "/eu-west-1/execute-api/aws4_request, SignedHeaders=" in authorization
    assert request.headers["X-Amz-Date"] and SECRET_KEY not in str(request.headers)
    with pytest.raises(ConfigError, match="sign HTTP requests only when 'service' and 'region' are set"):
        AwsAuth(access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY).apply(request)


# --- Azure ----------------------------------------------------------------------------------


def test_an_azure_identity_credential_is_built_offline() -> None:
    from azure.identity import ClientSecretCredential

    strategy = AzureAuth(tenant_id="00000000-0000-0000-0000-000000000001", client_id="app-id", client_secret="azure-secret-value")
    assert isinstance(strategy.credential(), ClientSecretCredential)
    with pytest.raises(ConfigError, match="exactly one of client_secret and certificate_pem"):
        AzureAuth(tenant_id="t", client_id="c").credential()
    with pytest.raises(ConfigError, match="azure refused the credential"):
        AzureAuth(tenant_id="not a tenant!", client_id="c", client_secret="s-123456").credential()


def test_azure_bearer_tokens_are_cached_and_refreshed(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from azure.core.credentials import AccessToken

    strategy = AzureAuth(tenant_id="00000000-0000-0000-0000-000000000001", client_id="app-id", client_secret="azure-secret-value", scope="api://acme/.default")
    issued: list[str] = []

    class Fake:
        def get_token(self, *scopes: str) -> AccessToken:
            assert scopes == ("api://acme/.default",)
            issued.append(f"az-token-{len(issued)}")
            return AccessToken(issued[-1], int(time.time()) + 3600)

    monkeypatch.setattr(strategy, "credential", lambda: Fake())
    request = httpx.Request("GET", "https://management.azure.com/x")
    strategy.apply(request)
    strategy.apply(request)
    assert request.headers["Authorization"] == "Bearer az-token-0" and len(issued) == 1
    assert strategy.refresh() is True
    strategy.apply(request)
    assert request.headers["Authorization"] == "Bearer az-token-1"


# --- Google Cloud ---------------------------------------------------------------------------


@pytest.fixture
def google(tmp_path: Path) -> Iterator[tuple[LocalAuthorizationServer, str]]:
    private, public = rsa_key_pair()
    email = "loader@acme-project.iam.gserviceaccount.com"
    client = OAuthClient(
        "service-account", None, grant_types=("urn:ietf:params:oauth:grant-type:jwt-bearer",), jwt_issuer=email, public_key_pem=public
    )
    # google-auth always names Google's token endpoint as the audience.
    with LocalAuthorizationServer([client], audiences=["https://oauth2.googleapis.com/token"]) as server:
        info: dict[str, Any] = {
            "type": "service_account",
            "project_id": "acme-project",
            "private_key_id": "key-1",
            "private_key": private,
            "client_email": email,
            "client_id": "1234567890",
            "token_uri": server.token_url,
        }
        yield server, json.dumps(info)


def test_google_service_account_credentials_exchange_a_jwt_at_the_token_uri(
    google: tuple[LocalAuthorizationServer, str],
) -> None:
    server, key_file = google
    strategy = GcpAuth(service_account_json=key_file, scopes="https://www.googleapis.com/auth/bigquery.readonly")
    credentials = strategy.credentials()
    assert credentials.service_account_email == "loader@acme-project.iam.gserviceaccount.com"
    request = httpx.Request("GET", "https://bigquery.googleapis.com/bigquery/v2/projects")
    strategy.apply(request)
    assert server.validate(request.headers["Authorization"])
    assert server.stats["urn:ietf:params:oauth:grant-type:jwt-bearer:ok"] == 1
    strategy.apply(request)  # cached until a minute before it expires
    assert server.stats["urn:ietf:params:oauth:grant-type:jwt-bearer:ok"] == 1
    assert strategy.refresh() is True


def test_a_bad_service_account_key_is_one_clear_error(google: tuple[LocalAuthorizationServer, str]) -> None:
    with pytest.raises(ConfigError, match="service_account_json is not JSON"):
        GcpAuth(service_account_json="{not json").credentials()
    info = json.loads(google[1])
    del info["client_email"]
    with pytest.raises(ConfigError, match="the service account key lacks the field client_email"):
        GcpAuth(service_account_json=json.dumps(info)).credentials()
    info = json.loads(google[1]) | {"private_key": "not a key"}
    with pytest.raises(ConfigError, match="cannot be loaded"):
        GcpAuth(service_account_json=json.dumps(info)).credentials()
    info = json.loads(google[1])
    other, _ = rsa_key_pair()
    info["private_key"] = other
    with pytest.raises(ConfigError, match="google refused the service account") as caught:
        GcpAuth(service_account_json=json.dumps(info)).apply(httpx.Request("GET", "https://x.googleapis.com/"))
    assert "PRIVATE KEY" not in str(caught.value)
