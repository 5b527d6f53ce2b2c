"""The generic OData connector: configuration, presets, discovery from ``$metadata``
and incremental reads with ``$filter``.

It is built on the core's declarative :class:`tapyard.RestConnector`: the HTTP
engine, the auth strategies, the rate-limit hooks and the ``next_url``
paginator (``@odata.nextLink`` for v4, ``d.__next`` for v2) all come from the
core. What this module adds is what is OData-specific: the streams are found
in ``$metadata`` when a run opens, and each read asks for ``$select`` and
``$filter=<modified> ge <cursor>`` (the boundary included: upserts absorb it).
Int64 and Decimal values are asked for as strings (``IEEE754Compatible=true``)
and kept exact (``Decimal``).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlencode

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tapyard import (
    ConfigError,
    NextUrlPaginator,
    OAuth2ClientCredentialsAuth,
    Page,
    ResponseError,
    RestConnector,
    RestStream,
    RunContext,
    Source,
    Stream,
    StreamState,
)
from tapyard_erp._metadata import EntitySet, parse_metadata, record_model

__all__ = ["PRESETS", "AzureAdCredentials", "ErpConfig", "ErpConnector", "Preset"]


@dataclass(frozen=True)
class Preset:
    """What a known ERP usually offers: its OData version, the entity sets worth
    syncing and their last-modified fields."""

    description: str
    odata_version: Literal["auto", "2.0", "4.0"] = "auto"
    entity_sets: tuple[str, ...] = ()
    modified_fields: Mapping[str, str] | None = None
    default_modified_field: str | None = None


PRESETS: dict[str, Preset] = {
    "generic": Preset(
        "Any OData v2 or v4 service: every entity set in $metadata; the modified-date "
        "field found by name (lastModifiedDateTime, LastChangeDateTime, modifiedAt, ...)."
    ),
    "business_central": Preset(
        "Microsoft Dynamics 365 Business Central API v2.0 "
        "(service_url .../api/v2.0/companies(<id>)).",
        odata_version="4.0",
        entity_sets=(
            "customers",
            "vendors",
            "items",
            "salesInvoices",
            "salesOrders",
            "purchaseInvoices",
            "generalLedgerEntries",
            "accounts",
            "employees",
        ),
        default_modified_field="lastModifiedDateTime",
    ),
    "finance_operations": Preset(
        "Microsoft Dynamics 365 Finance and Operations data entities (service_url https://<env>/data).",
        odata_version="4.0",
        entity_sets=("CustomersV3", "VendorsV2", "ReleasedProductsV2", "SalesOrderHeadersV2"),
        modified_fields={"SalesOrderHeadersV2": "ModifiedDateTime"},
    ),
    "sap_s4hana": Preset(
        "SAP S/4HANA OData v2 APIs (service_url .../sap/opu/odata/sap/API_SALES_ORDER_SRV and the like).",
        odata_version="2.0",
        entity_sets=(
            "A_BusinessPartner",
            "A_Customer",
            "A_Supplier",
            "A_Product",
            "A_SalesOrder",
            "A_SalesOrderItem",
            "A_PurchaseOrder",
            "A_BillingDocument",
        ),
        modified_fields={
            "A_BusinessPartner": "LastChangeDate",
            "A_Product": "LastChangeDateTime",
            "A_SalesOrder": "LastChangeDateTime",
            "A_PurchaseOrder": "LastChangeDateTime",
            "A_BillingDocument": "LastChangeDateTime",
        },
    ),
}


class ErpConfig(BaseModel):
    """Configuration of the ERP (OData) connector."""

    model_config = ConfigDict(extra="forbid")

    service_url: str = Field(
        "",
        description="The OData service root, e.g. https://api.businesscentral.dynamics.com/v2.0/"
        "<tenant>/<env>/api/v2.0/companies(<id>) or https://host/sap/opu/odata/sap/API_SALES_ORDER_SRV.",
    )
    preset: Literal["generic", "business_central", "finance_operations", "sap_s4hana"] = Field(
        "generic", description="Defaults for a known ERP (entity sets, date fields, OData version)."
    )
    entity_sets: list[str] | None = Field(
        None, description="Entity sets to offer as streams (default: the preset's, else all)."
    )
    modified_fields: dict[str, str | None] = Field(
        {},
        description="The last-modified field per entity set, for incremental sync (null: full "
        "refresh). Default: the preset's, else found by name in $metadata.",
    )
    select: dict[str, list[str]] = Field(
        {}, description="Properties to ask for ($select) per entity set (default: all)."
    )
    filter: dict[str, str] = Field(
        {}, description="An extra $filter expression per entity set, ANDed with the incremental one."
    )
    odata_version: Literal["auto", "2.0", "4.0"] | None = Field(
        None, description="The OData version (default: the preset's, else read from $metadata)."
    )
    page_size: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="Records per page to ask the server for (Prefer: odata.maxpagesize); "
        "the server may send fewer. Default: the server's choice.",
    )
    rate_limit_per_s: float | None = Field(None, gt=0, description="Requests per second at most.")

    @model_validator(mode="after")
    def _url(self) -> ErpConfig:
        if self.service_url and not re.match(r"https?://", self.service_url):
            raise ValueError("service_url must be an http(s) URL")
        return self


class AzureAdCredentials(OAuth2ClientCredentialsAuth.Options):
    """OAuth 2.0 client credentials from Microsoft Entra ID (Azure AD): give
    ``tenant_id`` and the token URL follows; the scope defaults to Business Central's."""

    tenant_id: str | None = Field(None, description="The Entra ID tenant (fills token_url).")
    token_url: str = Field(
        "", description="The token endpoint (default: login.microsoftonline.com/<tenant_id>/...)."
    )
    scope: str | None = Field(
        "https://api.businesscentral.dynamics.com/.default",
        description="The scope (Finance and Operations: https://<env>.operations.dynamics.com/.default).",
    )

    @model_validator(mode="after")
    def _token_url(self) -> AzureAdCredentials:
        if not self.token_url:
            if not self.tenant_id:
                raise ValueError("give tenant_id or token_url")
            url = f"https://login.microsoftonline.com/{self.tenant_id}/oauth2/v2.0/token"
            object.__setattr__(self, "token_url", url)
        return self


