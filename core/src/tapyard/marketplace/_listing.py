"""The registry's listing format, and search over it.

The registry answers ``/api/v1/search`` with :func:`search`, and a client
pointed at a static mirror runs the same function over the mirror's
``api/v1/index.json``, so both give the same results for the same query.

A package summary is a JSON object: ``name`` (the PEP 503 name of the
distribution), ``publisher`` (its namespace), ``verified``, ``version`` (the
newest release not yanked), ``summary``, ``requires_core``, ``score``,
``support_level``, ``kit_passed_at``, ``updated`` and ``connectors``, each with
``name``, ``display_name``, ``description``, ``vendor``, ``categories``,
``auth_kinds``, ``streams`` and ``permissions``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["FACETS", "connector_summaries", "facet_values", "search", "search_text"]

#: The filters search takes, and where in a summary each one looks.
FACETS = ("vendor", "category", "auth", "level", "publisher")


def _stream_names(streams: Any) -> list[str]:
    names = []
    for stream in streams if isinstance(streams, list) else []:
        if isinstance(stream, str):
            names.append(stream)
        elif isinstance(stream, Mapping) and isinstance(stream.get("name"), str):
            names.append(stream["name"])
    return names


def connector_summaries(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The connectors of a manifest (as parsed TOML), in the listing's shape."""
    found = []
    for table in manifest.get("connector", []) if isinstance(manifest.get("connector"), list) else []:
        if not isinstance(table, Mapping):
            continue
        permissions = table.get("permissions")
        found.append(
            {
                "name": str(table.get("name", "")),
                "display_name": str(table.get("display_name") or table.get("name", "")),
                "description": str(table.get("description", "")),
                "vendor": str(table.get("vendor") or ""),
                "categories": [str(c) for c in table.get("categories", []) if isinstance(c, str)],
                "auth_kinds": [str(a) for a in table.get("auth_kinds", ["none"]) if isinstance(a, str)],
                "streams": _stream_names(table.get("streams", [])),
                "permissions": dict(permissions) if isinstance(permissions, Mapping) else None,
            }
        )
    return found


def search_text(summary: Mapping[str, Any]) -> str:
    """The lower-cased text a query is matched against."""
    parts = [summary.get("name", ""), summary.get("summary", ""), summary.get("publisher", "")]
    for connector in summary.get("connectors", []):
        parts += [connector.get("name", ""), connector.get("display_name", ""), connector.get("description", "")]
        parts += [connector.get("vendor", ""), *connector.get("categories", []), *connector.get("streams", [])]
    return " ".join(str(p) for p in parts).lower()


def facet_values(summary: Mapping[str, Any], facet: str) -> set[str]:
    """The values ``summary`` has for ``facet`` (lower-cased)."""
    connectors = summary.get("connectors", [])
    if facet == "vendor":
        return {str(c.get("vendor") or summary.get("publisher", "")).lower() for c in connectors}
    if facet == "category":
        return {str(v).lower() for c in connectors for v in c.get("categories", [])}
    if facet == "auth":
        return {str(v).lower() for c in connectors for v in c.get("auth_kinds", [])}
    if facet == "level":
        return {str(summary.get("support_level") or "none").lower()}
    if facet == "publisher":
        return {str(summary.get("publisher", "")).lower()}
    return set()


def _rank(summary: Mapping[str, Any], words: Sequence[str]) -> tuple[int, str]:
    name = str(summary.get("name", ""))
    names = {name, *(str(c.get("name", "")) for c in summary.get("connectors", []))}
    exact = any(w in names or f"tapyard-{w}" in names for w in words)
    prefix = any(n.startswith(w) or n.removeprefix("tapyard-").startswith(w) for w in words for n in names)
    return (0 if exact else 1 if prefix else 2, name)


def search(
    summaries: Iterable[Mapping[str, Any]],
    query: str = "",
    filters: Mapping[str, str] | None = None,
    *,
    texts: Mapping[str, str] | None = None,
    limit: int = 50,
) -> tuple[list[Mapping[str, Any]], int]:
    """The summaries matching every word of ``query`` and every filter, best first, and how many matched.

    ``texts`` may hold each summary's :func:`search_text` by name, computed once.
    """
    words = [w for w in query.lower().split() if w]
    wanted = {k: v.lower() for k, v in (filters or {}).items() if v and k in FACETS}
    hits = []
    for summary in summaries:
        text = texts.get(summary["name"]) if texts is not None else None
        if text is None:
            text = search_text(summary)
        if not all(w in text for w in words):
            continue
        if any(value not in facet_values(summary, facet) for facet, value in wanted.items()):
            continue
        hits.append(summary)
    hits.sort(key=lambda s: _rank(s, words))
    return hits[: max(0, limit)], len(hits)
