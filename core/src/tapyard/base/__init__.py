"""The shared nouns every layer speaks: the connector model (Connector, Stream,
Source, Paginator, AuthStrategy, RunContext), the exception tree, config loading
and validation, JSON Schema and column handling, value encoding (timestamps
included), connector manifests (``_manifest``, read without importing a
connector, and ``manifest``: the validated model, its JSON Schema and the host
guard), and column policies. It imports no other tapyard part (only the
standard library, third-party libraries and ``tapyard_credentials``); every other
layer may import it, through this package's exports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tapyard.base._lazy import LazyConnector, lazy_exports

if TYPE_CHECKING:
    from tapyard.base._config import (
        describe_validation_error,
        load_config,
        validate_model,
    )
    from tapyard.base._context import (
        PluginSet as PluginSet,
    )
    from tapyard.base._context import (
        default_plugin_set as default_plugin_set,
    )
    from tapyard.base._context import (
        install_default_plugin_set as install_default_plugin_set,
    )
    from tapyard.base._context import (
        plugin_set_of as plugin_set_of,
    )
    from tapyard.base._exceptions import (
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
        quoted,
        safe_line,
    )
    from tapyard.base._hints import (
        did_you_mean,
        missing_stream,
    )
    from tapyard.base._manifest import (
        MANIFEST_FILE,
        PLUGIN_API_VERSION,
        ConnectorManifest,
        ManifestError,
        manifest_differences,
        read_manifest,
    )
    from tapyard.base._model import (
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
        TokenStore,
        secret_values,
        shift_cursor,
        stored_fields,
    )
    from tapyard.base._policies import (
        Policies,
        merge_policies,
        parse_policies,
        personal_marks,
        split_policies,
    )
    from tapyard.base._schema import (
        UNREADABLE,
        Column,
        DeadLetter,
        PageValidator,
        columns_of,
        declares_decimals,
        json_schema_of,
        model_from_json_schema,
    )
    from tapyard.base._tracing import (
        TraceIdFilter,
        reset_tracing,
        trace_context,
        trace_span,
        tracing_enabled,
    )
    from tapyard.base._values import (
        Timestamp,
        decode_json,
        json_bytes,
        json_default,
        json_text,
        nanoseconds_of,
        parse_timestamp,
        value_text,
    )
    from tapyard.base._version import CORE_VERSION

__all__ = [
    "CORE_VERSION",
    "MANIFEST_FILE",
    "PLUGIN_API_VERSION",
    "UNREADABLE",
    "AuthStrategy",
    "AuthenticationError",
    "CircuitOpenError",
    "Column",
    "ConfigError",
    "Connector",
    "ConnectorManifest",
    "ConnectorNotFoundError",
    "Credentials",
    "DeadLetter",
    "DeadlineExceededError",
    "DestinationError",
    "HTTPError",
    "HTTPStatusError",
    "LazyConnector",
    "ManifestError",
    "NoConfig",
    "Page",
    "PageRequest",
    "PageValidator",
    "Paginator",
    "PermissionDeniedError",
    "PluginError",
    "PluginSet",
    "Policies",
    "ResponseError",
    "ResumeRejectedError",
    "RetryAfterTooLongError",
    "RunContext",
    "SchemaError",
    "Source",
    "StateError",
    "Stream",
    "StreamNotFoundError",
    "StreamState",
    "TapyardError",
    "Timestamp",
    "TokenStore",
    "TraceIdFilter",
    "TransportError",
    "columns_of",
    "declares_decimals",
    "decode_json",
    "default_plugin_set",
    "describe_validation_error",
    "did_you_mean",
    "install_default_plugin_set",
    "json_bytes",
    "json_default",
    "json_schema_of",
    "json_text",
    "lazy_exports",
    "load_config",
    "manifest_differences",
    "merge_policies",
    "missing_stream",
    "model_from_json_schema",
    "nanoseconds_of",
    "parse_policies",
    "parse_timestamp",
    "personal_marks",
    "plugin_set_of",
    "quoted",
    "read_manifest",
    "reset_tracing",
    "safe_line",
    "secret_values",
    "shift_cursor",
    "split_policies",
    "stored_fields",
    "trace_context",
    "trace_span",
    "tracing_enabled",
    "validate_model",
    "value_text",
]

# Imported on first use, so that importing one module of this layer does not
# load the rest of it (tapyard and its CLI start without httpx or SQLAlchemy).
__getattr__ = lazy_exports(
    __name__,
    {
        "_config": ("describe_validation_error", "load_config", "validate_model"),
        "_version": ("CORE_VERSION",),
        "_context": ("PluginSet", "default_plugin_set", "install_default_plugin_set", "plugin_set_of"),
        "_exceptions": ("AuthenticationError", "CircuitOpenError", "ConfigError", "ConnectorNotFoundError", "DeadlineExceededError", "DestinationError", "HTTPError", "HTTPStatusError", "PermissionDeniedError", "PluginError", "ResponseError", "ResumeRejectedError", "RetryAfterTooLongError", "SchemaError", "StateError", "StreamNotFoundError", "TapyardError", "TransportError", "quoted", "safe_line"),
        "_hints": ("did_you_mean", "missing_stream"),
        "_manifest": ("ConnectorManifest", "MANIFEST_FILE", "ManifestError", "PLUGIN_API_VERSION", "manifest_differences", "read_manifest"),
        "_model": ("AuthStrategy", "Connector", "Credentials", "NoConfig", "Page", "PageRequest", "Paginator", "RunContext", "Source", "Stream", "StreamState", "TokenStore", "secret_values", "shift_cursor", "stored_fields"),
        "_policies": ("Policies", "merge_policies", "parse_policies", "personal_marks", "split_policies"),
        "_tracing": ("TraceIdFilter", "reset_tracing", "trace_context", "trace_span", "tracing_enabled"),
        "_schema": ("Column", "DeadLetter", "PageValidator", "UNREADABLE", "columns_of", "declares_decimals", "json_schema_of", "model_from_json_schema"),
        "_values": ("Timestamp", "decode_json", "json_bytes", "json_default", "json_text", "nanoseconds_of", "parse_timestamp", "value_text"),
    },
)
