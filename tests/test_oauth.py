"""OAuth 2.0 against a real local authorization server (authlib's server classes on
127.0.0.1): client credentials, authorization code + PKCE (the verifier checked by
the server), refresh with rotation, the JWT bearer grant, renewal before expiry
and after a 401, and tokens saved before they are used."""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

import tapyard
from tapyard import (
    AuthenticationError,
    HttpEngine,
    JwtBearerAuth,
    MemoryTokenStore,
    OAuth2AuthorizationCodeAuth,
    OAuth2ClientCredentialsAuth,
    OAuth2RefreshTokenAuth,
)
from tapyard_sample import LocalAuthorizationServer, OAuthClient
from tests.creds_helpers import rsa_key_pair

SECRET = "cs-" + "x7" * 16
LOOPBACK = ("http://127.0.0.1/callback",)


@pytest.fixture
def server() -> Iterator[LocalAuthorizationServer]:
    clients = [
        OAuthClient("confidential", SECRET, redirect_uris=LOOPBACK),
        OAuthClient("public", None, redirect_uris=LOOPBACK, grant_types=("authorization_code", "refresh_token")),
    ]
    with LocalAuthorizationServer(clients, access_token_ttl=3600) as running:
        yield running


def _header(strategy: tapyard.AuthStrategy) -> str:
    request = httpx.Request("GET", "http://127.0.0.1:9/v1/x")
    strategy.apply(request)
    return request.headers["Authorization"]


def _browser(url: str) -> None:
    """Stands in for the user's browser: follow the authorization URL to the loopback redirect."""

    def visit() -> None:
        httpx.get(url, follow_redirects=True, timeout=10)

    threading.Thread(target=visit, daemon=True).start()


def _code_auth(server: LocalAuthorizationServer, store: MemoryTokenStore | None = None, **extra: Any) -> OAuth2AuthorizationCodeAuth:
    options = OAuth2AuthorizationCodeAuth.Options(
        authorize_url=server.authorize_url, token_url=server.token_url, client_id="public", name="acme-user", **extra
    )
    return OAuth2AuthorizationCodeAuth(options, store or MemoryTokenStore())


# --- client credentials -----------------------------------------------------------------


def test_client_credentials_renew_before_expiry_and_after_a_401(server: LocalAuthorizationServer) -> None:
    server.access_token_ttl = 120
    now = [1000.0]
    strategy = OAuth2ClientCredentialsAuth(
        OAuth2ClientCredentialsAuth.Options(token_url=server.token_url, client_id="confidential", client_secret=SecretStr(SECRET)),
        clock=lambda: now[0],
    )
    first = _header(strategy)
    assert server.validate(first) and strategy.stats["grants"] == 1
    assert _header(strategy) == first  # still fresh: no new grant
    now[0] += 59  # a 120 s token is renewed after 60 s
    assert _header(strategy) == first
    now[0] += 2
    second = _header(strategy)
    assert second != first and server.validate(second) and strategy.stats["grants"] == 2
    server.revoke_all_access_tokens()
    assert not server.validate(second)
    assert strategy.refresh() is True
    third = _header(strategy)
    assert third != second and server.validate(third)
    assert server.stats["client_credentials:ok"] == 3 and server.stats["invalid_grant"] == 0


def test_a_wrong_client_secret_is_one_line_without_the_secret(server: LocalAuthorizationServer) -> None:
    strategy = OAuth2ClientCredentialsAuth(
        OAuth2ClientCredentialsAuth.Options(token_url=server.token_url, client_id="confidential", client_secret=SecretStr("wrong-" + SECRET))
    )
    with pytest.raises(AuthenticationError) as caught:
        _header(strategy)
    message = str(caught.value)
    assert "refused the client_credentials grant: invalid_client" in message
    assert SECRET not in message and "\n" not in message
    assert caught.value.status_code == 401


def test_a_401_renews_the_token_and_retries_once(server: LocalAuthorizationServer) -> None:
    from tapyard_sample._data import Dataset
    from tapyard_sample._server import SampleServer

    oauth = LocalAuthorizationServer([OAuthClient("sample-client", SECRET)])
    with SampleServer(Dataset(records_per_stream=5), auth="oauth2", oauth=oauth) as api:
        strategy = OAuth2ClientCredentialsAuth(
            OAuth2ClientCredentialsAuth.Options(token_url="/oauth/token", client_id="sample-client", client_secret=SecretStr(SECRET))
        )
        with HttpEngine(api.url, auth=strategy) as engine:
            body, _ = engine.get_json("/v1/customers")
            assert len(body["data"]) == 5
            oauth.revoke_all_access_tokens()
            body, _ = engine.get_json("/v1/customers")
            assert len(body["data"]) == 5
            assert engine.stats.as_dict()["requests"] == 3
        assert api.unauthorized == 1 and strategy.stats["grants"] == 2


