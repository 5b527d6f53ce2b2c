"""Search over the listing: the index answers what a scan of every summary would (both sides use it:
the registry for /api/v1/search, the client over a static mirror's listing)."""

from __future__ import annotations

import random
import re
from typing import Any

from tapyard.marketplace._listing import FACETS, SearchIndex, facet_values, search_text

WORDS = ["stripe", "strip", "sales", "salesforce", "force", "customers", "orders", "ab", "a", "zz", "er", "acme", "tapyard"]


def _summary(i: int, rng: random.Random) -> dict[str, Any]:
    stem = f"{rng.choice(WORDS)}{rng.choice(['', 'x', 'force', '2'])}{i}"
    return {
        "name": f"tapyard-{stem}", "publisher": rng.choice(["tapyard", "acme", "evil"]), "summary": " ".join(rng.sample(WORDS, 3)),
        "support_level": rng.choice(["none", "community", "certified"]),
        "connectors": [{"name": stem, "display_name": stem.title(), "description": rng.choice(WORDS), "vendor": rng.choice(["Acme", "Stripe"]),
                        "categories": rng.sample(["crm", "payments", "erp"], 2), "auth_kinds": rng.sample(["api_key", "bearer", "none"], 1),
                        "streams": rng.sample(WORDS, 2), "permissions": None}],
    }


def _scan(summaries: list[dict[str, Any]], query: str, filters: dict[str, str]) -> set[str]:
    found = set()
    for s in summaries:
        words = set(re.findall(r"[a-z0-9]+", search_text(s)))
        parts = [p for w in query.lower().split() for p in re.findall(r"[a-z0-9]+", w)]
        if all(any(p in word for word in words) for p in parts) and all(
            v.lower() in facet_values(s, f) for f, v in filters.items()
        ):
            found.add(s["name"])
    return found


def test_the_index_answers_what_a_scan_would() -> None:
    rng = random.Random(7)
    summaries = [_summary(i, rng) for i in range(400)]
    index = SearchIndex(summaries)
    for _ in range(300):
        query = " ".join(rng.sample([*WORDS, "tapyard-strip", "sales-force", "nothing"], rng.randint(0, 2)))
        filters = {f: rng.choice(sorted({v for s in summaries for v in facet_values(s, f)})) for f in rng.sample(FACETS, rng.randint(0, 2))}
        positions, total = index.search(query, filters, limit=1000)
        got = {index.summaries[i]["name"] for i in positions}
        assert got == _scan(summaries, query, filters), (query, filters)
        assert total == len(got)


def test_ranking_exact_then_prefix_then_by_name() -> None:
    summaries = [
        {"name": "tapyard-zeta-stripe", "connectors": [{"name": "zeta", "description": "stripe mirror"}]},
        {"name": "tapyard-stripe-extra", "connectors": [{"name": "stripe_extra"}]},
        {"name": "tapyard-stripe", "connectors": [{"name": "stripe"}]},
        {"name": "tapyard-alpha", "connectors": [{"name": "alpha", "description": "reads stripe"}]},
    ]
    index = SearchIndex(summaries)
    positions, total = index.search("stripe", {}, limit=10)
    assert [index.summaries[i]["name"] for i in positions] == [
        "tapyard-stripe", "tapyard-stripe-extra", "tapyard-alpha", "tapyard-zeta-stripe"
    ]
    assert total == 4
    assert index.search("stripe", {}, limit=2) == (positions[:2], 4)
    assert index.search("nothing-here", {}, limit=10) == ([], 0)
