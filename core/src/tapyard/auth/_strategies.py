"""The stock auth strategies that need no token exchange: API key, bearer, basic.

Each is built from a credential's fields; secret values are held as
``SecretStr`` and only revealed when a request is signed. Each strategy's
nested ``Options`` class is its credential model: the fields ``tapyard creds
add`` asks for and validates.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, Field, SecretStr

from tapyard.base import AuthStrategy, Credentials

if TYPE_CHECKING:
    import httpx

__all__ = ["STOCK_AUTH_STRATEGIES", "ApiKeyAuth", "BasicAuth", "BearerAuth", "options_from"]

M = TypeVar("M", bound=BaseModel)


def options_from(model: type[M], credentials: BaseModel | dict[str, Any], *, what: str) -> M:
    """``credentials`` validated as ``model``, keeping only the fields ``model`` knows
    (a connector's credential model may carry more). One-line :class:`ConfigError`
    naming fields, never values, when they do not fit."""
    from tapyard.base import validate_model

    items = credentials.items() if isinstance(credentials, dict) else iter(credentials)
    data = {key: value for key, value in items if key in model.model_fields}
    return validate_model(model, data, what=what)


class _Static(AuthStrategy):
    """A strategy whose credential is applied as is."""

    Options: ClassVar[type[Credentials]]

    def __init__(self, options: Credentials | None = None, **fields: Any) -> None:
        if options is None:
            options = options_from(
                self.Options, {"kind": self.kind, **fields}, what=f"{self.kind} credentials"
            )
        self.options = options

    @classmethod
    def from_credentials(cls, credentials: BaseModel) -> AuthStrategy:
        return cls(options_from(cls.Options, credentials, what=f"{cls.kind} credentials"))


class ApiKeyAuth(_Static):
    """An API key sent in a header (default ``X-API-Key``) or a query parameter."""

    kind: ClassVar[str] = "api_key"

    class Options(Credentials):
        kind: Literal["api_key"] = "api_key"
        api_key: SecretStr = Field(description="The API key.")
        location: Literal["header", "query"] = Field(
            "header", description="Where the key goes: a header or a query parameter."
        )
        key_name: str = Field(
            "X-API-Key", description="The header (or query parameter) that carries the key."
        )
        prefix: str = Field("", description="Text before the key, such as 'Token '.")

    options: Options

    def apply(self, request: httpx.Request) -> None:
        value = self.options.prefix + self.options.api_key.get_secret_value()
        if self.options.location == "header":
            request.headers[self.options.key_name] = value
        else:
            request.url = request.url.copy_set_param(self.options.key_name, value)

    def query_params(self) -> frozenset[str]:
        return frozenset({self.options.key_name}) if self.options.location == "query" else frozenset()


class BearerAuth(_Static):
    """A static bearer token in the ``Authorization`` header."""

    kind: ClassVar[str] = "bearer"

    class Options(Credentials):
        kind: Literal["bearer"] = "bearer"
        token: SecretStr = Field(description="The bearer token.")

    options: Options

    def apply(self, request: httpx.Request) -> None:
        request.headers["Authorization"] = "Bearer " + self.options.token.get_secret_value()


class BasicAuth(_Static):
    """HTTP basic authentication (RFC 7617)."""

    kind: ClassVar[str] = "basic"

    class Options(Credentials):
        kind: Literal["basic"] = "basic"
        username: str = Field(description="The user name.")
        password: SecretStr = Field(description="The password.")

    options: Options

    def apply(self, request: httpx.Request) -> None:
        pair = f"{self.options.username}:{self.options.password.get_secret_value()}"
        request.headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()


STOCK_AUTH_STRATEGIES: dict[str, type[AuthStrategy]] = {
    cls.kind: cls for cls in (ApiKeyAuth, BearerAuth, BasicAuth)
}
