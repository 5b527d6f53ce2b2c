"""tapyard: a framework for vendor connectors.

The public API is what this module exports; everything in ``tapyard._*``
modules is private and may change without notice.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from tapyard.auth import (
        ApiKeyAuth,
        AwsAuth,
        AzureAuth,
        BasicAuth,
        BearerAuth,
        GcpAuth,
        JwtBearerAuth,
        MemoryTokenStore,
        OAuth2AuthorizationCodeAuth,
        OAuth2ClientCredentialsAuth,
        OAuth2RefreshTokenAuth,
        load_credentials,
        open_vault,
    )
    from tapyard.base import (
        PLUGIN_API_VERSION,
        AuthenticationError,
        AuthStrategy,
        CircuitOpenError,
        ConfigError,
        Connector,
        ConnectorNotFoundError,
        Credentials,
        DeadlineExceededError,
        DestinationError,
        HTTPError,
        HTTPStatusError,
        NoConfig,
        Page,
        PageRequest,
        Paginator,
        PermissionDeniedError,
        PluginError,
        ResponseError,
        ResumeRejectedError,
        RetryAfterTooLongError,
        RunContext,
        SchemaError,
        Source,
        StateError,
        Stream,
        StreamNotFoundError,
        StreamState,
        TapyardError,
        Timestamp,
        TokenStore,
        TransportError,
        columns_of,
        model_from_json_schema,
        parse_timestamp,
    )
    from tapyard.destinations import Batch, Destination, open_destination
    from tapyard.engine import StreamResult, SyncResult, sync
    from tapyard.http import HttpEngine, HttpPolicy, RateLimiter, RateLimitSettings
    from tapyard.plugins import (
        Plugins,
        collect_auth_strategies,
        collect_connectors,
        collect_destinations,
        collect_paginators,
        collect_secret_backends,
        get_connector,
        get_plugin_manager,
        register_plugin,
        stream_paginator,
        unregister_plugin,
    )
    from tapyard.sources import (
        CursorPaginator,
        LinkHeaderPaginator,
        NextUrlPaginator,
        OffsetPaginator,
        PageNumberPaginator,
        PageTokenPaginator,
        RestConnector,
        RestStream,
        SinglePage,
    )

from tapyard.base import CORE_VERSION

__version__ = CORE_VERSION

#: Mark a function as an implementation of a tapyard hook.
hookimpl = pluggy.HookimplMarker("tapyard")


def _default_plugins() -> Any:
    from tapyard.plugins import default_plugins

    return default_plugins()


# The composition root: the layers below the plugins reach the process default
# plugin set (when a caller hands them none) through this factory, never by
# importing tapyard.plugins themselves.
from tapyard.base import install_default_plugin_set  # noqa: E402

install_default_plugin_set(_default_plugins)

# Exports are imported on first use (PEP 562), so that importing tapyard, or
# starting the CLI, does not pay for the HTTP engine or the sync engine.
_LAZY: dict[str, str] = {
    "ApiKeyAuth": "tapyard.auth",
    "AuthStrategy": "tapyard.base",
    "AuthenticationError": "tapyard.base",
    "AwsAuth": "tapyard.auth",
    "AzureAuth": "tapyard.auth",
    "BasicAuth": "tapyard.auth",
    "Batch": "tapyard.destinations",
    "BearerAuth": "tapyard.auth",
    "CircuitOpenError": "tapyard.base",
    "ConfigError": "tapyard.base",
    "Connector": "tapyard.base",
    "ConnectorNotFoundError": "tapyard.base",
    "Credentials": "tapyard.base",
    "CursorPaginator": "tapyard.sources",
    "DeadlineExceededError": "tapyard.base",
    "Destination": "tapyard.destinations",
    "DestinationError": "tapyard.base",
    "GcpAuth": "tapyard.auth",
    "HTTPError": "tapyard.base",
    "HTTPStatusError": "tapyard.base",
    "HttpEngine": "tapyard.http",
    "HttpPolicy": "tapyard.http",
    "JwtBearerAuth": "tapyard.auth",
    "LinkHeaderPaginator": "tapyard.sources",
    "MemoryTokenStore": "tapyard.auth",
    "NextUrlPaginator": "tapyard.sources",
    "NoConfig": "tapyard.base",
    "OAuth2AuthorizationCodeAuth": "tapyard.auth",
    "OAuth2ClientCredentialsAuth": "tapyard.auth",
    "OAuth2RefreshTokenAuth": "tapyard.auth",
    "OffsetPaginator": "tapyard.sources",
    "PLUGIN_API_VERSION": "tapyard.base",
    "Page": "tapyard.base",
    "PageNumberPaginator": "tapyard.sources",
    "PageRequest": "tapyard.base",
    "PageTokenPaginator": "tapyard.sources",
    "Paginator": "tapyard.base",
    "PermissionDeniedError": "tapyard.base",
    "PluginError": "tapyard.base",
    "Plugins": "tapyard.plugins",
    "RateLimitSettings": "tapyard.http",
    "RateLimiter": "tapyard.http",
    "ResponseError": "tapyard.base",
    "RestConnector": "tapyard.sources",
    "RestStream": "tapyard.sources",
    "RetryAfterTooLongError": "tapyard.base",
    "RunContext": "tapyard.base",
    "SchemaError": "tapyard.base",
    "SinglePage": "tapyard.sources",
    "Source": "tapyard.base",
    "StateError": "tapyard.base",
    "ResumeRejectedError": "tapyard.base",
    "Stream": "tapyard.base",
    "StreamNotFoundError": "tapyard.base",
    "StreamResult": "tapyard.engine",
    "StreamState": "tapyard.base",
    "SyncResult": "tapyard.engine",
    "TapyardError": "tapyard.base",
    "TokenStore": "tapyard.base",
    "Timestamp": "tapyard.base",
    "TransportError": "tapyard.base",
    "collect_auth_strategies": "tapyard.plugins",
    "collect_connectors": "tapyard.plugins",
    "collect_destinations": "tapyard.plugins",
    "collect_paginators": "tapyard.plugins",
    "collect_secret_backends": "tapyard.plugins",
    "columns_of": "tapyard.base",
    "get_connector": "tapyard.plugins",
    "get_plugin_manager": "tapyard.plugins",
    "load_credentials": "tapyard.auth",
    "model_from_json_schema": "tapyard.base",
    "open_destination": "tapyard.destinations",
    "open_vault": "tapyard.auth",
    "parse_timestamp": "tapyard.base",
    "register_plugin": "tapyard.plugins",
    "stream_paginator": "tapyard.plugins",
    "sync": "tapyard.engine",
    "unregister_plugin": "tapyard.plugins",
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
    "Plugins",
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