class ErpStream(RestStream):
    """A stream of one entity set; ``odata_version`` and ``filter_types`` say how to
    write its incremental ``$filter``."""

    odata_version: str = "4.0"
    cursor_type: str = "Edm.DateTimeOffset"
    extra_filter: str | None = None


def _literal(value: Any, edm_type: str, version: str) -> str:
    """The cursor ``value`` (an ISO string) as an OData literal of ``edm_type``."""
    text = value.isoformat() if isinstance(value, dt.date) else str(value)
    if edm_type == "Edm.Date":
        return text[:10] if version == "4.0" else f"datetime'{text[:10]}T00:00:00'"
    if version == "4.0":
        return text
    if edm_type == "Edm.DateTime":
        # OData v2 Edm.DateTime has no offset: SAP keeps it in UTC.
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
        return f"datetime'{parsed.isoformat(timespec='milliseconds')}'"
    return f"datetimeoffset'{text}'"


class ErpSource(Source):
    """One run: the streams found in ``$metadata``, read through the core's REST source."""

    def __init__(self, inner: Any, config: ErpConfig, streams: list[ErpStream]) -> None:
        self.inner = inner
        self.config = config
        self._streams = streams

    def streams(self) -> list[Stream]:
        return list(self._streams)

    @property
    def http_stats(self) -> Mapping[str, int]:
        return dict(self.inner.http_stats)

    def check(self) -> None:
        if self._streams:
            stream = self._streams[0]
            self.inner.engine.get_json(stream.path, params={**stream.params, "$top": 1})

    def read(self, stream: Stream, state: StreamState, partition: Mapping[str, Any]) -> Iterator[Page]:
        if not isinstance(stream, ErpStream):
            raise ConfigError(f"stream {stream.name!r} is not an entity set of this service")
        params = dict(stream.params)
        clauses = [f"({stream.extra_filter})"] if stream.extra_filter else []
        since = state.cursor
        if stream.cursor_field and since is not None:
            literal = _literal(since, stream.cursor_type, stream.odata_version)
            # ge, not gt: a record changed in the cursor's instant after the last run
            # read it (or the same day, for a date-only field such as SAP's
            # LastChangeDate) must not be lost; upserts absorb the boundary rows.
            clauses.append(f"{stream.cursor_field} ge {literal}")
        if clauses:
            params["$filter"] = " and ".join(clauses)
        # OData parsers (SAP CAP's among them) take only %20 for a space, not
        # the "+" of form encoding that httpx would write: encode the query here.
        query = urlencode(params, quote_via=quote, safe="$,'()/:")
        path = f"{stream.path}?{query}" if query else stream.path
        effective = stream.model_copy(update={"path": path, "params": {}, "cursor_param": None})
        yield from self.inner.read(effective, state, partition)


