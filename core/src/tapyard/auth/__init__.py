"""Authentication: the stock strategies (API key, basic, bearer), OAuth 2 and JWT
bearer flows with their token stores, cloud auth (AWS, Azure, GCP) and loading a
connector's credentials from the vault or a secret backend (``_secrets``). It may
import ``tapyard.base`` and ``tapyard.http``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tapyard.base import lazy_exports

if TYPE_CHECKING:
    from tapyard.auth._cloud import (
        CLOUD_STRATEGIES,
        AwsAuth,
        AzureAuth,
        GcpAuth,
    )
    from tapyard.auth._oauth import (
        OAUTH_STRATEGIES,
        TOKEN_FIELDS,
        JwtBearerAuth,
        MemoryTokenStore,
        OAuth2AuthorizationCodeAuth,
        OAuth2ClientCredentialsAuth,
        OAuth2RefreshTokenAuth,
    )
    from tapyard.auth._secrets import (
        aws_backend,
        collect_secret_backends,
        load_credentials,
        local_path,
        open_vault,
        url_scheme,
        validate_credential_fields,
        vault_location,
    )
    from tapyard.auth._strategies import (
        STOCK_AUTH_STRATEGIES,
        ApiKeyAuth,
        BasicAuth,
        BearerAuth,
    )

__all__ = [
    "CLOUD_STRATEGIES",
    "OAUTH_STRATEGIES",
    "STOCK_AUTH_STRATEGIES",
    "TOKEN_FIELDS",
    "ApiKeyAuth",
    "AwsAuth",
    "AzureAuth",
    "BasicAuth",
    "BearerAuth",
    "GcpAuth",
    "JwtBearerAuth",
    "MemoryTokenStore",
    "OAuth2AuthorizationCodeAuth",
    "OAuth2ClientCredentialsAuth",
    "OAuth2RefreshTokenAuth",
    "aws_backend",
    "collect_secret_backends",
    "load_credentials",
    "local_path",
    "open_vault",
    "url_scheme",
    "validate_credential_fields",
    "vault_location",
]

# Imported on first use, so that importing one module of this layer does not
# load the rest of it (tapyard and its CLI start without httpx or SQLAlchemy).
__getattr__ = lazy_exports(
    __name__,
    {
        "_cloud": ("AwsAuth", "AzureAuth", "CLOUD_STRATEGIES", "GcpAuth"),
        "_oauth": ("JwtBearerAuth", "MemoryTokenStore", "OAUTH_STRATEGIES", "OAuth2AuthorizationCodeAuth", "OAuth2ClientCredentialsAuth", "OAuth2RefreshTokenAuth", "TOKEN_FIELDS"),
        "_secrets": ("aws_backend", "collect_secret_backends", "load_credentials", "local_path", "open_vault", "url_scheme", "validate_credential_fields", "vault_location"),
        "_strategies": ("ApiKeyAuth", "BasicAuth", "BearerAuth", "STOCK_AUTH_STRATEGIES"),
    },
)