# --- authorization code + PKCE, refresh with rotation ----------------------------------------


def test_authorization_code_with_pkce_then_refresh_with_rotation(server: LocalAuthorizationServer) -> None:
    store = MemoryTokenStore()
    strategy = _code_auth(server, store)
    seen: list[str] = []
    token = strategy.login(open_browser=_browser, announce=seen.append, timeout=10)
    url = urllib.parse.urlsplit(seen[0])
    query = dict(urllib.parse.parse_qsl(url.query))
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["redirect_uri"].startswith("http://127.0.0.1:") and "state" in query
    assert token.refresh_token and store.load()["refresh_token"] == token.refresh_token
    assert server.validate(_header(strategy))

    first_refresh = store.load()["refresh_token"]
    assert strategy.refresh() is True
    rotated = store.load()["refresh_token"]
    assert rotated != first_refresh and server.validate(_header(strategy))

    # The spent refresh token is revoked: a second use is invalid_grant.
    stale = OAuth2RefreshTokenAuth(
        OAuth2RefreshTokenAuth.Options(token_url=server.token_url, client_id="public", refresh_token=SecretStr(first_refresh), name="old-copy")
    )
    with pytest.raises(AuthenticationError, match="invalid_grant; the refresh token was revoked, expired or already used: run `tapyard creds login old-copy`"):
        _header(stale)
    assert server.stats["invalid_grant"] == 1
    # ...while the rotated one still works.
    assert strategy.refresh() is True and server.stats["refresh_token:ok"] == 2


def _authorize(server: LocalAuthorizationServer, challenge: str | None) -> dict[str, str]:
    params = {"response_type": "code", "client_id": "public", "redirect_uri": "http://127.0.0.1:5/callback", "state": "s1"}
    if challenge is not None:
        params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    response = httpx.get(server.authorize_url, params=params)
    assert response.status_code == 302
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(response.headers["location"]).query))


def _exchange(server: LocalAuthorizationServer, code: str, verifier: str | None) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "client_id": "public", "redirect_uri": "http://127.0.0.1:5/callback"}
    if verifier is not None:
        data["code_verifier"] = verifier
    return httpx.post(server.token_url, data=data)


def test_the_server_checks_the_pkce_verifier(server: LocalAuthorizationServer) -> None:
    from authlib.oauth2.rfc7636 import create_s256_code_challenge

    verifier = "v" * 20 + "-._~" + "0123456789" * 3
    challenge = create_s256_code_challenge(verifier)

    wrong = _exchange(server, _authorize(server, challenge)["code"], "w" * 64)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    missing = _exchange(server, _authorize(server, challenge)["code"], None)
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    assert _authorize(server, None)["error"] == "invalid_request"  # PKCE is required
    right = _exchange(server, _authorize(server, challenge)["code"], verifier)
    assert right.status_code == 200 and right.json()["refresh_token"]


def test_login_refuses_a_redirect_with_the_wrong_state(server: LocalAuthorizationServer) -> None:
    store = MemoryTokenStore()
    strategy = _code_auth(server, store)

    def forged(url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        query = dict(urllib.parse.parse_qsl(parts.query)) | {"state": "forged-by-someone-else"}
        _browser(urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query))))

    with pytest.raises(AuthenticationError, match="wrong state: refused"):
        strategy.login(open_browser=forged, timeout=10)
    assert "access_token" not in store.load()
    assert server.stats["authorization_code:ok"] == 0


def test_login_gives_up_when_no_redirect_comes(server: LocalAuthorizationServer) -> None:
    strategy = _code_auth(server)
    with pytest.raises(AuthenticationError, match=r"no redirect reached http://127\.0\.0\.1:\d+/callback within 0\.3s"):
        strategy.login(open_browser=lambda url: None, timeout=0.3)


def test_no_refresh_token_yet_says_to_log_in(server: LocalAuthorizationServer) -> None:
    with pytest.raises(AuthenticationError, match="holds no refresh token yet: run `tapyard creds login acme-user`"):
        _header(_code_auth(server))


# --- the JWT bearer grant -----------------------------------------------------------------


