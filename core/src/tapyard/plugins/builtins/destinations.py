"""Built-in destinations: SQLite, JSON Lines, PostgreSQL and DuckDB."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookimpl = pluggy.HookimplMarker("tapyard")


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
