"""The built-in plugin: stock paginators, auth strategies, destinations, secret
backends, and the default answer of every firstresult hook.

It is registered like any third-party plugin, and its implementations are
``trylast`` so that any plugin can override them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pydantic import BaseModel

    from tapyard.base import AuthStrategy, Connector, Paginator, Stream

hookimpl = pluggy.HookimplMarker("tapyard")


@hookimpl(trylast=True)
def tapyard_register_paginators(register: Callable[[str, type[Paginator]], None]) -> None:
    from tapyard.sources import STOCK_PAGINATORS, SinglePage

    register(SinglePage.kind, SinglePage)
    for kind, cls in STOCK_PAGINATORS.items():
        register(kind, cls)


@hookimpl(trylast=True)
def tapyard_register_auth_strategies(register: Callable[[str, type[AuthStrategy]], None]) -> None:
    from tapyard.auth import CLOUD_STRATEGIES, OAUTH_STRATEGIES, STOCK_AUTH_STRATEGIES

    for kind, cls in {**STOCK_AUTH_STRATEGIES, **OAUTH_STRATEGIES, **CLOUD_STRATEGIES}.items():
        register(kind, cls)


def _local_backend(url: str, key: Any) -> Any:
    from tapyard.auth import local_path
    from tapyard_credentials import LocalBackend

    return LocalBackend(local_path(url), key)


def _aws_backend(url: str, key: Any) -> Any:
    from tapyard.auth import aws_backend

    return aws_backend(url)


@hookimpl(trylast=True)
def tapyard_register_secret_backends(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register("file", _local_backend)
    register("aws-secretsmanager", _aws_backend)


def _sqlite(url: str) -> Any:
    from tapyard.destinations import SQLiteDestination

    return SQLiteDestination(url)


def _jsonl(url: str) -> Any:
    from tapyard.destinations import JSONLDestination

    return JSONLDestination(url)


def _postgresql(url: str) -> Any:
    from tapyard.destinations import PostgreSQLDestination

    return PostgreSQLDestination(url)


def _duckdb(url: str) -> Any:
    from tapyard.destinations import DuckDBDestination

    return DuckDBDestination(url)


@hookimpl(trylast=True)
def tapyard_register_destinations(register: Callable[[str, Callable[[str], Any]], None]) -> None:
    register("sqlite", _sqlite)
    register("jsonl", _jsonl)
    register("postgresql", _postgresql)
    register("duckdb", _duckdb)


@hookimpl(trylast=True)
def tapyard_auth_strategy(
    connector: Connector, config: BaseModel, credentials: BaseModel | None
) -> AuthStrategy | None:
    if credentials is None:
        return None
    from tapyard.base import ConfigError, secret_values
    from tapyard.plugins._manager import collect_auth_strategies
    from tapyard_credentials import redactor

    redactor.register(*secret_values(credentials))
    kind = getattr(credentials, "kind", None)
    strategies = collect_auth_strategies()
    if kind not in strategies:
        raise ConfigError(
            f"credential kind {kind!r} is not a known auth strategy; known: {', '.join(sorted(strategies))}"
        )
    return strategies[kind].from_credentials(credentials)


@hookimpl(trylast=True)
def tapyard_stream_paginator(connector: Connector, stream: Stream) -> Paginator | None:
    from tapyard.base import Paginator
    from tapyard.sources import SinglePage

    paginator = getattr(stream, "paginator", None)
    return paginator if isinstance(paginator, Paginator) else SinglePage()


@hookimpl(trylast=True)
def tapyard_rate_limit_policy(connector: Connector, config: BaseModel) -> Mapping[str, float] | None:
    policy = getattr(connector, "rate_limit", None)
    return dict(policy) if policy else None


@hookimpl(trylast=True)
def tapyard_stream_schema(connector: Connector, stream: Stream) -> type[BaseModel] | None:
    return stream.schema_model


@hookimpl(trylast=True)
def tapyard_map_records(
    connector: Connector, stream: Stream, records: Sequence[dict[str, Any]]
) -> list[dict[str, Any]] | None:
    return records if isinstance(records, list) else list(records)


@hookimpl(trylast=True)
def tapyard_json_schema(
    connector: Connector, stream: Stream, model: type[BaseModel]
) -> dict[str, Any] | None:
    from tapyard.base import json_schema_of

    return json_schema_of(model, stream.primary_key, stream.cursor_field)