def test_jwt_bearer_grant(server: LocalAuthorizationServer) -> None:
    private, public = rsa_key_pair()
    server.add_client(OAuthClient("svc", None, grant_types=(tapyard.auth._oauth.JWT_BEARER_GRANT,), jwt_issuer="svc@acme.test", public_key_pem=public))
    strategy = JwtBearerAuth(
        JwtBearerAuth.Options(token_url=server.token_url, issuer="svc@acme.test", subject="user@acme.test", private_key=SecretStr(private), scope="read")
    )
    assert server.validate(_header(strategy))
    assert server.stats[f"{tapyard.auth._oauth.JWT_BEARER_GRANT}:ok"] == 1

    other, _ = rsa_key_pair()
    forged = JwtBearerAuth(
        JwtBearerAuth.Options(token_url=server.token_url, issuer="svc@acme.test", private_key=SecretStr(other))
    )
    with pytest.raises(AuthenticationError) as caught:
        _header(forged)
    assert "refused the jwt-bearer grant: invalid_grant" in str(caught.value)
    assert "PRIVATE KEY" not in str(caught.value)


def test_a_key_that_cannot_sign_is_a_config_error() -> None:
    strategy = JwtBearerAuth(
        JwtBearerAuth.Options(token_url="https://login.acme.test/token", issuer="i", private_key=SecretStr("not a key at all"))
    )
    with pytest.raises(tapyard.ConfigError, match="cannot sign a RS256 assertion"):
        _header(strategy)


# --- saved before used --------------------------------------------------------------------


class _FailingStore(MemoryTokenStore):
    def save(self, fields: Mapping[str, str]) -> None:
        from tapyard_credentials import VaultStorageError

        raise VaultStorageError("the disk is full")


def test_a_token_that_cannot_be_saved_is_never_used(server: LocalAuthorizationServer) -> None:
    strategy = OAuth2ClientCredentialsAuth(
        OAuth2ClientCredentialsAuth.Options(token_url=server.token_url, client_id="confidential", client_secret=SecretStr(SECRET)),
        _FailingStore(),
    )
    request = httpx.Request("GET", "http://127.0.0.1:9/v1/x")
    from tapyard_credentials import VaultStorageError

    with pytest.raises(VaultStorageError):
        strategy.apply(request)
    assert "Authorization" not in request.headers
    assert server.stats["client_credentials:ok"] == 1  # obtained, but not used


def test_every_token_is_saved_before_the_api_first_sees_it(tmp_path: Path) -> None:
    """A real sync against the sample server with 1 s tokens: each token the API
    accepts was saved to the store before the API first saw it."""
    from tapyard_sample import SampleOAuthCredentials
    from tapyard_sample._oauth import LocalAuthorizationServer as Server

    events: list[tuple[str, str]] = []
    lock = threading.Lock()

    class Recording(MemoryTokenStore):
        def save(self, fields: Mapping[str, str]) -> None:
            with lock:
                events.append(("save", fields["access_token"]))
            super().save(fields)

    real_validate = Server.validate

    def validate(self: Server, authorization: str | None) -> bool:
        with lock:
            events.append(("use", (authorization or "")[7:]))
        return real_validate(self, authorization)

    credentials = SampleOAuthCredentials(client_secret=SecretStr(SECRET), name="sample-oauth").with_token_store(Recording())
    config = {"records_per_stream": 100, "page_size": 5, "latency_ms": 50, "auth": "oauth2", "server_client_secret": SECRET, "token_ttl_s": 1}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Server, "validate", validate)
        result = tapyard.sync("sample", config, to=f"sqlite:///{tmp_path / 'o.db'}", credentials=credentials)
    assert result.ok, [s.error for s in result.streams]
    saved = [token for what, token in events if what == "save"]
    assert len(saved) >= 2  # renewed during the run
    for token in {token for what, token in events if what == "use"}:
        assert events.index(("save", token)) < events.index(("use", token))


def test_tokens_survive_in_the_store_between_strategies(server: LocalAuthorizationServer) -> None:
    store = MemoryTokenStore()
    options = OAuth2ClientCredentialsAuth.Options(token_url=server.token_url, client_id="confidential", client_secret=SecretStr(SECRET))
    first = OAuth2ClientCredentialsAuth(options, store)
    header = _header(first)
    again = OAuth2ClientCredentialsAuth(options, store)
    assert _header(again) == header and again.stats == {"grants": 0, "adopted": 0}
    assert server.stats["client_credentials:ok"] == 1
    assert float(store.load()["expires_at"]) > time.time() + 3000
