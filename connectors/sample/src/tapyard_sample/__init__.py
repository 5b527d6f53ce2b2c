"""The tapyard ``sample`` connector: a deterministic data set served over a real
local HTTP server, so the whole stack (HTTP engine, pagination, rate limits,
incremental sync, updates and deletes) runs with no credentials and no network.

It is a declarative :class:`tapyard.RestConnector`: three streams, each with a
different paginator (Stripe-style cursor, offset, RFC 8288 ``Link`` header).
The server starts on 127.0.0.1 when a run opens and stops when it closes.

It is also the test bed of the credential vault and the auth hooks: with
``auth: "api_key"`` the server requires an API key (credential kind
``api_key``, field ``api_key``), with ``auth: "oauth2"`` bearer tokens from its
own OAuth 2.0 authorization server (credential kind
``oauth2_client_credentials``; the token URL defaults to the server's
``/oauth/token``). The server's side of those secrets (``server_api_key``,
``server_client_secret``) is configuration: it plays the vendor.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from tapyard import OAuth2ClientCredentialsAuth, RestConnector, RestStream, hookimpl

if TYPE_CHECKING:
    from tapyard_sample._oauth import LocalAuthorizationServer, OAuthClient

__all__ = [
    "MAX_RECORDS_PER_STREAM",
    "LocalAuthorizationServer",
    "OAuthClient",
    "SampleConfig",
    "SampleOAuthCredentials",
    "connector",
    "source_records",
]


#: The largest ``records_per_stream``: a sync of three such streams takes a few
#: minutes, with its progress shown from the first page.
MAX_RECORDS_PER_STREAM = 1_000_000


class SampleConfig(BaseModel):
    """Configuration of the sample connector."""

    model_config = ConfigDict(extra="forbid")

    # Numbers are strict: JSON's `true` or a quoted "100" is refused rather
    # than read as 1 or 100, which would surprise (issue 19).
    records_per_stream: int = Field(
        1000,
        ge=0,
        le=MAX_RECORDS_PER_STREAM,
        strict=True,
        description="Entities in each stream (at most 1,000,000).",
    )
    page_size: int = Field(
        100, ge=1, le=1000, strict=True, description="Records per page requested."
    )
    seed: int = Field(
        0, ge=-(2**63), le=2**63 - 1, strict=True, description="Seed of the deterministic data set."
    )
    latency_ms: float = Field(
        0,
        ge=0,
        le=60_000,
        strict=True,
        allow_inf_nan=False,
        description="Simulated API latency per response.",
    )
    rate_limit_per_s: float = Field(
        0,
        ge=0,
        le=1_000_000,
        strict=True,
        allow_inf_nan=False,
        description="Server-side rate limit in requests per second (0: none).",
    )
    as_of: dt.datetime | None = Field(
        None,
        description="Only what was created or changed up to this time is visible (default: everything).",
    )
    auth: Literal["none", "api_key", "oauth2"] = Field(
        "none",
        description="What the server requires: nothing, an API key (X-API-Key header or api_key "
        "query parameter), or OAuth 2.0 bearer tokens from its own /oauth/token.",
    )
    server_api_key: SecretStr | None = Field(
        None, description="The API key the server accepts (auth: api_key)."
    )
    server_client_id: str = Field(
        "sample-client",
        description="The OAuth client its authorization server knows (auth: oauth2).",
    )
    server_client_secret: SecretStr | None = Field(
        None, description="That client's secret (auth: oauth2)."
    )
    token_ttl_s: float = Field(
        3600,
        gt=0,
        le=86400,
        strict=True,
        allow_inf_nan=False,
        description="Lifetime of the access tokens it issues (auth: oauth2).",
    )

    @model_validator(mode="after")
    def _server_secrets(self) -> SampleConfig:
        if self.auth == "api_key" and self.server_api_key is None:
            raise ValueError("auth 'api_key' needs server_api_key, the key the server accepts")
        if self.auth == "oauth2" and self.server_client_secret is None:
            raise ValueError(
                "auth 'oauth2' needs server_client_secret, the client secret it accepts"
            )
        return self


class SampleOAuthCredentials(OAuth2ClientCredentialsAuth.Options):
    """OAuth 2.0 client credentials for the sample server: its token endpoint and
    client id are the defaults."""

    token_url: str = Field(
        "/oauth/token", description="The token endpoint (default: the server's)."
    )
    client_id: str = Field("sample-client", description="The OAuth client id.")


class Address(BaseModel):
    line1: str
    city: str
    country: str
    postal_code: str


class Customer(BaseModel):
    # Personal data is marked by kind (json_schema_extra "personal"): `tapyard
    # discover` shows the marks, and a policy (--policy) hashes, masks or drops it.
    model_config = ConfigDict(extra="ignore")

    id: str
    email: str = Field(json_schema_extra={"personal": "email"})
    name: str = Field(json_schema_extra={"personal": "name"})
    tier: Literal["free", "pro", "enterprise"]
    balance: int
    address: Address = Field(json_schema_extra={"personal": "address"})
    tags: list[str]
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted: bool = False


class OrderItem(BaseModel):
    sku: str
    quantity: int
    unit_amount: int


class Order(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    customer_id: str
    amount: int
    currency: str
    status: str
    items: list[OrderItem]
    phone: str | None = Field(
        None, description="The delivery contact's phone.", json_schema_extra={"personal": "phone"}
    )
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted: bool = False


class Event(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    type: str
    object_id: str
    created_at: dt.datetime
    data: dict[str, Any]


@contextlib.contextmanager
def _serve(config: BaseModel) -> Iterator[Mapping[str, Any]]:
    from tapyard_sample._data import Dataset
    from tapyard_sample._oauth import LocalAuthorizationServer, OAuthClient
    from tapyard_sample._server import SampleServer

    assert isinstance(config, SampleConfig)
    dataset = Dataset(records_per_stream=config.records_per_stream, seed=config.seed)
    oauth = None
    if config.auth == "oauth2":
        assert config.server_client_secret is not None
        oauth = LocalAuthorizationServer(
            [
                OAuthClient(
                    config.server_client_id,
                    config.server_client_secret.get_secret_value(),
                    grant_types=("client_credentials",),
                )
            ],
            access_token_ttl=config.token_ttl_s,
        )
    server = SampleServer(
        dataset,
        as_of=config.as_of,
        latency_ms=config.latency_ms,
        rate_limit_per_s=config.rate_limit_per_s,
        auth=config.auth,
        api_key=config.server_api_key.get_secret_value() if config.server_api_key else None,
        oauth=oauth,
    )
    with server:
        yield {"base_url": server.url}


def source_records(config: SampleConfig, stream: str) -> list[dict[str, Any]]:
    """What the server holds for ``stream`` under ``config``: for tests that compare."""
    from tapyard_sample._data import Dataset

    return Dataset(records_per_stream=config.records_per_stream, seed=config.seed).visible(
        stream, config.as_of
    )


connector = RestConnector(
    name="sample",
    description="Offline sample data (customers, orders, events) from a local HTTP server.",
    config_model=SampleConfig,
    auth_kinds=["none", "api_key", "oauth2_client_credentials"],
    lifespan=_serve,
    check_path="/v1/health",
    streams=[
        RestStream(
            name="customers",
            description="Customers; updated and soft-deleted over time.",
            path="/v1/customers",
            schema_model=Customer,
            primary_key=("id",),
            cursor_field="updated_at",
            cursor_param="updated_after",
            is_sorted=True,
            deletes="vendor",
            paginator={
                "kind": "cursor",
                "cursor_param": "starting_after",
                "page_size": "{config.page_size}",
            },
        ),
        RestStream(
            name="orders",
            description="Orders; their status changes over time.",
            path="/v1/orders",
            schema_model=Order,
            primary_key=("id",),
            cursor_field="updated_at",
            cursor_param="updated_after",
            is_sorted=True,
            deletes="vendor",
            paginator={"kind": "offset", "page_size": "{config.page_size}", "total_path": "total"},
        ),
        RestStream(
            name="events",
            description="Append-only events.",
            path="/v1/events",
            schema_model=Event,
            primary_key=("id",),
            cursor_field="created_at",
            cursor_param="created_after",
            params={"limit": "{config.page_size}"},
            # the link's page_token is the last cursor served (events are append-only)
            paginator={"kind": "link_header", "survives_changes": True},
        ),
    ],
)


connector.credential_models = {"oauth2_client_credentials": SampleOAuthCredentials}


@hookimpl
def tapyard_register_connectors(register: Any) -> None:
    register(connector)


def __getattr__(name: str) -> Any:
    # The authorization server (authlib) is imported when used, not when
    # `tapyard connectors list` loads this plugin.
    if name in ("LocalAuthorizationServer", "OAuthClient"):
        from tapyard_sample import _oauth

        return getattr(_oauth, name)
    raise AttributeError(f"module 'tapyard_sample' has no attribute {name!r}")
