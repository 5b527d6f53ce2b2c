"""The sample server as an auth test bed: an API key (header or query, never
echoed), or OAuth 2.0 bearer tokens from its own authorization server."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from pydantic import ValidationError

from tapyard_sample import LocalAuthorizationServer, OAuthClient, SampleConfig
from tapyard_sample._data import Dataset
from tapyard_sample._server import SampleServer

KEY = "sample-key-0123456789"
SECRET = "sample-secret-0123456789"


@pytest.fixture(scope="module")
def keyed() -> Iterator[SampleServer]:
    with SampleServer(Dataset(30), auth="api_key", api_key=KEY) as running:
        yield running


@pytest.fixture(scope="module")
def oauth() -> Iterator[SampleServer]:
    authz = LocalAuthorizationServer([OAuthClient("sample-client", SECRET)], access_token_ttl=60)
    with SampleServer(Dataset(30), auth="oauth2", oauth=authz) as running:
        yield running


def test_an_api_key_in_a_header_or_the_query(keyed: SampleServer) -> None:
    ok = httpx.get(f"{keyed.url}/v1/customers", headers={"X-API-Key": KEY})
    assert ok.status_code == 200 and len(ok.json()["data"]) == 30
    events = httpx.get(f"{keyed.url}/v1/events", params={"limit": 5, "api_key": KEY})
    assert events.status_code == 200
    assert "api_key" not in events.headers["link"] and KEY not in events.headers["link"]
    for headers, params in (({}, {}), ({"X-API-Key": "wrong"}, {}), ({}, {"api_key": KEY[:-1]})):
        refused = httpx.get(f"{keyed.url}/v1/health", headers=headers, params=params)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("ApiKey")
        assert refused.json()["error"]["type"] == "unauthorized"
    assert keyed.unauthorized == 3


def test_oauth2_bearer_tokens_from_its_own_token_endpoint(oauth: SampleServer) -> None:
    assert httpx.get(f"{oauth.url}/v1/customers").status_code == 401
    token = httpx.post(f"{oauth.url}/oauth/token", data={"grant_type": "client_credentials"}, auth=("sample-client", SECRET))
    assert token.status_code == 200 and token.json()["expires_in"] == 60
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert httpx.get(f"{oauth.url}/v1/customers", headers=bearer).status_code == 200
    wrong = httpx.post(f"{oauth.url}/oauth/token", data={"grant_type": "client_credentials"}, auth=("sample-client", "nope"))
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    refused = httpx.get(f"{oauth.url}/v1/customers", headers={"Authorization": "Bearer made-up"})
    assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert httpx.put(f"{oauth.url}/oauth/token").status_code == 405


def test_no_auth_stays_as_it_was() -> None:
    with SampleServer(Dataset(3)) as running:
        assert httpx.get(f"{running.url}/v1/customers").status_code == 200
        assert httpx.post(f"{running.url}/oauth/token").status_code == 405


def test_the_config_needs_the_servers_side_of_the_secret() -> None:
    assert SampleConfig().auth == "none"
    with pytest.raises(ValidationError, match="needs server_api_key"):
        SampleConfig(auth="api_key")
    with pytest.raises(ValidationError, match="needs server_client_secret"):
        SampleConfig(auth="oauth2")
    config = SampleConfig(auth="api_key", server_api_key=KEY)
    assert KEY not in repr(config) and KEY not in config.model_dump_json()