class ErpConnector(RestConnector):
    """A generic OData v2/v4 connector for ERP systems, with presets. See the package docs."""

    def __init__(self) -> None:
        super().__init__(
            name="erp",
            description="ERP systems over OData v2/v4: Dynamics 365 Business Central and "
            "Finance and Operations, SAP S/4HANA, SAP CAP and any OData service.",
            base_url="{config.service_url}",
            config_model=ErpConfig,
            auth_kinds=("none", "basic", "oauth2_client_credentials", "bearer"),
            streams=[],
            # Business Central and other .NET services send Edm.Decimal as JSON
            # numbers of up to 28 digits: parsed as decimals, never as floats.
            http={"exact_numbers": True},
        )
        self.credential_models = {"oauth2_client_credentials": AzureAdCredentials}

    def stream_names(self) -> list[str]:
        """The generic preset knows its streams only from $metadata; listings show none."""
        return []

    @contextlib.contextmanager
    def open(self, config: BaseModel, context: RunContext) -> Iterator[Source]:
        assert isinstance(config, ErpConfig)
        if not config.service_url:
            raise ConfigError("config for 'erp' needs service_url, the OData service root")
        preset = PRESETS[config.preset]
        version: str = config.odata_version or preset.odata_version
        run = copy.copy(self)
        # IEEE754Compatible (OData v4): Edm.Int64 and Edm.Decimal values as strings,
        # so they arrive digit for digit instead of through a JSON number (a float
        # to most parsers). OData v2 sends them as strings anyway.
        accept = "application/json" if version == "2.0" else "application/json;IEEE754Compatible=true"
        run.headers = {"Accept": accept, "OData-MaxVersion": "4.0"}
        if config.page_size:
            run.headers["Prefer"] = f"odata.maxpagesize={config.page_size}"
        if config.rate_limit_per_s:
            run.rate_limit = {"rate": config.rate_limit_per_s, "burst": 1}
        with RestConnector.open(run, config, context) as opened:
            inner: Any = opened
            response = inner.engine.request(
                "GET", "$metadata", headers={"Accept": "application/xml"}
            )
            shown = f"GET {config.service_url.rstrip('/')}/$metadata"
            if _is_html(response.headers.get("content-type", ""), response.content):
                raise ResponseError(
                    f"{shown} returned an HTML page instead of OData metadata{_title(response.content)}; "
                    "is the service URL right, or the system under maintenance?"
                )
            try:
                found, sets = parse_metadata(response.content)
            except ValueError as exc:
                raise ResponseError(
                    f"{shown} returned no OData metadata ({exc})"
                ) from exc
            if version == "auto":
                version = found
            streams = _streams(config, preset, version, sets)
            yield ErpSource(inner, config, streams)


def _streams(config: ErpConfig, preset: Preset, version: str, sets: Mapping[str, EntitySet]) -> list[ErpStream]:
    wanted = config.entity_sets
    if wanted is not None:
        unknown = [name for name in wanted if name not in sets]
        if unknown:
            known = ", ".join(sorted(sets)) or "none"
            raise ConfigError(
                f"unknown entity set {', '.join(map(repr, unknown))} in {config.service_url}; "
                f"the service offers: {known}"
            )
        names = list(wanted)
    elif preset.entity_sets:
        names = [name for name in preset.entity_sets if name in sets] or list(sets)
    else:
        names = list(sets)
    if version == "4.0":
        record_path, next_path = "value", "@odata.nextLink"
        base_params: dict[str, Any] = {}
    else:
        record_path, next_path = "d.results", "d.__next"
        base_params = {"$format": "json"}
    streams = []
    for name in names:
        entity_set = sets[name]
        if not entity_set.key:
            continue
        cursor = _modified_field(config, preset, entity_set)
        params = dict(base_params)
        selected = config.select.get(name)
        if selected:
            unknown = [p for p in selected if p not in entity_set.properties]
            if unknown:
                raise ConfigError(
                    f"select for {name!r} names no property {', '.join(map(repr, unknown))}"
                )
            columns = list(dict.fromkeys([*entity_set.key, *selected, *([cursor] if cursor else [])]))
            params["$select"] = ",".join(columns)
            selected = columns
        if cursor:
            params["$orderby"] = cursor
        streams.append(
            ErpStream(
                name=name,
                path=name,
                schema_model=record_model(entity_set, selected),
                primary_key=entity_set.key,
                cursor_field=cursor,
                record_path=record_path,
                params=params,
                paginator=NextUrlPaginator(next_path=next_path),
                odata_version=version,
                cursor_type=entity_set.properties[cursor].type if cursor else "Edm.DateTimeOffset",
                extra_filter=config.filter.get(name),
                description=f"OData entity set {name} ({entity_set.entity_type})",
            )
        )
    return streams


def _modified_field(config: ErpConfig, preset: Preset, entity_set: EntitySet) -> str | None:
    name = entity_set.name
    if name in config.modified_fields:
        chosen = config.modified_fields[name]
    elif preset.modified_fields and name in preset.modified_fields:
        chosen = preset.modified_fields[name]
    elif preset.default_modified_field and preset.default_modified_field in entity_set.properties:
        chosen = preset.default_modified_field
    else:
        return entity_set.modified_field()
    if chosen is not None and chosen not in entity_set.properties:
        raise ConfigError(f"modified field {chosen!r} is not a property of entity set {name!r}")
    if chosen is not None and not entity_set.properties[chosen].is_date:
        raise ConfigError(f"modified field {chosen!r} of {name!r} is not a date (it is {entity_set.properties[chosen].type})")
    return chosen


def _is_html(content_type: str, content: bytes) -> bool:
    head = content.lstrip()[:15].lower()
    return "text/html" in content_type.lower() or head.startswith((b"<!doctype html", b"<html"))


def _title(content: bytes) -> str:
    match = re.search(rb"<title[^>]*>(.*?)</title", content[:65536], re.I | re.S)
    title = " ".join(match.group(1).decode("utf-8", "replace").split())[:100] if match else ""
    return f" ({title!r})" if title else ""
