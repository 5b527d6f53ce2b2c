"""The stock auth strategies that need no token exchange: API key, bearer, basic.

Each is built from a credential's fields; secret values are held as
``SecretStr`` and only revealed when a request is signed.
"""

from __future__ import annotations

import base64
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr

from tapyard._model import AuthStrategy

__all__ = ["STOCK_AUTH_STRATEGIES", "ApiKeyAuth", "BasicAuth", "BearerAuth"]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiKeyAuth(AuthStrategy):
    """An API key sent in a header (default ``X-API-Key``) or a query parameter."""

    kind: ClassVar[str] = "api_key"

    class Options(_Options):
        api_key: SecretStr
        location: Literal["header", "query"] = "header"
        name: str = "X-API-Key"
        prefix: str = ""

    def __init__(self, **fields: Any) -> None:
        self.options = self.Options(**fields)

    def apply(self, request: httpx.Request) -> None:
        value = self.options.prefix + self.options.api_key.get_secret_value()
        if self.options.location == "header":
            request.headers[self.options.name] = value
        else:
            request.url = request.url.copy_set_param(self.options.name, value)


class BearerAuth(AuthStrategy):
    """A static bearer token in the ``Authorization`` header."""

    kind: ClassVar[str] = "bearer"

    class Options(_Options):
        token: SecretStr

    def __init__(self, **fields: Any) -> None:
        self.options = self.Options(**fields)

    def apply(self, request: httpx.Request) -> None:
        request.headers["Authorization"] = "Bearer " + self.options.token.get_secret_value()


class BasicAuth(AuthStrategy):
    """HTTP basic authentication (RFC 7617)."""

    kind: ClassVar[str] = "basic"

    class Options(_Options):
        username: str
        password: SecretStr

    def __init__(self, **fields: Any) -> None:
        self.options = self.Options(**fields)

    def apply(self, request: httpx.Request) -> None:
        pair = f"{self.options.username}:{self.options.password.get_secret_value()}"
        request.headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()


STOCK_AUTH_STRATEGIES: dict[str, type[AuthStrategy]] = {
    cls.kind: cls for cls in (ApiKeyAuth, BearerAuth, BasicAuth)
}
