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
        PluginError,
        ResponseError,
        RetryAfterTooLongError,
        SchemaError,
        StateError,
        StreamNotFoundError,
        TapyardError,
        TransportError,
    )
    from tapyard._http import HttpEngine, HttpPolicy
    from tapyard._model import (
        PLUGIN_API_VERSION,
        AuthStrategy,
        Connector,
        NoConfig,
        Page,
        PageRequest,
        Paginator,
        RunContext,
        Source,
        Stream,
        StreamState,
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
        unregister_plugin,
    )
    from tapyard._ratelimit import RateLimiter
    from tapyard._schema import columns_of, model_from_json_schema
    from tapyard._sync import StreamResult, SyncResult, sync

__version__ = "0.1.0"

#: Mark a function as an implementation of a tapyard hook.
hookimpl = pluggy.HookimplMarker("tapyard")

# Exports are imported on first use (PEP 562), so that importing tapyard, or
# starting the CLI, does not pay for the HTTP engine or the sync engine.
_LAZY: dict[str, str] = {
    "ApiKeyAuth": "tapyard._auth",
    "AuthStrategy": "tapyard._model",
    "AuthenticationError": "tapyard._exceptions",
    "BasicAuth": "tapyard._auth",
    "Batch": "tapyard._destinations",
    "BearerAuth": "tapyard._auth",
    "CircuitOpenError": "tapyard._exceptions",
    "ConfigError": "tapyard._exceptions",
    "Connector": "tapyard._model",
    "ConnectorNotFoundError": "tapyard._exceptions",
    "CursorPaginator": "tapyard._paginators",
    "DeadlineExceededError": "tapyard._exceptions",
    "Destination": "tapyard._destinations",
    "DestinationError": "tapyard._exceptions",
    "HTTPError": "tapyard._exceptions",
    "HTTPStatusError": "tapyard._exceptions",
    "HttpEngine": "tapyard._http",
    "HttpPolicy": "tapyard._http",
    "LinkHeaderPaginator": "tapyard._paginators",
    "NextUrlPaginator": "tapyard._paginators",
    "NoConfig": "tapyard._model",
    "OffsetPaginator": "tapyard._paginators",
    "PLUGIN_API_VERSION": "tapyard._model",
    "Page": "tapyard._model",
    "PageNumberPaginator": "tapyard._paginators",
    "PageRequest": "tapyard._model",
    "PageTokenPaginator": "tapyard._paginators",
    "Paginator": "tapyard._model",
    "PluginError": "tapyard._exceptions",
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
    "Stream": "tapyard._model",
    "StreamNotFoundError": "tapyard._exceptions",
    "StreamResult": "tapyard._sync",
    "StreamState": "tapyard._model",
    "SyncResult": "tapyard._sync",
    "TapyardError": "tapyard._exceptions",
    "TransportError": "tapyard._exceptions",
    "collect_auth_strategies": "tapyard._plugins",
    "collect_connectors": "tapyard._plugins",
    "collect_destinations": "tapyard._plugins",
    "collect_paginators": "tapyard._plugins",
    "columns_of": "tapyard._schema",
    "get_connector": "tapyard._plugins",
    "get_plugin_manager": "tapyard._plugins",
    "model_from_json_schema": "tapyard._schema",
    "open_destination": "tapyard._destinations",
    "register_plugin": "tapyard._plugins",
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
    "BasicAuth",
    "Batch",
    "BearerAuth",
    "CircuitOpenError",
    "ConfigError",
    "Connector",
    "ConnectorNotFoundError",
    "CursorPaginator",
    "DeadlineExceededError",
    "Destination",
    "DestinationError",
    "HTTPError",
    "HTTPStatusError",
    "HttpEngine",
    "HttpPolicy",
    "LinkHeaderPaginator",
    "NextUrlPaginator",
    "NoConfig",
    "OffsetPaginator",
    "Page",
    "PageNumberPaginator",
    "PageRequest",
    "PageTokenPaginator",
    "Paginator",
    "PluginError",
    "RateLimiter",
    "ResponseError",
    "RestConnector",
    "RestStream",
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
    "TransportError",
    "__version__",
    "collect_auth_strategies",
    "collect_connectors",
    "collect_destinations",
    "collect_paginators",
    "columns_of",
    "get_connector",
    "get_plugin_manager",
    "hookimpl",
    "model_from_json_schema",
    "open_destination",
    "register_plugin",
    "sync",
    "unregister_plugin",
]
