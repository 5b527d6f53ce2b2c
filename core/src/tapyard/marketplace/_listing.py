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

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["FACETS", "SearchIndex", "connector_summaries", "facet_values", "search", "search_text"]

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


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


class SearchIndex:
    """Search over a fixed set of summaries, answered from an index rather than a scan.

    A query word matches a summary when each of its alphanumeric runs is
    part of a word of the summary's :func:`search_text` (``strip`` matches
    ``stripe``, ``sales force`` needs both). Words of three characters or more
    are looked up through a trigram index of the vocabulary; shorter ones scan
    it (and are remembered). Each word's and each filter value's summaries are
    a bit set (a Python int, bit *i* for the *i*-th summary by name), so a
    query is a few ANDs whatever the registry's size. Results are ranked: a
    package or connector named exactly as a query word first, then names
    starting with one (when fewer than 256 do), then the rest, each group by
    name. The registry builds one per change of its listing; a static
    mirror's client builds one per search.
    """

    _PREFIX_CAP = 256

    def __init__(self, summaries: Iterable[Mapping[str, Any]]) -> None:
        self.summaries = sorted(summaries, key=lambda s: str(s.get("name", "")))
        postings: dict[str, int] = {}
        self.facets: dict[str, dict[str, int]] = {facet: {} for facet in FACETS}
        self.names: dict[str, int] = {}
        for i, summary in enumerate(self.summaries):
            bit = 1 << i
            for word in set(_words(search_text(summary))):
                postings[word] = postings.get(word, 0) | bit
            for facet in FACETS:
                values = self.facets[facet]
                for value in facet_values(summary, facet):
                    values[value] = values.get(value, 0) | bit
            for name in _names(summary):
                self.names[name] = self.names.get(name, 0) | bit
        self.postings = postings
        self.trigrams: dict[str, set[str]] = {}
        for word in postings:
            for k in range(len(word) - 2):
                self.trigrams.setdefault(word[k : k + 3], set()).add(word)
        self.sorted_names = sorted(self.names)
        self.everything = (1 << len(self.summaries)) - 1
        self._parts: dict[str, int] = {}

    def _part(self, part: str) -> int:
        known = self._parts.get(part)
        if known is not None:
            return known
        if len(part) >= 3:
            grams = [self.trigrams.get(part[k : k + 3], set()) for k in range(len(part) - 2)]
            candidates: Iterable[str] = set.intersection(*sorted(grams, key=len))
        else:
            candidates = self.postings
        found = 0
        for word in candidates:
            if part in word:
                found |= self.postings[word]
        if len(self._parts) < 65536:
            self._parts[part] = found
        return found

    def _starting(self, word: str) -> int:
        import bisect

        found = 0
        for prefix in (word, f"tapyard-{word}"):
            at = bisect.bisect_left(self.sorted_names, prefix)
            end = bisect.bisect_left(self.sorted_names, prefix + "\uffff", at, min(len(self.sorted_names), at + self._PREFIX_CAP + 1))
            if end - at > self._PREFIX_CAP:
                continue  # a prefix this common says nothing about relevance
            for name in self.sorted_names[at:end]:
                found |= self.names[name]
        return found

    def search(self, query: str = "", filters: Mapping[str, str] | None = None, limit: int = 50) -> tuple[list[int], int]:
        """The positions (in :attr:`summaries`) of the best ``limit`` matches, and how many matched."""
        hits = self.everything
        words = [w for w in query.lower().split() if w]
        for word in words:
            for part in _words(word):
                hits &= self._part(part)
        for facet, value in (filters or {}).items():
            if value and facet in FACETS:
                hits &= self.facets[facet].get(value.lower(), 0)
        if not hits:
            return [], 0
        exact = 0
        prefix = 0
        for word in words:
            exact |= self.names.get(word, 0) | self.names.get(f"tapyard-{word}", 0)
            prefix |= self._starting(word)
        exact &= hits
        prefix &= hits & ~exact
        ranked = _first_bits(exact, limit)
        ranked += _first_bits(prefix, limit - len(ranked))
        ranked += _first_bits(hits & ~exact & ~prefix, limit - len(ranked))
        return ranked, hits.bit_count()


def _first_bits(mask: int, count: int) -> list[int]:
    """The positions of the lowest ``count`` set bits of ``mask``."""
    found: list[int] = []
    while mask and len(found) < count:
        low = mask & -mask
        found.append(low.bit_length() - 1)
        mask ^= low
    return found


def _names(summary: Mapping[str, Any]) -> set[str]:
    return {str(summary.get("name", "")).lower(), *(str(c.get("name", "")).lower() for c in summary.get("connectors", []))}


def search(
    summaries: Iterable[Mapping[str, Any]],
    query: str = "",
    filters: Mapping[str, str] | None = None,
    *,
    limit: int = 50,
) -> tuple[list[Mapping[str, Any]], int]:
    """The summaries matching every word of ``query`` and every filter, best first, and how many matched."""
    index = SearchIndex(summaries)
    positions, total = index.search(query, filters, limit)
    return [index.summaries[i] for i in positions], total
