"""A REST connector (the core's declarative path) whose authorization server
rotates refresh tokens, run ten times in a row through the CLI with the
credential in the vault: every run succeeds, and each access token the API sees
was saved to the vault, with the refresh token that came with it, before the
API first saw it. (The SDK path: connectors/salesforce/tests/test_fidelity.py.)"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import tapyard
from tapyard import (
    MemoryTokenStore,
    OAuth2AuthorizationCodeAuth,
    RestConnector,
    RestStream,
    hookimpl,
)
from tapyard_sample import LocalAuthorizationServer, OAuthClient
from tapyard_sample._data import Dataset
from tapyard_sample._server import SampleServer
from tests.creds_helpers import run, vault_environment

LOOPBACK = ("http://127.0.0.1/callback",)


@pytest.fixture
def vault_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    yield from vault_environment(monkeypatch, tmp_path)


def _browser(url: str) -> None:
    threading.Thread(target=lambda: httpx.get(url, follow_redirects=True, timeout=10), daemon=True).start()


def _stored(name: str) -> dict[str, str]:
    vault = tapyard.open_vault()
    return {k: v.get_secret_value() for k, v in vault.get(name, connector="rotating").fields.items()}


def test_ten_runs_of_a_rest_connector_with_refresh_token_rotation(
    vault_key: str, tmp_path: Path, register_plugin: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    authz = LocalAuthorizationServer(
        [OAuthClient("rotating", None, redirect_uris=LOOPBACK, grant_types=("authorization_code", "refresh_token"))],
        access_token_ttl=1,  # every run renews: its stored access token is past its refresh point
    )
    seen: list[tuple[str, bool]] = []
    real_validate = authz.validate

    def validate(authorization: str | None) -> bool:
        token = (authorization or "")[7:]
        seen.append((token, _stored("rot")["access_token"] == token))  # in the vault already?
        return real_validate(authorization)

    authz.validate = validate  # type: ignore[method-assign]
    with SampleServer(Dataset(30), auth="oauth2", oauth=authz) as api:
        options = OAuth2AuthorizationCodeAuth.Options(
            authorize_url=f"{api.url}/oauth/authorize", token_url=f"{api.url}/oauth/token", client_id="rotating"
        )
        login = MemoryTokenStore()
        OAuth2AuthorizationCodeAuth(options, login).login(open_browser=_browser, timeout=10)
        customers = next(s for s in tapyard.get_connector("sample").streams(
            tapyard.get_connector("sample").parse_config({})) if s.name == "customers")
        assert isinstance(customers, RestStream)
        connector = RestConnector(
            name="rotating", base_url=api.url, auth_kinds=["oauth2_refresh_token"],
            streams=[customers.model_copy(update={"paginator": None})],
        )

        class Plugin:
            @hookimpl
            def tapyard_register_connectors(self, register: Any) -> None:
                register(connector)

        register_plugin(Plugin(), "rotating-plugin")
        fields = tmp_path / "fields.json"
        fields.write_text(json.dumps({"token_url": options.token_url, "client_id": "rotating",
                                      "refresh_token": login.load()["refresh_token"]}))
        code, _, err = run(capsys, "creds", "add", "rot", "--connector", "rotating", "--kind", "oauth2_refresh_token",
                           "--from-json", str(fields))
        assert code == 0, err
        refresh_tokens = [_stored("rot")["refresh_token"]]
        for n in range(10):
            time.sleep(0.6)  # past the stored token's refresh point (half of its 1 s)
            code, _, err = run(capsys, "sync", "rotating", "--creds", "rot", "--to", f"sqlite:///{tmp_path}/r.db")
            assert code == 0, (n, err)
            refresh_tokens.append(_stored("rot")["refresh_token"])
    assert len(set(refresh_tokens)) == 11  # rotated every run, and each new one kept
    assert authz.stats["refresh_token:ok"] >= 10 and authz.stats["invalid_grant"] == 0
    assert seen and all(saved for _, saved in seen)  # saved before the API saw it
