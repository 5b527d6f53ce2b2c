"""The tapyard ``erp`` connector: ERP systems over OData v2 and v4.

Entity sets and their schemas come from the service's ``$metadata``; pages
follow ``@odata.nextLink`` (v4) or ``d.__next`` (v2, SAP Gateway); incremental
runs ask for ``$filter=<modified> gt <cursor>``; ``$select`` trims columns.
Presets fill in what Dynamics 365 Business Central, Finance and Operations and
SAP S/4HANA usually offer. Auth: basic, OAuth 2.0 client credentials (Entra
ID / Azure AD, with ``tenant_id``), a bearer token, or none.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from tapyard import hookimpl
from tapyard.base import LazyConnector

if TYPE_CHECKING:
    from tapyard import Connector, Stream

__all__ = ["connector"]

_V2_DATE = re.compile(r"/Date\((-?\d+)([+-]\d{4})?\)/")


def _v2_date(value: str) -> str:
    """``/Date(1700000000000+0060)/`` (OData v2 JSON) as an ISO 8601 string in UTC."""
    match = _V2_DATE.fullmatch(value)
    if match is None:
        return value
    moment = dt.datetime.fromtimestamp(int(match.group(1)) / 1000, tz=dt.UTC)
    return moment.isoformat().replace("+00:00", "Z")


#: the connector, made when first used (``tapyard_erp.connector``, or a run)
_lazy_connector = LazyConnector("tapyard_erp._connector", "ErpConnector")
__getattr__ = _lazy_connector.module_getattr(__name__)


@hookimpl
def tapyard_register_connectors(register: Callable[[Connector], None]) -> None:
    register(_lazy_connector())


@hookimpl
def tapyard_map_records(
    connector: Connector, stream: Stream, records: Sequence[dict[str, Any]]
) -> list[dict[str, Any]] | None:
    """OData v2 dates (``/Date(ms)/``) become ISO strings; v2 bookkeeping
    (``__metadata``, deferred navigation properties) and v4 control information
    (``@odata.etag``, ``price@odata.type``: annotations, not data) are dropped."""
    if connector.name != "erp":
        return None
    if getattr(stream, "odata_version", "4.0") != "2.0":
        if not any("@" in key for record in records for key in record):
            return None
        return [{k: v for k, v in record.items() if "@" not in k} for record in records]
    mapped = []
    for record in records:
        row = {}
        for key, value in record.items():
            if key == "__metadata" or (isinstance(value, dict) and "__deferred" in value):
                continue
            row[key] = _v2_date(value) if isinstance(value, str) and value.startswith("/Date(") else value
        mapped.append(row)
    return mapped
