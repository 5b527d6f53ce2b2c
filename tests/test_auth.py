"""The stock auth strategies, typed credential models, and how a connector picks
the model a credential must fit."""

from __future__ import annotations

import base64
from typing import Any, Literal

import httpx
import pytest
from pydantic import SecretStr

import tapyard
from tapyard import ApiKeyAuth, BasicAuth, BearerAuth, ConfigError, Credentials
from tapyard.base._model import PageRequest
from tapyard.sources._declarative import _without_params

KEY = "k3y-0123456789abcdef"


def _signed(strategy: tapyard.AuthStrategy, url: str = "https://api.acme.test/v1/x?page=2") -> httpx.Request:
    request = httpx.Request("GET", url)
    strategy.apply(request)
    return request


def test_api_key_in_a_header_and_in_the_query() -> None:
    header = ApiKeyAuth.from_credentials(ApiKeyAuth.Options(api_key=SecretStr(KEY)))
    assert _signed(header).headers["X-API-Key"] == KEY
    assert header.query_params() == frozenset()

    query = ApiKeyAuth(api_key=KEY, location="query", key_name="api_key", prefix="")
    request = _signed(query)
    assert request.url.params["api_key"] == KEY and request.url.params["page"] == "2"
    assert query.query_params() == {"api_key"}

    prefixed = ApiKeyAuth(api_key=KEY, key_name="Authorization", prefix="Token ")
    assert _signed(prefixed).headers["Authorization"] == f"Token {KEY}"


def test_bearer_and_basic() -> None:
    assert _signed(BearerAuth(token=KEY)).headers["Authorization"] == f"Bearer {KEY}"
    basic = BasicAuth.from_credentials(BasicAuth.Options(username="me", password=SecretStr(KEY)))
    expected = "Basic " + base64.b64encode(f"me:{KEY}".encode()).decode()
    assert _signed(basic).headers["Authorization"] == expected


def test_credential_models_hold_secrets_as_secretstr_and_never_show_them() -> None:
    options = ApiKeyAuth.Options(api_key=SecretStr(KEY), name="acme-prod")
    assert KEY not in repr(options) and KEY not in str(options) and KEY not in options.model_dump_json()
    assert options.fields() == {
        "api_key": KEY,
        "location": "header",
        "key_name": "X-API-Key",
        "prefix": "",
    }
    assert options.secret_values() == [KEY]
    assert options.token_store is None
    store = tapyard.MemoryTokenStore()
    bound = options.with_token_store(store)
    assert bound.token_store is store and options.token_store is None


def test_bad_fields_are_one_line_without_values() -> None:
    with pytest.raises(ConfigError) as caught:
        ApiKeyAuth(api_key=KEY, location="cookie")
    message = str(caught.value)
    assert "location" in message and KEY not in message and "\n" not in message


def test_the_builtin_hook_builds_the_strategy_of_the_credential_kind() -> None:
    from tapyard.plugins._manager import get_connector, get_plugin_manager

    pm = get_plugin_manager()
    connector = get_connector("sample")
    config = connector.parse_config({})
    assert pm.hook.tapyard_auth_strategy(connector=connector, config=config, credentials=None) is None
    strategy = pm.hook.tapyard_auth_strategy(
        connector=connector, config=config, credentials=BearerAuth.Options(token=SecretStr(KEY))
    )
    assert isinstance(strategy, BearerAuth)

    class Odd(Credentials):
        kind: Literal["carrier-pigeon"] = "carrier-pigeon"

    with pytest.raises(ConfigError, match="'carrier-pigeon' is not a known auth strategy"):
        pm.hook.tapyard_auth_strategy(connector=connector, config=config, credentials=Odd())


def test_every_stock_kind_is_registered_with_a_credential_model() -> None:
    strategies = tapyard.collect_auth_strategies()
    for kind in (
        "api_key",
        "bearer",
        "basic",
        "oauth2_client_credentials",
        "oauth2_refresh_token",
        "oauth2_authorization_code",
        "jwt_bearer",
        "aws",
        "azure",
        "gcp",
    ):
        model = strategies[kind].credentials_model()
        assert model is not None and issubclass(model, Credentials), kind
        assert model.model_fields["kind"].default == kind


def test_a_connector_picks_its_own_model_or_the_strategys() -> None:
    from tapyard_sample import SampleOAuthCredentials

    connector = tapyard.get_connector("sample")
    assert connector.credential_model("api_key") is ApiKeyAuth.Options
    assert connector.credential_model("oauth2_client_credentials") is SampleOAuthCredentials
    with pytest.raises(ConfigError, match=r"does not take 'basic' credentials \(it takes api_key, oauth2_client_credentials\)"):
        connector.credential_model("basic")


def test_a_plugin_strategy_and_model(register_plugin: Any) -> None:
    class HmacAuth(tapyard.AuthStrategy):
        kind = "hmac"

        class Options(Credentials):
            kind: Literal["hmac"] = "hmac"
            secret: SecretStr

        def __init__(self, secret: SecretStr) -> None:
            self.secret = secret

        def apply(self, request: httpx.Request) -> None:
            request.headers["X-Signature"] = "sig-of-" + self.secret.get_secret_value()[:2]

    class Plugin:
        @tapyard.hookimpl
        def tapyard_register_auth_strategies(self, register: Any) -> None:
            register("hmac", HmacAuth)

    register_plugin(Plugin(), "hmac-plugin")
    cls = tapyard.collect_auth_strategies()["hmac"]
    strategy = cls.from_credentials(HmacAuth.Options(secret=SecretStr("zz-secret")))
    assert _signed(strategy).headers["X-Signature"] == "sig-of-zz"


def test_secret_query_parameters_are_dropped_from_resume_points() -> None:
    names = frozenset({"api_key"})
    saved = _without_params(
        PageRequest(url=f"https://api.acme.test/v1/events?page_token=abc&api_key={KEY}", params={"limit": 5}),
        names,
    )
    assert saved.url == "https://api.acme.test/v1/events?page_token=abc" and saved.params == {"limit": 5}
    saved = _without_params(PageRequest(url="/v1/x", params={"api_key": KEY, "limit": 5}), names)
    assert saved.params == {"limit": 5}
    untouched = PageRequest(url="/v1/x?a=1", params={"b": 2})
    assert _without_params(untouched, names) is untouched
