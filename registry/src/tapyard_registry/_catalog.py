"""The HTML catalog: server-rendered pages (Jinja2, autoescaped) over the same listing the API serves.

The search box and filters work without JavaScript (a GET form); the little
script in ``static/catalog.js`` only submits the form when a filter changes
and copies the install command.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from tapyard.marketplace._listing import facet_values
from tapyard_registry._service import Registry

__all__ = ["Catalog"]


class Catalog:
    """Renders the catalog's pages for one registry."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.env = Environment(
            loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def _facets(self) -> dict[str, list[str]]:
        summaries, _index, _encoded = self.registry.listing()
        facets: dict[str, set[str]] = {"vendor": set(), "category": set(), "auth": set(), "level": set()}
        for summary in summaries:
            for facet, values in facets.items():
                values |= facet_values(summary, facet)
        return {k: sorted(v for v in values if v) for k, values in facets.items()}

    def home(self, params: Mapping[str, str]) -> str:
        if self.registry.listing_stale():
            self.registry.rebuild_listing(wait=False)  # (this runs in the thread pool)
        query = params.get("q", "")[:200]
        filters = {k: params[k][:100] for k in ("vendor", "category", "auth", "level") if params.get(k)}
        result = self.registry.search(query, filters, limit=100)
        return self.env.get_template("home.html").render(
            query=query, filters=filters, facets=self._facets(), result=result
        )

    def package_page(self, name: str) -> str | None:
        document = self.registry.package(name)
        if document is None or document["summary_release"] is None:
            return None
        return self.env.get_template("package.html").render(package=document, current=document["summary_release"])

    def not_found(self, name: str) -> str:
        return self.env.get_template("base.html").render(title="Not found", message=f"No connector package named {name[:100]!r}.")


