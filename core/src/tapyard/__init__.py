"""tapyard: a framework for vendor connectors.

The public API is what this module exports; everything in ``tapyard._*``
modules is private and may change without notice.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from tapyard._auth import ApiKeyAuth, BasicAuth, BearerAuth
    from tapyard._cloud_auth import AwsAuth, AzureAuth, GcpAuth
    from tapyard._declarative import RestConnector, RestStream, SinglePage
    from tapyard._destinations import Batch, Destination, open_destination
    from tapyard._exceptions import (
        AuthenticationError,
        CircuitOpenError,
        ConfigError,
        ConnectorNotFoundError,
        DeadlineExceededError,
        DestinationError,
        HTTPError,
        HTTPStatusError,
        PermissionDeniedError,
        PluginError,
        ResponseError,
        ResumeRejectedError,
        RetryAfterTooLongError,
        SchemaError,
        StateError,
        StreamNotFoundError,
        TapyardError,
        TransportError,
    )
    from tapyard._http import HttpEngine, HttpPolicy
    from tapyard._manifest import PLUGIN_API_VERSION
    from tapyard._model import (
        AuthStrategy,
        Connector,
        Credentials,
        NoConfig,
        Page,
        PageRequest,
        Paginator,
        RunContext,
        Source,
        Stream,
        StreamState,
    )
    from tapyard._oauth import (
        JwtBearerAuth,
        MemoryTokenStore,
        OAuth2AuthorizationCodeAuth,
        OAuth2ClientCredentialsAuth,
        OAuth2RefreshTokenAuth,
        TokenStore,
    )
    from tapyard._paginators import (
        CursorPaginator,
        LinkHeaderPaginator,
        NextUrlPaginator,
        OffsetPaginator,
        PageNumberPaginator,
        PageTokenPaginator,
    )
    from tapyard._plugins import (
        collect_auth_strategies,
        collect_connectors,
        collect_destinations,
        collect_paginators,
        get_connector,
        get_plugin_manager,
        register_plugin,
        stream_paginator,
        unregister_plugin,
    )
    from tapyard._ratelimit import RateLimiter, RateLimitSettings
    from tapyard._schema import columns_of, model_from_json_schema
    from tapyard._secrets import collect_secret_backends, load_credentials, open_vault
    from tapyard._sync import StreamResult, SyncResult, sync
    from tapyard._values import Timestamp, parse_timestamp

__version__ = "0.1.0"

#: Mark a function as an implementation of a tapyard hook.
hookimpl = pluggy.HookimplMarker("tapyard")

# Exports are imported on first use (PEP 562), so that importing tapyard, or
# starting the CLI, does not pay for the HTTP engine or the sync engine.
_LAZY: dict[str, str] = {
    "ApiKeyAuth": "tapyard._auth",
    "AuthStrategy": "tapyard._model",
    "AuthenticationError": "tapyard._exceptions",
    "AwsAuth": "tapyard._cloud_auth",
    "AzureAuth": "tapyard._cloud_auth",
    "BasicAuth": "tapyard._auth",
    "Batch": "tapyard._destinations",
    "BearerAuth": "tapyard._auth",
    "CircuitOpenError": "tapyard._exceptions",
    "ConfigError": "tapyard._exceptions",
    "Connector": "tapyard._model",
    "ConnectorNotFoundError": "tapyard._exceptions",
    "Credentials": "tapyard._model",
    "CursorPaginator": "tapyard._paginators",
    "DeadlineExceededError": "tapyard._exceptions",
    "Destination": "tapyard._destinations",
    "DestinationError": "tapyard._exceptions",
    "GcpAuth": "tapyard._cloud_auth",
    "HTTPError": "tapyard._exceptions",
    "HTTPStatusError": "tapyard._exceptions",
    "HttpEngine": "tapyard._http",
    "HttpPolicy": "tapyard._http",
    "JwtBearerAuth": "tapyard._oauth",
    "LinkHeaderPaginator": "tapyard._paginators",
    "MemoryTokenStore": "tapyard._oauth",
    "NextUrlPaginator": "tapyard._paginators",
    "NoConfig": "tapyard._model",
    "OAuth2AuthorizationCodeAuth": "tapyard._oauth",
    "OAuth2ClientCredentialsAuth": "tapyard._oauth",
    "OAuth2RefreshTokenAuth": "tapyard._oauth",
    "OffsetPaginator": "tapyard._paginators",
    "PLUGIN_API_VERSION": "tapyard._manifest",
    "Page": "tapyard._model",
    "PageNumberPaginator": "tapyard._paginators",
    "PageRequest": "tapyard._model",
    "PageTokenPaginator": "tapyard._paginators",
    "Paginator": "tapyard._model",
    "PermissionDeniedError": "tapyard._exceptions",
    "PluginError": "tapyard._exceptions",
    "RateLimitSettings": "tapyard._ratelimit",
    "RateLimiter": "tapyard._ratelimit",
    "ResponseError": "tapyard._exceptions",
    "RestConnector": "tapyard._declarative",
    "RestStream": "tapyard._declarative",
    "RetryAfterTooLongError": "tapyard._exceptions",
    "RunContext": "tapyard._model",
    "SchemaError": "tapyard._exceptions",
    "SinglePage": "tapyard._declarative",
    "Source": "tapyard._model",
    "StateError": "tapyard._exceptions",
    "ResumeRejectedError": "tapyard._exceptions",
    "Stream": "tapyard._model",
    "StreamNotFoundError": "tapyard._exceptions",
    "StreamResult": "tapyard._sync",
    "StreamState": "tapyard._model",
    "SyncResult": "tapyard._sync",
    "TapyardError": "tapyard._exceptions",
    "TokenStore": "tapyard._oauth",
    "Timestamp": "tapyard._values",
    "TransportError": "tapyard._exceptions",
    "collect_auth_strategies": "tapyard._plugins",
    "collect_connectors": "tapyard._plugins",
    "collect_destinations": "tapyard._plugins",
    "collect_paginators": "tapyard._plugins",
    "collect_secret_backends": "tapyard._secrets",
    "columns_of": "tapyard._schema",
    "get_connector": "tapyard._plugins",
    "get_plugin_manager": "tapyard._plugins",
    "load_credentials": "tapyard._secrets",
    "model_from_json_schema": "tapyard._schema",
    "open_destination": "tapyard._destinations",
    "open_vault": "tapyard._secrets",
    "parse_timestamp": "tapyard._values",
    "register_plugin": "tapyard._plugins",
    "stream_paginator": "tapyard._plugins",
    "sync": "tapyard._sync",
    "unregister_plugin": "tapyard._plugins",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tapyard' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

__all__ = [
    "PLUGIN_API_VERSION",
    "ApiKeyAuth",
    "AuthStrategy",
    "AuthenticationError",
    "AwsAuth",
    "AzureAuth",
    "BasicAuth",
    "Batch",
    "BearerAuth",
    "CircuitOpenError",
    "ConfigError",
    "Connector",
    "ConnectorNotFoundError",
    "Credentials",
    "CursorPaginator",
    "DeadlineExceededError",
    "Destination",
    "DestinationError",
    "GcpAuth",
    "HTTPError",
    "HTTPStatusError",
    "HttpEngine",
    "HttpPolicy",
    "JwtBearerAuth",
    "LinkHeaderPaginator",
    "MemoryTokenStore",
    "NextUrlPaginator",
    "NoConfig",
    "OAuth2AuthorizationCodeAuth",
    "OAuth2ClientCredentialsAuth",
    "OAuth2RefreshTokenAuth",
    "OffsetPaginator",
    "Page",
    "PageNumberPaginator",
    "PageRequest",
    "PageTokenPaginator",
    "Paginator",
    "PermissionDeniedError",
    "PluginError",
    "RateLimitSettings",
    "RateLimiter",
    "ResponseError",
    "RestConnector",
    "RestStream",
    "ResumeRejectedError",
    "RetryAfterTooLongError",
    "RunContext",
    "SchemaError",
    "SinglePage",
    "Source",
    "StateError",
    "Stream",
    "StreamNotFoundError",
    "StreamResult",
    "StreamState",
    "SyncResult",
    "TapyardError",
    "Timestamp",
    "TokenStore",
    "TransportError",
    "__version__",
    "collect_auth_strategies",
    "collect_connectors",
    "collect_destinations",
    "collect_paginators",
    "collect_secret_backends",
    "columns_of",
    "get_connector",
    "get_plugin_manager",
    "hookimpl",
    "load_credentials",
    "model_from_json_schema",
    "open_destination",
    "open_vault",
    "parse_timestamp",
    "register_plugin",
    "stream_paginator",
    "sync",
    "unregister_plugin",
]
